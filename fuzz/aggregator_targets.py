"""Harnesses of :mod:`hierfed.aggregator`: ``aggregate`` with every method and the rules'
direct functions. Each target decodes hostile updates and parameters from the fuzzer's bytes,
runs the call on the backend under test and on the numpy reference, and checks they agree."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import _gen
import numpy as np
from _compare import agree, has_nonfinite, on, reference, rtol_for, scale_of
from _data import Data

import hierfed
from hierfed import _backend
from hierfed.selection import BULYAN_PER_F, KRUM_PER_F

Target = Callable[[Data], None]


def _point(data: Data, u: Any) -> Any:
    """A centre for centered clipping: like one update, or broken."""
    if isinstance(u, np.ndarray) and u.ndim >= 2 and len(u):
        like: Any = u[0]
    elif isinstance(u, (list, tuple)) and len(u):
        like = u[0]
    else:
        like = np.zeros(3)
    if data.chance(10):
        return data.pick((None, "x", np.zeros(1), [np.zeros(2)]))
    if isinstance(like, list):
        return [_gen.values(data, np.shape(x), np.dtype(np.float64)) for x in like]
    return _gen.values(data, np.shape(like), np.dtype(np.float64))


def _iterations(data: Data) -> Any:
    """An iteration count: bad types and values, but never 2**70 (that is a real request
    for 2**70 iterations, not a bug)."""
    n = _gen.count(data, 3)
    return 3 if isinstance(n, int) and n > 1000 else n


def _params(data: Data, method: str, n: int) -> dict[str, Any]:
    """Keyword parameters for ``method``: mostly valid, sometimes not."""
    p: dict[str, Any] = {}
    weighted = ("mean", "median", "multi_krum", "bulyan", "geometric_median", "trimmed_mean")
    if method in weighted and data.int(0, 1):
        p["weights"] = _gen.weights(data, n)
    if method == "trimmed_mean":
        if data.int(0, 3) == 0:
            p["n_trim"] = _gen.count(data, n // 2)
        else:
            p["trim_ratio"] = data.pick((None, 0.0, 0.1, 0.2, 0.25, 0.49, 0.5, -0.1, np.nan))
            if data.chance(10):
                p["trim_ratio"] = _gen.real(data)
    if method in ("krum", "multi_krum", "bulyan"):
        per_f = BULYAN_PER_F if method == "bulyan" else KRUM_PER_F
        most = (n - 3) // per_f  # the largest f the rule accepts for n updates
        # uniform f over [-2, n/2 + 2] is valid in ~10 % (Krum) / 5 % (Bulyan) of calls, and
        # the selection code would go mostly unfuzzed; so three calls in four take a valid f
        valid = most >= 0 and data.int(0, 3) > 0
        p["f"] = data.int(0, most) if valid else _gen.count(data, n // 2)
    if method == "multi_krum" and data.int(0, 1):
        p["m"] = _gen.count(data, n)
    if method == "geometric_median":
        if data.int(0, 1):
            p["eps"] = data.pick((1e-8, 1e-3, 1.0)) if data.int(0, 3) else _gen.real(data)
        if data.int(0, 1):
            p["max_iter"] = data.int(1, 8) if data.int(0, 3) else _iterations(data)
        if data.int(0, 1):
            p["tol"] = data.pick((1e-6, 1e-2, 0.5)) if data.int(0, 3) else _gen.real(data)
    if data.chance(8):
        p["check_finite"] = False
    return p


def _centered(data: Data, u: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"center": _point(data, u)}
    p["tau"] = data.pick((0.1, 1.0, 10.0, 1e9)) if data.int(0, 3) else _gen.real(data)
    if data.int(0, 1):
        p["n_iter"] = data.int(1, 4) if data.int(0, 3) else _iterations(data)
    if data.chance(8):
        p["check_finite"] = False
    return p


def _many_updates(data: Data) -> Any:
    """Hundreds of updates of a few coordinates: the selection kernels of the median and the
    trimmed means (n >= 256), with the generator's hostile values (ties, huge, non-finite)."""
    n = data.int(256, 700)
    block = _gen.values(data, (n, data.int(1, 40)), _gen.dtype(data))
    if block.dtype.kind == "f":  # sums of 700 values near 1.8e308 overflow in some orders and
        block = np.clip(block, -1e300, 1e300)  # not others (the mean's row order, n_trim=0)
    return _gen.layout(data, block) if data.int(0, 1) else [block[i] for i in range(n)]


