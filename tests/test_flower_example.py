"""examples/flower in Flower's simulation engine: 10 nodes, 2 domains, 3 rounds.

Every update the strategy receives is recorded; replayed through HierarchicalFederation
directly (register the nodes in their domains, submit the same updates, flush), they give the
same global model each round, to float tolerance (SecAgg+'s fixed point, central DP off).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hierfed
from hierfed import HierarchicalFederation

pytest.importorskip("flwr")
pytest.importorskip("ray", reason="Flower's simulation engine needs ray (flwr[simulation])")
pytest.importorskip("sklearn", reason="the example's data set comes from scikit-learn")

from flwr.simulation import run_simulation

from hierfed.integrations._rounds import FederationRounds

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flower"

pytestmark = pytest.mark.skipif(
    os.environ.get("HIERFED_BACKEND", "") in ("numba", "numpy"),
    reason="the Flower simulation runs once, on the default backend",
)


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example's apps, importable here and in Ray's worker processes."""
    paths = [str(EXAMPLE), str(Path(hierfed.__file__).resolve().parents[1])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FLWR_TELEMETRY_ENABLED", "0")
    monkeypatch.setenv("RAY_DISABLE_USAGE_STATS", "1")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from hierfed_flower import client_app, server_app, task

    yield client_app, server_app, task
    for name in [m for m in sys.modules if m.startswith("hierfed_flower")]:
        del sys.modules[name]


@dataclasses.dataclass
class _Round:
    base: dict[str, np.ndarray]
    updates: list[tuple[str, str, dict[str, np.ndarray]]] = dataclasses.field(default_factory=list)
    result: Any = None


def _record(monkeypatch: pytest.MonkeyPatch) -> list[_Round]:
    """Record what FederationRounds receives and returns (the ServerApp runs in this process)."""
    rounds: list[_Round] = []
    start, submit, finish = (
        FederationRounds.start_round,
        FederationRounds.submit,
        FederationRounds.finish_round,
    )

    def start_round(self: FederationRounds, arrays: Any) -> None:
        rounds.append(_Round({k: np.array(v) for k, v in arrays.items()}))
        start(self, arrays)

    def submit_(self: FederationRounds, client_id: str, domain: str | None, arrays: Any) -> Any:
        assert domain is not None
        rounds[-1].updates.append((client_id, domain, {k: np.array(v) for k, v in arrays.items()}))
        return submit(self, client_id, domain, arrays)

    def finish_round(self: FederationRounds) -> Any:
        rounds[-1].result = finish(self)
        return rounds[-1].result

    monkeypatch.setattr(FederationRounds, "start_round", start_round)
    monkeypatch.setattr(FederationRounds, "submit", submit_)
    monkeypatch.setattr(FederationRounds, "finish_round", finish_round)
    return rounds


def _flat(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([arrays["weight"].ravel(), arrays["bias"]])


def test_example_runs_three_rounds_and_equals_the_federation(
    example: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_app, server_app, task = example
    rounds = _record(monkeypatch)
    run_simulation(
        server_app=server_app.app,
        client_app=client_app.app,
        num_supernodes=10,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": 2, "num_gpus": 0},
        },
    )
    assert len(rounds) == 3
    for r in rounds:
        domains = [d for _, d, _ in r.updates]
        assert len(r.updates) == 10
        assert sorted(set(domains)) == ["domain-0", "domain-1"] and domains.count("domain-0") == 5
        assert r.result.arrays is not None
        m = r.result.metrics
        assert (m["baskets"], m["clients"], m["rejected"], m["secure-agg"]) == (2, 10, 0, 0)
        assert m["secure-agg-simulated"] == 1  # in process: the server holds the models

    # the same updates straight through HierarchicalFederation: one flush per round
    cfg = server_app.federation_config(task.settings({}))
    fed = HierarchicalFederation(
        dataclasses.replace(cfg, auto_aggregate=False),
        initial_model=_flat(rounds[0].base),
    )
    for i, r in enumerate(rounds):
        # Flower sent the global model (equal up to SecAgg+'s stochastic rounding, ~2e-8)
        np.testing.assert_allclose(_flat(r.base), fed.model, rtol=0, atol=2e-6)
        base = _flat(r.base)
        for client_id, domain, arrays in r.updates:
            if fed.manager.get_client(client_id) is None:
                fed.register_client(client_id, domain)
            fed.submit_update(client_id, _flat(arrays) - base, base_version=fed.version)
        fed.flush()
        assert fed.version == i + 1
        np.testing.assert_allclose(_flat(r.result.arrays), fed.model, rtol=0, atol=2e-6)
    # and the model learned: central accuracy on the held-out digits
    x, y = task.held_out()
    _, accuracy = task.evaluate(rounds[-1].result.arrays, x, y)
    assert accuracy > 0.85
