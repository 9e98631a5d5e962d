"""Coordinate-wise order statistics at every n (issue 17): cost against the floor as n grows.

The n-scaling groups hold n in {10, 50, 200, 1000} at a fixed input of n*d = 5e7 values
(200 MB in float32, 400 MB in float64), so the floor (``np.mean(axis=0)``: one streaming read)
stays the same while n grows. Each group (rule, n, dtype) holds the floor, hierfed's trimmed
mean (ratio 0.1) or median on each backend, unweighted and weighted (staleness-like weights
``0.9**s``), the sort-based trimmed mean (ByzFL's ``TrMean``) and ``np.median``, all timed in
the same run; every hierfed entry also gets its peak extra memory (a subprocess each, see
``bench/memory.py``) unless ``HIERFED_BENCH_MEMORY=0``.

The latency groups time one call at n=20, d in {1e2, 1e3, 1e4} (float32) against ``np.mean``
on the same input, hot (no cache flush, no garbage collection before the calls): the fixed
cost of a call. Run (figures in bench/README.md)::

    HIERFED_BENCH_THREADS=2 python -m pytest bench/test_nscaling_coordinatewise.py \\
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import numpy as np
import pytest

import hierfed
from bench import memory, peers

# n*d of the scaling groups; HIERFED_BENCH_QUICK=1 takes a tenth (a smoke run)
N_TIMES_D = 5_000_000 if peers.env_flag("HIERFED_BENCH_QUICK") else 50_000_000
SCALING_N = (10, 50, 200, 1000)
LATENCY_D = (100, 1000, 10_000)
OPS = ("trimmed_mean", "median")


def staleness_weights(n: int) -> np.ndarray:
    """The federation's default weighting: ``0.9**s`` for staleness s in 0..4."""
    return 0.9 ** np.random.default_rng(peers.SEED).integers(0, 5, n).astype(np.float64)


def weighted_reference(x: np.ndarray, op: str, w: np.ndarray) -> np.ndarray:
    """The weighted rule on the numpy reference backend (the definition)."""
    with hierfed._backend.using("numpy"):
        if op == "median":
            return hierfed.median(x, weights=w)
        return hierfed.trimmed_mean(x, trim_ratio=peers.TRIM_RATIO, weights=w)


def hierfed_call(op: str, x: np.ndarray, w: np.ndarray | None) -> Any:
    kwargs: dict[str, Any] = {} if w is None else {"weights": w}
    if op == "trimmed_mean":
        kwargs["trim_ratio"] = peers.TRIM_RATIO
    return partial(getattr(hierfed, op), x, **kwargs)


def impls(op: str) -> list[tuple[str, str | None, bool]]:
    """(name, hierfed backend or None, weighted) of one group, the floor first."""
    out: list[tuple[str, str | None, bool]] = [(peers.FLOOR, None, False)]
    for backend in peers.bench_backends():
        out += [(f"hierfed-{backend}", backend, False), (f"hierfed-{backend}-w", backend, True)]
    out.append(("byzfl.TrMean" if op == "trimmed_mean" else "np.median", None, False))
    return out


SCALING = [
    pytest.param(n, dtype, op, impl, id=f"{op}-n{n}-{dtype}-{impl[0]}")
    for dtype in ("float32", "float64")
    for n in SCALING_N
    for op in OPS
    for impl in impls(op)
]

_inputs: dict[tuple[int, str], np.ndarray] = {}
_refs: dict[tuple[int, str, str, bool], np.ndarray] = {}


