"""The issue-20 rules and pre-steps against ByzFL's own functions, in the same groups.

One group per (op, n, d), float32, holds the floor (``np.mean(axis=0)``: one streaming read of
the input), hierfed on each backend and ByzFL's function (``byzfl.MDA``, ``Meamed``,
``MoNNA``, ``Bucketing``, ``ARC``, ``Clipping``; skipped when byzfl is not installed), all
timed in the same run on the same input. ByzFL's ARC and Clipping write into their input, so
they are timed on a fresh copy each call and their groups also time that copy (``np.copy``).
``f = n // 4`` (ByzFL refuses ``2f >= n``); MDA takes the largest ``f <= n // 4`` within its
documented bound ``C(n, f) (n - f)^2 <= MDA_MAX_WORK`` (f = 2, 3, 1 at n = 10, 50, 200);
bucketing ``s = 2``; clipping to the median norm. The attacks are simulation code, not
kernels: no group. Equality with ByzFL is tested in tests/test_rules_byzfl.py.
Run (figures in bench/README.md)::

    HIERFED_BENCH_QUICK=1 HIERFED_BENCH_THREADS=2 python -m pytest bench/test_rules_byzfl.py \\
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds

``HIERFED_BENCH_QUICK=1`` takes d in {1e3, 1e5}; without it d = 1e6 too (n = 200, d = 1e6 is
800 MB of input). ``HIERFED_BENCH_BYZFL_D=1e6`` (comma-separated) and ``HIERFED_BENCH_BYZFL_N``
choose the sizes instead (e.g. a cheap d = 1e6 run at n = 10, 50). ByzFL's MDA, which lists
every subset and takes 6-9 s of CPU a call at n = 50 and 200 already at d = 1e3 (38-50 s wall
on a loaded machine), is timed at n = 10 only; hierfed's MDA is timed at every n.

Bucketing draws its permutation from a generator made once, outside the timed call, as ByzFL
draws from numpy's global one (``seed=0`` instead builds a generator in every call, about 6 us).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import pytest

import hierfed
from bench import peers
from hierfed import _backend
from hierfed.mda import MDA_MAX_WORK, mda_work

OPS = ("mda", "meamed", "monna", "bucketing", "arc", "clip")
IN_PLACE = ("arc", "clip")  # ByzFL's ARC and Clipping write into their input


def _sizes(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """The sizes in environment variable ``name`` (comma-separated, ``1e6`` allowed)."""
    raw = os.environ.get(name, "")
    return tuple(int(float(v)) for v in raw.split(",") if v.strip()) or default


SIZES_N = _sizes("HIERFED_BENCH_BYZFL_N", (10, 50, 200))
SIZES_D = _sizes(
    "HIERFED_BENCH_BYZFL_D",
    (10**3, 10**5) if peers.env_flag("HIERFED_BENCH_QUICK") else (10**3, 10**5, 10**6),
)
BYZFL_MDA_MAX_N = 10  # ByzFL's MDA above: 6-9 s of CPU a call (see the docstring)


def f_of(op: str, n: int) -> int:
    """The f of a group (see the module's docstring)."""
    f = n // 4
    if op == "mda":
        while f > 0 and mda_work(n, f) > MDA_MAX_WORK:
            f -= 1
    return f


@lru_cache(maxsize=1)
def data(n: int, d: int) -> np.ndarray:
    """Honest rows around 1, a quarter of them shifted (the attackers), float32."""
    rng = np.random.default_rng(peers.SEED)
    x = rng.normal(1.0, 1.0, (n, d)).astype(np.float32)
    x[: n // 4] += np.float32(5.0)
    return x


def clip_norm(x: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(x.astype(np.float64), axis=1)))


def hierfed_call(op: str, x: np.ndarray, f: int) -> Callable[[], Any]:
    c = clip_norm(x) if op == "clip" else 0.0  # outside the timed call, as ByzFL's
    rng = np.random.default_rng(0)  # made once, as ByzFL's global generator
    calls: dict[str, Callable[[], Any]] = {
        "mda": lambda: hierfed.mda(x, f),
        "meamed": lambda: hierfed.meamed(x, f),
        "monna": lambda: hierfed.monna(x, f, x[-1]),
        "bucketing": lambda: hierfed.bucketing(x, 2, seed=rng),
        "arc": lambda: hierfed.adaptive_robust_clipping(x, f),
        "clip": lambda: hierfed.clip_by_l2_norm(x, c),
    }
    return calls[op]


def byzfl_call(op: str, x: np.ndarray, f: int) -> Callable[[], Any]:
    byzfl = pytest.importorskip("byzfl")
    rules: dict[str, Any] = {
        "mda": lambda: byzfl.MDA(f=f),
        "meamed": lambda: byzfl.Meamed(f=f),
        "monna": lambda: byzfl.MoNNA(f=f, idx=len(x) - 1),
        "bucketing": lambda: byzfl.Bucketing(s=2),
        "arc": lambda: byzfl.ARC(f=f),
        "clip": lambda: byzfl.Clipping(c=clip_norm(x)),
    }
    rule = rules[op]()
    if op in IN_PLACE:  # each call gets a fresh copy; the entry "np.copy" times it alone
        return lambda: rule(x.copy())
    return lambda: rule(x)


def impls(op: str) -> list[str]:
    """The group's entries: the floor (and the copy ByzFL's in-place steps need), hierfed on
    each bench backend, ByzFL."""
    copy = ["np.copy"] if op in IN_PLACE else []
    return ["np.mean", *copy, *(f"hierfed[{b}]" for b in peers.bench_backends()), "byzfl"]


CASES = [
    pytest.param(op, n, d, impl, id=f"{op}-n{n}-d{peers.dlabel(d)}-{impl}")
    for op in OPS
    for n in SIZES_N
    for d in SIZES_D
    for impl in impls(op)
]


@pytest.mark.parametrize(("op", "n", "d", "impl"), CASES)
def test_rules_byzfl(benchmark: Any, run_timed: Any, op: str, n: int, d: int, impl: str) -> None:
    """Time ``impl`` on the group's input (one untimed warm-up call first)."""
    cfg = peers.Config(n, d, "float32", ops=(op,))
    benchmark.group = f"{op} n={n} d={peers.dlabel(d)} float32"
    f = f_of(op, n)
    benchmark.extra_info.update(op=op, f=f, threads=peers.threads(), **cfg.info(), impl=impl)
    x = data(n, d)
    if impl == "np.mean":
        run_timed(lambda: np.mean(x, axis=0), cfg)
    elif impl == "np.copy":
        run_timed(x.copy, cfg)
    elif impl == "byzfl":
        if op == "mda" and n > BYZFL_MDA_MAX_N:
            pytest.skip(f"ByzFL's MDA lists every subset: {math.comb(n, f)} at n={n}, f={f}")
        run_timed(byzfl_call(op, x, f), cfg)
    else:
        backend = impl[len("hierfed[") : -1]
        if backend not in _backend.available_backends():
            pytest.skip(f"backend {backend} is not available")
        with _backend.using(backend):
            run_timed(hierfed_call(op, x, f), cfg)
