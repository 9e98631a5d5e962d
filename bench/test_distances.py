"""Distance-based rules: pairwise squared distances, Krum, Bulyan.

One group per (rule, n, d) holds the floor (``X @ X.T`` in float32: BLAS at the machine's
arithmetic speed, the cost of any Gram-based distance), hierfed on each backend (and on a list
of separate 1-D arrays) and the peers (scipy's ``cdist``, ByzFL-style ``cdist`` Krum, Flower's
``aggregate_krum`` / ``aggregate_bulyan``), all timed in the same run. At n=50, d=1e6 and
n=200, d=1e5 each entry also gets its peak extra memory (a subprocess each).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import peers

CASES = [
    pytest.param(cfg, op, impl, id=f"{op}-{cfg.label}-{impl.name}")
    for cfg in peers.distance_configs()
    for op in cfg.ops
    for impl in peers.implementations(op, cfg)
]


@pytest.mark.parametrize(("cfg", "op", "impl"), CASES)
def test_distances(time_case: Any, cfg: peers.Config, op: str, impl: peers.Impl) -> None:
    """Time ``impl`` computing ``op``; check its answer; record size, memory and error."""
    time_case(cfg, op, impl)