def scaling_input(n: int, dtype: str) -> np.ndarray:
    """The (n, 5e7 / n) input, one at a time (the previous one is freed first)."""
    key = (n, dtype)
    if key not in _inputs:
        _inputs.clear()
        _refs.clear()
        rng = np.random.default_rng([peers.SEED, n])
        _inputs[key] = rng.standard_normal((n, N_TIMES_D // n), dtype=dtype)
    return _inputs[key]


def reference(x: np.ndarray, op: str, weighted: bool) -> np.ndarray:
    key = (x.shape[0], str(x.dtype), op, weighted)
    if key not in _refs:
        if weighted:
            _refs[key] = weighted_reference(x, op, staleness_weights(x.shape[0]))
        elif op == "median":
            _refs[key] = np.median(x, axis=0)
        else:
            _refs[key] = peers.byzfl_trmean(x)
    return _refs[key]


@pytest.mark.parametrize(("n", "dtype", "op", "impl"), SCALING)
def test_nscaling(benchmark: Any, run_timed: Any, n: int, dtype: str, op: str, impl: Any) -> None:
    """One entry of the group ``<op> n=<n> n*d=5e7 <dtype>``; its answer checked, its peak
    extra memory measured (hierfed only)."""
    name, backend, weighted = impl
    if backend and backend not in hierfed._backend.available_backends():
        pytest.skip(f"hierfed backend {backend!r} is not available")
    x = scaling_input(n, dtype)
    cfg = peers.Config(n, x.shape[1], dtype, ops=(op,))
    benchmark.group = f"{op} n={n} n*d={N_TIMES_D:.0e} {dtype}".replace("+0", "")
    benchmark.extra_info.update(
        op=op,
        impl=name,
        backend=backend,
        weighted=weighted,
        threads=peers.threads(),
        **cfg.info(),
    )
    w = staleness_weights(n) if weighted else None
    if name == peers.FLOOR:
        call = partial(np.mean, x, axis=0)
    elif name == "byzfl.TrMean":
        call = partial(peers.byzfl_trmean, x)
    elif name == "np.median":
        call = partial(np.median, x, axis=0)
    else:
        call = hierfed_call(op, x, w)
        with hierfed._backend.using(backend):
            hierfed_call(op, x[:, :1024].copy(), w)()  # compile (numba) outside the timing
    with hierfed._backend.using(backend) if backend else contextlib.nullcontext():
        out = run_timed(call, cfg)
    if backend and memory.enabled():
        weighted_cfg = peers.Config(n, x.shape[1], dtype, ops=(op,), weighted_rules=True)
        benchmark.extra_info.update(memory.measure(weighted_cfg, op, name))
    if name == peers.FLOOR:
        return
    err = float(np.max(np.abs(np.asarray(out, np.float64) - reference(x, op, weighted))))
    benchmark.extra_info["max_abs_err"] = err
    assert err <= peers.tolerance(dtype), f"{name} differs from the reference by {err}"


LATENCY = [
    pytest.param(d, name, id=f"latency-d{peers.dlabel(d)}-{name}")
    for d in LATENCY_D
    for name in (
        peers.FLOOR,
        *(
            f"hierfed-{b}-{rule}"
            for b in peers.bench_backends()
            for rule in ("trimmed_mean", "median", "trimmed_mean-w", "median-w")
        ),
    )
]


@pytest.mark.parametrize(("d", "name"), LATENCY)
def test_latency(benchmark: Any, d: int, name: str) -> None:
    """Group ``latency n=20 d=<d> float32``: one hot call, the per-call overhead."""
    n = 20
    x = np.random.default_rng([peers.SEED, d]).standard_normal((n, d), dtype=np.float32)
    benchmark.group = f"latency n={n} d={peers.dlabel(d)} float32"
    benchmark.extra_info.update(impl=name, n=n, d=d, threads=peers.threads())
    if name == peers.FLOOR:
        benchmark(np.mean, x, axis=0)
        return
    _, backend, rule = name.split("-", 2)
    if backend not in hierfed._backend.available_backends():
        pytest.skip(f"hierfed backend {backend!r} is not available")
    op, _, weighted = rule.partition("-")
    call = hierfed_call(op, x, staleness_weights(n) if weighted else None)
    with hierfed._backend.using(backend):
        call()
        benchmark(call)
