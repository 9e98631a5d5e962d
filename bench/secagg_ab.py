"""A/B of a SecAgg+ round: the protocol before the malicious-server hardening (commit 3a610ae,
taken from git into a temporary package) against the current one, alternately, on one input.

``python bench/secagg_ab.py N REPS [--cpu]`` prints per-client, server and whole-round figures
(min and median over REPS rounds) and their ratios. ``--cpu`` times CPU (``process_time``)
instead of wall clock: on a shared machine it is much steadier, and both sides pay the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "3a610ae"
FILES = ("protocol", "messages", "shamir", "graph", "masks")


def _old_package(into: Path) -> Any:
    pkg = into / "secagg_before"
    pkg.mkdir()
    for name in FILES:
        src = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE}:python/hierfed/secagg/{name}.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        (pkg / f"{name}.py").write_text(
            src.replace("from .. import _backend", "from hierfed import _backend")
        )
    (pkg / "__init__.py").write_text(
        "from .graph import choose_parameters, neighbours\nfrom .protocol import Client, Server\n"
    )
    sys.path.insert(0, str(into))
    import secagg_before

    return secagg_before


def old_round(old: Any, x: np.ndarray) -> dict[str, float]:
    """One round of the old protocol (its four rounds), timed as bench/test_secagg.py times."""
    from bench.test_secagg import Timers, dropped_clients

    n = x.shape[0]
    params = old.choose_parameters(n)
    session = os.urandom(32)
    graph = old.neighbours(params, session)
    tm = Timers(n)
    srv, cli = tm.srv, tm.cli
    server = srv(old.Server, session, params, graph)
    clients = [cli(i, old.Client, i, session, params, graph[i]) for i in range(n)]
    for i, c in enumerate(clients):
        srv(server.receive_advertise, cli(i, c.advertise))
    rosters = srv(server.rosters)
    for i, c in enumerate(clients):
        srv(server.receive_share_keys, cli(i, c.share_keys, rosters[i]))
    routed = srv(server.route_shares)
    dropped = dropped_clients(n)
    for i, c in enumerate(clients):
        if i not in dropped:
            srv(server.receive_masked_input, cli(i, c.masked_input, routed[i], x[i]))
    for i, q in srv(server.unmask_requests).items():
        srv(server.receive_unmask_response, cli(i, clients[i].unmask, q))
    total, survivors = srv(server.finalize)
    return tm.summary(x, total, survivors, [i for i in range(n) if i not in dropped])


def main() -> None:
    n, reps = int(sys.argv[1]), int(sys.argv[2])
    if "--cpu" in sys.argv:
        time.perf_counter = time.process_time  # both sides, and bench/test_secagg.py
    sys.path.insert(0, str(ROOT))
    from bench.test_secagg import _inputs, timed_round

    with tempfile.TemporaryDirectory() as tmp:
        old = _old_package(Path(tmp))
        x = _inputs(n)
        old_round(old, x[:20])
        timed_round(x[:20])  # warm up both
        rows: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(reps):
            rows["before"].append(old_round(old, x))
            rows["after"].append(timed_round(x))
    for key in ("client_ms", "server_ms", "round_s"):
        b = [r[key] for r in rows["before"]]
        a = [r[key] for r in rows["after"]]
        print(
            f"n={n} {key}: before min {min(b):.2f} median {np.median(b):.2f} | after min "
            f"{min(a):.2f} median {np.median(a):.2f} | ratio of mins {min(a) / min(b):.2f}, "
            f"of medians {np.median(a) / np.median(b):.2f}"
        )


if __name__ == "__main__":
    main()
