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

from bench import memory, peers

CASES = [
    pytest.param(cfg, op, impl, id=f"{op}-{cfg.label}-{impl.name}")
    for cfg in peers.distance_configs()
    for op in cfg.ops
    for impl in peers.implementations(op, cfg)
]


@pytest.mark.parametrize(("cfg", "op", "impl"), CASES)
def test_distances(
    benchmark: Any,
    data_for: Any,
    run_timed: Any,
    cfg: peers.Config,
    op: str,
    impl: peers.Impl,
) -> None:
    """Time ``impl`` computing ``op``; check its answer; record size, memory and error."""
    reason = impl.unavailable() or impl.too_slow(cfg)
    if reason:
        pytest.skip(reason)
    benchmark.group = cfg.group(op)
    benchmark.extra_info.update(op=op, threads=peers.threads(), **cfg.info(), **impl.info())
    peers.warm_up(op, impl, cfg)
    data = data_for(cfg)
    with impl.active():
        out = run_timed(impl.make(data), cfg)
    if cfg.memory and memory.enabled():
        benchmark.extra_info.update(memory.measure(cfg, op, impl.name))
    if impl.kind == "floor":
        return  # the Gram matrix: a cost baseline, not an answer
    err = peers.max_abs_err(out, impl.reference(op, data), op)
    benchmark.extra_info["max_abs_err"] = err
    ok = not impl.checked or err <= peers.tolerance(cfg.dtype, op)
    assert ok, f"{impl.name} differs from the reference by {err}"
