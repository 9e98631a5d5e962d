"""examples/flower/run_deployment.sh: a SuperLink and four SuperNodes on loopback, one round.

The deployment runtime (HTTP between processes, `flwr run`, ServerApp and ClientApps in their
own processes) runs the example with HierarchicalStrategy; nodes report their domain through
``--node-config``. About 45 s, most of it the SuperNodes' 3 s polling and process starts.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import hierfed

pytest.importorskip("flwr")
pytest.importorskip("sklearn", reason="the example's data set comes from scikit-learn")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "flower" / "run_deployment.sh"
BIN = Path(sys.executable).parent

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("HIERFED_BACKEND", "") in ("numba", "numpy"),
        reason="the Flower deployment runs once, on the default backend",
    ),
    pytest.mark.skipif(
        not (BIN / "flower-superlink").exists() or shutil.which("bash") is None,
        reason="needs bash and Flower's flower-superlink next to this Python",
    ),
]


def _free_ports(count: int) -> int:
    """A base port such that it and the ``count - 1`` after it are free on 127.0.0.1."""
    for _ in range(50):
        base = random.randint(20000, 60000)
        try:
            socks = []
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    pytest.skip("no free block of ports on 127.0.0.1")


def test_deployment_on_loopback_runs_a_round() -> None:
    base = _free_ports(15)
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(hierfed.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    env["HIERFED_FLOWER_PORT"] = str(base)
    run = subprocess.run(
        ["bash", str(SCRIPT), "1"], env=env, capture_output=True, text=True, timeout=300
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "Using SuperLink: loopback" in out
    assert "Sampled 4 nodes (out of 4)" in out
    assert "'hierfed.baskets': 2" in out and "'hierfed.clients': 4" in out
    assert "hierfed-flower: final central accuracy" in out
