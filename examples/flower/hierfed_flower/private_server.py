"""The ServerApp's private path: it relays sealed updates and SecAgg+ stages, and releases
only the noised sum (:class:`hierfed.integrations.flower_private.PrivateRounds`).

Run config: ``private=true``, ``provision-dir`` (the server's provisioned directory, public
data only: ``python -m hierfed_flower.provision``), ``min-nodes`` (members and basket
aggregators), ``num-server-rounds``, ``stage-timeout``; ``record-to`` (a path: every message's
payload is written there, and the models and round reports beside it, for audit).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from flwr.serverapp import Grid

from hierfed.integrations.flower_private import PrivateRounds, RoundReport
from hierfed.integrations.flower_transcript import TranscriptGrid
from hierfed.integrations.private_provision import load_server

from . import task


def central_accuracy(arrays: task.Arrays) -> float:
    """Accuracy of the global model on the held-out digits."""
    x, y = task.held_out()
    return task.evaluate(arrays, x, y)[1]


def _report(r: RoundReport) -> dict[str, Any]:
    stats = {k: v for k, v in r.stats.items() if isinstance(v, (int, float, str, bool, tuple))}
    return {
        "round": r.server_round,
        "released": r.released,
        "survivors": list(r.survivors),
        "dropped": r.dropped,
        "relayed": r.relayed,
        "error": r.error,
        "stats": stats,
    }


def run_private(grid: Grid, cfg: dict[str, Any]) -> tuple[task.Arrays, list[RoundReport]]:
    """The private rounds the run config describes; the final model and the reports."""
    record = str(cfg["record-to"])
    if record:
        grid = TranscriptGrid(grid, record)
    rounds = PrivateRounds(
        load_server(str(cfg["provision-dir"])), timeout=float(cfg["stage-timeout"])
    )
    rounds.discover(grid, int(cfg["min-nodes"]))
    models: list[task.Arrays] = []

    def evaluate(_: int, arrays: task.Arrays) -> dict[str, float]:
        models.append({k: np.array(v) for k, v in arrays.items()})
        return {"central-acc": central_accuracy(arrays)}

    model, reports = rounds.run(
        grid, task.initial_arrays(), int(cfg["num-server-rounds"]), evaluate
    )
    epsilon, delta = rounds.aggregator.privacy_spent()
    for r in reports:
        state = "released" if r.released else f"aborted: {r.error}"
        print(f"hierfed-flower: private round {r.server_round} {state}; dropped {r.dropped}")
    print(f"hierfed-flower: distributed DP spent epsilon {epsilon:.4g} at delta {delta:g}")
    if record:
        named: dict[str, Any] = {  # Any: savez's stub reads a key as its allow_pickle flag
            f"{i + 1}.{k}": v for i, m in enumerate(models) for k, v in m.items()
        }
        np.savez(record + ".models.npz", **named)
        with open(record + ".reports.json", "w") as f:
            json.dump([_report(r) for r in reports], f, indent=1, default=str)
    return model, reports