def check(
    data: Data, call: Callable[[Any, dict[str, Any]], Any], method: str, many: bool = False
) -> None:
    """Decode updates (hundreds of them when ``many``) and parameters, run ``call`` on both
    backends, compare."""
    u = _many_updates(data) if many else _gen.updates(data)
    n = _gen.n_of(u) if not isinstance(u, np.ndarray) or u.ndim else 0
    params = _centered(data, u) if method == "centered_clipping" else _params(data, method, n)
    if data.chance(20):  # a parameter the rule does not take
        params[data.pick(("f", "weights", "bogus", "m"))] = 1
    undefined = params.get("check_finite", True) is False and has_nonfinite(u, params)
    threads = data.int(1, 3)
    saved = hierfed.get_num_threads()
    hierfed.set_num_threads(threads)
    try:
        got = on(_backend.backend(), lambda: call(u, copy.deepcopy(params)))
    finally:
        hierfed.set_num_threads(saved)
    want = reference(_backend.backend(), lambda: call(u, copy.deepcopy(params)))
    rtol = rtol_for(u)
    if method == "geometric_median":
        # up to max_iter Weiszfeld steps, each on means that round differently per backend
        rtol = max(rtol, 1e-6)
    agree(got, want, rtol, scale_of(u, params.get("center")), undefined)


def _aggregate_target(method: str) -> Target:
    def target(data: Data) -> None:
        pre = "nnm" if data.chance(5) else None

        def call(u: Any, params: dict[str, Any]) -> Any:
            if pre and "f" not in params:
                params["f"] = data_f
            return hierfed.aggregate(u, method, pre=pre, **params)

        data_f = data.int(0, 3)
        check(data, call, method)

    return target


def _direct_target(fn: Callable[..., Any], method: str, many: bool = False) -> Target:
    def target(data: Data) -> None:
        check(data, lambda u, params: fn(u, **params), method, many)

    return target


def _krum_select(u: Any, f: Any = None, **params: Any) -> Any:
    return hierfed.krum_select(u, f, **params)


def _pairwise(u: Any, check_finite: bool = True, **_: Any) -> Any:
    return hierfed.pairwise_sq_distances(u, check_finite=check_finite)


def _nnm(u: Any, f: Any = None, check_finite: bool = True, **_: Any) -> Any:
    return hierfed.nearest_neighbor_mixing(u, f, check_finite=check_finite)


TARGETS: dict[str, Target] = {
    f"aggregate.{m.value}": _aggregate_target(m.value) for m in hierfed.AggregationMethod
}
TARGETS.update(
    {
        "mean": _direct_target(hierfed.mean, "mean"),
        "trimmed_mean": _direct_target(hierfed.trimmed_mean, "trimmed_mean"),
        "median": _direct_target(hierfed.median, "median"),
        "trimmed_mean.many_updates": _direct_target(hierfed.trimmed_mean, "trimmed_mean", True),
        "median.many_updates": _direct_target(hierfed.median, "median", True),
        "krum": _direct_target(hierfed.krum, "krum"),
        "krum_select": _direct_target(_krum_select, "krum"),
        "multi_krum": _direct_target(hierfed.multi_krum, "multi_krum"),
        "bulyan": _direct_target(hierfed.bulyan, "bulyan"),
        "geometric_median": _direct_target(hierfed.geometric_median, "geometric_median"),
        "centered_clipping": _direct_target(hierfed.centered_clipping, "centered_clipping"),
        "pairwise_sq_distances": _direct_target(_pairwise, "pairwise"),
        "nearest_neighbor_mixing": _direct_target(_nnm, "krum"),
    }
)
