"""What each bench group compares: its inputs, the floor, hierfed's backends and the peers.

Every implementation builds its inputs outside the timed call (``Impl.make``) and returns a
zero-argument callable; the timing suite and the memory probe run the same callables.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from types import ModuleType
from typing import Any

import numpy as np
import scipy.spatial.distance
import scipy.stats

import hierfed
from hierfed import _backend

TRIM_RATIO = 0.1
OPS = ("trimmed_mean", "median", "mean")
DISTANCE_OPS = ("pairwise_sq_distances", "krum", "bulyan")
ALL_OPS = OPS + DISTANCE_OPS
SEED = 20240611
FLOOR = "np.mean"
GRAM_FLOOR = "X @ X.T"  # the distance groups' floor: float32 BLAS syrk/gemm


def byzantine_f(n: int) -> int:
    """f of the distance groups: the largest Bulyan accepts, ``n >= 4f + 3``."""
    return (n - 3) // 4


DEFAULT_BACKENDS = ("cpp", "numba")


def env_flag(name: str) -> bool:
    """True when environment variable ``name`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get(name, "").strip() not in ("", "0")


def threads() -> int:
    """Threads hierfed uses in the suite: ``HIERFED_BENCH_THREADS``, default 2."""
    return int(os.environ.get("HIERFED_BENCH_THREADS", "2"))


def bench_backends() -> tuple[str, ...]:
    """hierfed backends timed: ``HIERFED_BENCH_BACKENDS`` (comma-separated), default cpp,numba."""
    raw = os.environ.get("HIERFED_BENCH_BACKENDS", "")
    names = tuple(b.strip() for b in raw.split(",") if b.strip())
    return names or DEFAULT_BACKENDS


def dlabel(d: int) -> str:
    """``1000000 -> "1e6"``; other sizes as plain digits."""
    e = round(math.log10(d))
    return f"1e{e}" if 10**e == d else str(d)


@dataclass(frozen=True)
class Config:
    """One input size; ``peers=False`` keeps only the floor and hierfed (quick d sweep)."""

    n: int
    d: int
    dtype: str = "float32"
    ops: tuple[str, ...] = OPS
    peers: bool = True
    list_input: bool = False  # also time hierfed on a list of n separate 1-D arrays
    memory: bool = False  # also measure each call's peak extra memory in a subprocess
    weighted_rules: bool = False  # also hierfed's weighted trimmed mean and median

    @property
    def input_bytes(self) -> int:
        """Bytes of the (n, d) input."""
        return self.n * self.d * np.dtype(self.dtype).itemsize

    @property
    def label(self) -> str:
        """``n50-d1e6-float32``."""
        return f"n{self.n}-d{dlabel(self.d)}-{self.dtype}"

    def group(self, op: str) -> str:
        """The pytest-benchmark group of ``op`` at this size."""
        return f"{op} n={self.n} d={dlabel(self.d)} {self.dtype}"

    def info(self) -> dict[str, Any]:
        """What goes into ``benchmark.extra_info``."""
        return {"n": self.n, "d": self.d, "dtype": self.dtype, "input_bytes": self.input_bytes}


def configs(quick: bool | None = None) -> list[Config]:
    """The sizes of the suite; ``HIERFED_BENCH_QUICK=1`` keeps n=50, d=1e6 and the d sweep."""
    if quick is None:
        quick = env_flag("HIERFED_BENCH_QUICK")
    headline = {"list_input": True, "memory": True}
    if quick:
        sweep = [
            Config(20, d, "float32", ops=("trimmed_mean", "median"), peers=False)
            for d in (10**5, 10**6, 10**7)
        ]
        return [Config(50, 10**6, "float32", **headline), *sweep]
    out = [
        Config(n, d, dtype, **(headline if (n, d) == (50, 10**6) else {}))
        for dtype in ("float32", "float64")
        for n in (20, 50, 200)
        for d in (10**5, 10**6)
    ]
    out.append(Config(20, 10**7, "float32"))
    return out


def distance_configs(quick: bool | None = None) -> list[Config]:
    """Sizes of the distance groups (float32); quick keeps n=50, d=1e6 and n=200, d=1e5."""
    if quick is None:
        quick = env_flag("HIERFED_BENCH_QUICK")
    sizes = (
        [(50, 10**6), (200, 10**5)]
        if quick
        else [(n, d) for n in (20, 50, 200) for d in (10**5, 10**6)]
    )
    return [
        Config(n, d, "float32", ops=DISTANCE_OPS, memory=(n, d) in ((50, 10**6), (200, 10**5)))
        for n, d in sizes
    ]


class Data:
    """One config's input in every form the implementations take, each built on first use."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        rng = np.random.default_rng([SEED, cfg.n, cfg.d])
        self.X = rng.standard_normal((cfg.n, cfg.d), dtype=cfg.dtype)
        self._refs: dict[tuple[str, bool], np.ndarray] = {}

    @cached_property
    def rows(self) -> list[np.ndarray]:
        """n separately allocated 1-D arrays (not views of one block)."""
        return [row.copy() for row in self.X]

    @cached_property
    def weights(self) -> np.ndarray:
        """Per-update weights: integer example counts, as Flower's ``num_examples``."""
        return np.random.default_rng(SEED).integers(1, 1000, self.cfg.n).astype(np.float64)

    @cached_property
    def flower(self) -> list[tuple[list[np.ndarray], int]]:
        """Flower's input: one single-layer model with its example count per update."""
        return [([row], int(w)) for row, w in zip(self.X, self.weights, strict=True)]

    def reference(self, op: str, weighted: bool) -> np.ndarray:
        """The answer every implementation of ``op`` must give (computed once)."""
        key = (op, weighted)
        if key not in self._refs:
            if op in DISTANCE_OPS:  # the numpy reference backend: float64 distances
                with _backend.using("numpy"):
                    ref = _distance_call(op, self.X)()
            elif op == "trimmed_mean":
                ref = byzfl_trmean(self.X)
            elif op == "median":
                ref = np.median(self.X, axis=0)
            elif weighted:
                ref = np.average(self.X, axis=0, weights=self.weights)
            else:
                ref = np.mean(self.X, axis=0)
            self._refs[key] = ref
        return self._refs[key]


def byzfl_trmean(x: np.ndarray, trim_ratio: float = TRIM_RATIO) -> np.ndarray:
    """ByzFL's ``TrMean``: sort each coordinate, mean of the values ``f .. n-f-1``.

    ``f = floor(trim_ratio * n)``, the count scipy and hierfed trim at each end.
    """
    n = x.shape[0]
    f = int(trim_ratio * n)
    return np.mean(np.sort(x, axis=0)[f : n - f], axis=0)


@functools.cache
def flower() -> ModuleType | None:
    """``flwr.server.strategy.aggregate``, or None when Flower does not import."""
    try:
        from flwr.server.strategy import aggregate
    except Exception:  # flwr missing or broken: its peers are skipped
        return None
    return aggregate


def _distance_call(op: str, updates: Any) -> Callable[[], Any]:
    """hierfed's ``op`` of the distance groups on ``updates``, as a zero-argument call."""
    fn = getattr(hierfed, op)
    if op == "pairwise_sq_distances":
        return partial(fn, updates)
    return partial(fn, updates, byzantine_f(len(updates)))


def byzfl_krum(x: np.ndarray, f: int) -> np.ndarray:
    """ByzFL's ``Krum``: ``cdist(x, x)**2`` (float64), sorted rows, lowest score.

    ByzFL sums ``n - f - 1`` neighbours; this sums ``n - f - 2`` (Blanchard et al., and
    hierfed) so that the answers can be compared; the cost is the same.
    """
    dist = scipy.spatial.distance.cdist(x, x) ** 2
    scores = np.sort(dist, axis=1)[:, 1 : len(x) - f - 1].sum(axis=1)
    return x[int(np.argmin(scores))]


def as_array(out: Any) -> np.ndarray:
    """An implementation's answer as one array (Flower returns a list of layers)."""
    return np.asarray(out[0] if isinstance(out, list) else out)


Maker = Callable[[Data], Callable[[], Any]]


@dataclass(frozen=True)
class Impl:
    """One implementation in a group: ``kind`` is ``floor``, ``hierfed`` or ``peer``."""

    name: str
    kind: str
    make: Maker
    backend: str | None = None
    layout: str = "array"
    weighted: bool = False
    needs_flower: bool = False
    computes: str | None = None  # the rule it computes when not the group's (the floor: mean)
    max_n: int | None = None  # slower than minutes beyond this n: not run
    checked: bool = True  # its answer must match the reference (else only recorded)

    def unavailable(self) -> str | None:
        """Why this implementation cannot run here, or None."""
        if self.backend and self.backend not in _backend.available_backends():
            return f"hierfed backend {self.backend!r} is not available"
        if self.needs_flower and flower() is None:
            return "flwr does not import"
        return None

    def too_slow(self, cfg: Config) -> str | None:
        """Why this implementation is not run at ``cfg``'s size, or None."""
        if self.max_n is not None and cfg.n > self.max_n:
            return f"{self.name} takes far too long at n={cfg.n} (only run for n <= {self.max_n})"
        return None

    def active(self) -> contextlib.AbstractContextManager[Any]:
        """Context that selects this implementation's hierfed backend (if any)."""
        return _backend.using(self.backend) if self.backend else contextlib.nullcontext()

    def reference(self, op: str, data: Data) -> np.ndarray:
        """The answer this implementation must give in a group of ``op``."""
        return data.reference(self.computes or op, self.weighted)

    def info(self) -> dict[str, Any]:
        """What goes into ``benchmark.extra_info``."""
        return {
            "impl": self.name,
            "kind": self.kind,
            "backend": self.backend,
            "layout": self.layout,
            "weighted": self.weighted,
        }


def _hierfed(op: str, backend: str, layout: str, weighted: bool) -> Impl:
    def make(data: Data) -> Callable[[], Any]:
        if op in DISTANCE_OPS:
            return _distance_call(op, data.rows if layout == "list" else data.X)
        kwargs: dict[str, Any] = {"weights": data.weights} if weighted else {}
        if op == "trimmed_mean":
            kwargs["trim_ratio"] = TRIM_RATIO
        updates = data.rows if layout == "list" else data.X
        return partial(getattr(hierfed, op), updates, **kwargs)

    name = f"hierfed-{backend}" + ("-list" if layout == "list" else "") + ("-w" if weighted else "")
    return Impl(name, "hierfed", make, backend=backend, layout=layout, weighted=weighted)


def _flwr(fn: str, *args: Any) -> Maker:
    def make(data: Data) -> Callable[[], Any]:
        agg = flower()
        assert agg is not None
        return partial(getattr(agg, fn), data.flower, *args)

    return make


_PEERS: dict[str, tuple[Impl, ...]] = {
    "trimmed_mean": (
        Impl(
            "scipy.trim_mean",
            "peer",
            lambda data: partial(scipy.stats.trim_mean, data.X, TRIM_RATIO, axis=0),
        ),
        Impl("byzfl.TrMean", "peer", lambda data: partial(byzfl_trmean, data.X, TRIM_RATIO)),
        Impl(
            "flwr.trimmed_avg",
            "peer",
            _flwr("aggregate_trimmed_avg", TRIM_RATIO),
            needs_flower=True,
        ),
    ),
    "median": (
        Impl("np.median", "peer", lambda data: partial(np.median, data.X, axis=0)),
        Impl("flwr.median", "peer", _flwr("aggregate_median"), needs_flower=True),
    ),
    "mean": (
        Impl(
            "np.average-w",
            "peer",
            lambda data: partial(np.average, data.X, axis=0, weights=data.weights),
            weighted=True,
        ),
        Impl("flwr.aggregate-w", "peer", _flwr("aggregate"), weighted=True, needs_flower=True),
    ),
}

_PEERS["pairwise_sq_distances"] = (
    Impl(
        "scipy.cdist",
        "peer",
        lambda data: partial(scipy.spatial.distance.cdist, data.X, data.X, "sqeuclidean"),
    ),
)
_PEERS["krum"] = (
    Impl("byzfl.Krum", "peer", lambda data: partial(byzfl_krum, data.X, byzantine_f(data.cfg.n))),
    Impl(
        "flwr.krum",
        "peer",
        lambda data: _flwr("aggregate_krum", byzantine_f(data.cfg.n), 0)(data),
        needs_flower=True,
    ),
)


def _flwr_bulyan(data: Data) -> Callable[[], Any]:
    """Flower's Bulyan over its Krum; it pops from the list it gets, so each call copies it."""
    agg = flower()
    assert agg is not None
    f = byzantine_f(data.cfg.n)
    return lambda: agg.aggregate_bulyan(list(data.flower), f, agg.aggregate_krum, to_keep=0)


# Flower's Krum squares float32 norms (sdot accumulates in float32): on updates whose Krum
# scores are close its rounds choose differently from exact distances, so its Bulyan answer
# is recorded, not asserted.
_PEERS["bulyan"] = (
    Impl("flwr.bulyan", "peer", _flwr_bulyan, needs_flower=True, max_n=50, checked=False),
)

_FLOOR = Impl(FLOOR, "floor", lambda data: partial(np.mean, data.X, axis=0), computes="mean")
GRAM = "gram"  # what the distance groups' floor computes: no answer to check
_GRAM = Impl(GRAM_FLOOR, "floor", lambda data: lambda: data.X @ data.X.T, computes=GRAM)


def implementations(op: str, cfg: Config, backends: tuple[str, ...] | None = None) -> list[Impl]:
    """The floor, hierfed on each backend (and input layout), then the peers of ``op``."""
    out = [_GRAM if op in DISTANCE_OPS else _FLOOR]
    for backend in bench_backends() if backends is None else backends:
        out.append(_hierfed(op, backend, "array", False))
        if op == "mean" or (cfg.weighted_rules and op in ("trimmed_mean", "median")):
            out.append(_hierfed(op, backend, "array", True))
        if cfg.list_input:
            out.append(_hierfed(op, backend, "list", False))
    if cfg.peers:
        out.extend(_PEERS[op])
    return out


def find(op: str, cfg: Config, name: str) -> Impl:
    """The implementation of ``op`` called ``name``."""
    for impl in implementations(op, cfg, _backend.BACKENDS):
        if impl.name == name:
            return impl
    raise KeyError(f"no implementation {name!r} of {op}")


_warm: set[tuple[str, str, str]] = set()


def warm_up(op: str, impl: Impl, cfg: Config) -> None:
    """Run ``impl`` once on a small input of ``cfg``'s n and dtype (JIT compiles, lazy imports,
    and the code of the threads and of a chunk's tail paged in: the memory probe counts
    VmHWM, file-backed code pages included, ~200 KB at the first threaded call)."""
    key = (op, impl.name, cfg.dtype)
    if key in _warm:
        return
    tiny = Data(Config(cfg.n, 7 * 1024 + 64, cfg.dtype, ops=(op,)))  # n*d >= 2**16 at n >= 10
    with impl.active():
        impl.make(tiny)()
    _warm.add(key)


def tolerance(dtype: str, op: str = "mean") -> float:
    """Largest accepted deviation from the reference (values are ~N(0, 1)).

    Distances are compared relatively (1e-6); Krum's choice must be the reference's row.
    """
    if op == "pairwise_sq_distances":
        return 1e-6
    if op == "krum":
        return 0.0
    return 1e-4 if dtype == "float32" else 1e-9


def max_abs_err(out: Any, ref: np.ndarray, op: str = "mean") -> float:
    """Largest deviation of an answer from the reference (relative for distances)."""
    err = np.abs(as_array(out).astype(np.float64) - ref)
    if op == "pairwise_sq_distances":
        err = err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    return float(np.max(err))
