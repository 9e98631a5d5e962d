"""The distance-based rules as n grows (issue 17): n = 10, 50, 200, 1000 at n*d = 5e7.

One group per (rule, n, d, dtype), named ``nscaling <rule> n=<n> d=<d> <dtype>``: the floor
``X @ X.T`` (BLAS in the group's dtype: the cost of any Gram-based distance) and hierfed on
each backend, all timed in the same run, each entry with its peak extra memory (a subprocess
each; ``HIERFED_BENCH_MEMORY=0`` skips them). Krum and Bulyan use the largest f Bulyan
accepts. The peers are left out (scipy's ``cdist`` alone takes about a minute at n=1000);
``bench/test_distances.py`` times them at n <= 200. ``HIERFED_BENCH_QUICK=1`` keeps float32;
``HIERFED_BENCH_SMOKE=1`` divides every d by 100 (every group runs and checks its answer in
seconds: not a measurement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bench import peers

SIZES = [(10, 5 * 10**6), (50, 10**6), (200, 250_000), (1000, 50_000)]  # n * d = 5e7


@dataclass(frozen=True)
class NScaling(peers.Config):
    """A size of this suite: its groups carry the ``nscaling`` prefix."""

    def group(self, op: str) -> str:
        """``nscaling <rule> n=<n> d=<d> <dtype>``."""
        return "nscaling " + super().group(op)


def configs() -> list[NScaling]:
    """Every size in float32, then (unless quick) in float64."""
    dtypes = ("float32",) if peers.env_flag("HIERFED_BENCH_QUICK") else ("float32", "float64")
    scale = 100 if peers.env_flag("HIERFED_BENCH_SMOKE") else 1
    return [
        NScaling(n, d // scale, dtype, ops=peers.DISTANCE_OPS, peers=False, memory=True)
        for dtype in dtypes
        for n, d in SIZES
    ]


CASES = [
    pytest.param(cfg, op, impl, id=f"nscaling-{op}-{cfg.label}-{impl.name}")
    for cfg in configs()
    for op in cfg.ops
    for impl in peers.implementations(op, cfg)
]


@pytest.mark.parametrize(("cfg", "op", "impl"), CASES)
def test_nscaling_distances(time_case: Any, cfg: peers.Config, op: str, impl: peers.Impl) -> None:
    """Time ``impl`` computing ``op``; check its answer; record size, memory and error."""
    time_case(cfg, op, impl)
