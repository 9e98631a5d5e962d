"""Coordinate-wise rules: trimmed mean, median, mean.

One group per (rule, n, d, dtype) holds the floor (``np.mean``: one streaming read), hierfed on
each backend (and on a list of separate 1-D arrays at n=50, d=1e6) and the peers, all timed in
the same run. At n=50, d=1e6 each entry also gets its peak extra memory (a subprocess each).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import peers

CASES = [
    pytest.param(cfg, op, impl, id=f"{op}-{cfg.label}-{impl.name}")
    for cfg in peers.configs()  # config-major order: each input is built once
    for op in cfg.ops
    for impl in peers.implementations(op, cfg)
]


@pytest.mark.parametrize(("cfg", "op", "impl"), CASES)
def test_coordinatewise(time_case: Any, cfg: peers.Config, op: str, impl: peers.Impl) -> None:
    """Time ``impl`` computing ``op``; check its answer; record size, memory and error."""
    time_case(cfg, op, impl)
