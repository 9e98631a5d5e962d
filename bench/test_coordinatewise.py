"""Coordinate-wise rules: trimmed mean, median, mean.

One group per (rule, n, d, dtype) holds the floor (``np.mean``: one streaming read), hierfed on
each backend (and on a list of separate 1-D arrays at n=50, d=1e6) and the peers, all timed in
the same run. At n=50, d=1e6 each entry also gets its peak extra memory (a subprocess each).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import memory, peers

CASES = [
    pytest.param(cfg, op, impl, id=f"{op}-{cfg.label}-{impl.name}")
    for cfg in peers.configs()  # config-major order: each input is built once
    for op in cfg.ops
    for impl in peers.implementations(op, cfg)
]


@pytest.mark.parametrize(("cfg", "op", "impl"), CASES)
def test_coordinatewise(
    benchmark: Any,
    data_for: Any,
    run_timed: Any,
    cfg: peers.Config,
    op: str,
    impl: peers.Impl,
) -> None:
    """Time ``impl`` computing ``op``; check its answer; record size, memory and error."""
    reason = impl.unavailable()
    if reason:
        pytest.skip(reason)
    benchmark.group = cfg.group(op)
    benchmark.extra_info.update(op=op, threads=peers.threads(), **cfg.info(), **impl.info())
    peers.warm_up(op, impl, cfg)
    data = data_for(cfg)
    with impl.active():
        out = run_timed(impl.make(data), cfg)
    err = peers.max_abs_err(out, impl.reference(op, data))
    benchmark.extra_info["max_abs_err"] = err
    if cfg.memory and memory.enabled():
        benchmark.extra_info.update(memory.measure(cfg, op, impl.name))
    assert err <= peers.tolerance(cfg.dtype), f"{impl.name} differs from the reference by {err}"
