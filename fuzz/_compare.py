"""The oracle: every call runs on the backend under test and on the numpy reference.

Acceptable outcomes (issue 9): the same result as the numpy reference (to float rounding,
selections exactly), or a ValueError/TypeError on both. Anything else raises ``WrongResultError``
(or lets the unexpected exception through): the driver counts it as a failure.
"""

from __future__ import annotations

import dataclasses
import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from hierfed import _backend

ACCEPTED = (ValueError, TypeError)
DBL_MAX = float(np.finfo(np.float64).max)
STATS = {"results": 0, "errors": 0, "undefined": 0}  # outcomes checked (for the run summary)


class WrongResultError(AssertionError):
    """The backend under test disagrees with the numpy reference (or with a stated property)."""


@dataclasses.dataclass
class Outcome:
    """A call's result, or the accepted exception it raised."""

    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def run(fn: Callable[[], Any]) -> Outcome:
    """Call ``fn``; an accepted exception is an outcome, any other one propagates."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Outcome(value=fn())
    except ACCEPTED as exc:
        return Outcome(error=exc)


def on(backend: str, fn: Callable[[], Any]) -> Outcome:
    """:func:`run` with ``backend`` active."""
    with _backend.using(backend):
        return run(fn)


def _checked_distances(fast: Any, ref: Any) -> Callable[..., None]:
    """``pairwise_sq_distances`` of ``fast``, checked against ``ref`` entry by entry."""

    def pairwise(segments: Any, out: Any, *args: Any) -> None:
        expected = np.empty_like(out)
        ref.pairwise_sq_distances(segments, expected, *args)
        fast.pairwise_sq_distances(segments, out, *args)
        f32 = segments[0][0].dtype == np.float32
        # hierfed.distances redoes overflowed (and, for float32, tiny) sums in float64
        redo = ~np.isfinite(out) | ~np.isfinite(expected)
        if f32:
            redo |= out < sum(rows[0].size for rows in segments) * 2.0**-100
        close = np.isclose(out, expected, rtol=2e-6 if f32 else 1e-10, atol=0) | redo
        if not close.all():
            i, j = np.argwhere(~close)[0]
            raise WrongResultError(f"distance [{i}, {j}]: {out[i, j]!r} != {expected[i, j]!r}")

    return pairwise


def _rtol(dtype: Any, f32: float, f64: float) -> float:
    return f32 if dtype == np.float32 else f64


def _top(segments: Any) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tops = [float(np.max(np.abs(r), initial=0.0)) for rows in segments for r in rows]
    return max((t for t in tops if np.isfinite(t)), default=0.0)


def _close_or_raise(
    got: Any, want: Any, rtol: float, segments: Any, what: str, relative: bool = False
) -> None:
    """Close to rounding: ``rtol``, and (unless ``relative``) an absolute ``rtol`` times the
    largest input. Non-finite input is not compared (results undefined); non-finite entries
    are skipped where inputs near the float64 maximum may overflow in one summation order and
    not in the other."""
    if any(not np.isfinite(r).all() for rows in segments for r in rows):
        return
    top = _top(segments)
    atol = 0.0 if relative else rtol * top
    ok = np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True) | (got == want)
    if top * 64 >= DBL_MAX:
        ok |= ~np.isfinite(got) | ~np.isfinite(want)
    if not ok.all():
        i = np.flatnonzero(~np.asarray(ok).ravel())[0]
        raise WrongResultError(f"{what}: {got.ravel()[i]!r} != {want.ravel()[i]!r}")


def _checked_mix(fast: Any, ref: Any) -> Callable[..., bool]:
    """``mix_rows`` of ``fast``, each mean checked against ``ref`` to rounding."""

    def mix_rows(segments: Any, weights: Any, outs: Any, *args: Any) -> bool:
        expected = [np.empty_like(o) for o in outs]
        ref_seen = bool(ref.mix_rows(segments, weights, expected, *args))
        seen = bool(fast.mix_rows(segments, weights, outs, *args))
        if seen or ref_seen:  # non-finite input: the outputs are undefined
            return True
        got = np.concatenate([o.ravel() for o in outs])
        want = np.concatenate([e.ravel() for e in expected])
        _close_or_raise(got, want, _rtol(outs[0].dtype, 1e-6, 1e-12), segments, "mixed update")
        return False

    return mix_rows


def _checked_to_point(fast: Any, ref: Any) -> Callable[..., None]:
    """``sq_distances_to`` of ``fast``, checked against ``ref`` to rounding."""

    def sq_distances_to(segments: Any, point: Any, out: Any, *args: Any) -> None:
        expected = np.empty_like(out)
        ref.sq_distances_to(segments, point, expected, *args)
        fast.sq_distances_to(segments, point, out, *args)
        if any(not np.isfinite(p).all() for p in point):
            return
        rtol = _rtol(segments[0][0].dtype, 2e-6, 1e-10)
        _close_or_raise(out, expected, rtol, segments, "distance to the point", relative=True)

    return sq_distances_to


def reference(backend: str, fn: Callable[[], Any]) -> Outcome:
    """:func:`run` on the numpy reference, but with some sums of ``backend``.

    The fast kernels sum float32 distances by a fixed recipe (relative error below 1e-6, the
    same bits on every fast backend) and the reference in float64; every backend's float64
    sums round differently in the last bits. Rules that decide on those sums (Krum scores,
    the neighbours and mixed updates of NNM, Bulyan's values closest to the median, the
    stopping test of the geometric median) may therefore break near-ties differently, which is
    not an error. So the reference takes the backend's squared distances, distances to a point
    and mixed updates, after checking each against its own to that rounding, and every
    selection, decision and other kernel runs as the reference defines them.
    """
    ref = _backend._load("numpy")
    hybrid = types.SimpleNamespace(**vars(ref))
    if backend != "numpy":
        fast = _backend._load(backend)
        hybrid.pairwise_sq_distances = _checked_distances(fast, ref)
        hybrid.mix_rows = _checked_mix(fast, ref)
        hybrid.sq_distances_to = _checked_to_point(fast, ref)
    saved = _backend._active_name, _backend._active
    _backend._active_name, _backend._active = "numpy", hybrid  # type: ignore[assignment]
    try:
        return run(fn)
    finally:
        _backend._active_name, _backend._active = saved


def rtol_for(*inputs: Any) -> float:
    """Relative tolerance for results computed from ``inputs`` (float32 or float64 data)."""
    leaves = _leaves(list(inputs))
    if any(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in leaves):
        return 1e-5
    return 1e-10


def _leaves(x: Any) -> list[Any]:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return [v for f in dataclasses.fields(x) for v in _leaves(getattr(x, f.name))]
    if isinstance(x, (list, tuple)):
        return [v for item in x for v in _leaves(item)]
    return [x]


def same(got: Any, want: Any, rtol: float, atol: float, where: str = "result") -> None:
    """Structural equality; arrays equal in shape and dtype and close in value (NaN == NaN)."""
    if dataclasses.is_dataclass(want) and not isinstance(want, type):
        if type(got) is not type(want):
            raise WrongResultError(f"{where}: type {type(got).__name__} != {type(want).__name__}")
        for f in dataclasses.fields(want):
            same(getattr(got, f.name), getattr(want, f.name), rtol, atol, f"{where}.{f.name}")
        return
    if isinstance(want, (list, tuple)):
        if type(got) is not type(want) or len(got) != len(want):
            raise WrongResultError(f"{where}: {type(got).__name__}/{len(got)} != {len(want)}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            same(g, w, rtol, atol, f"{where}[{i}]")
        return
    if isinstance(want, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype != want.dtype:
            raise WrongResultError(
                f"{where}: {getattr(got, 'shape', None)} {getattr(got, 'dtype', type(got))} "
                f"!= {want.shape} {want.dtype}"
            )
        if want.dtype.kind in "fc":
            # differences below the smallest normal number are subnormal rounding
            floor = float(np.finfo(want.dtype).tiny)
            ok = np.isclose(got, want, rtol=rtol, atol=max(atol, floor), equal_nan=True)
            ok |= got == want
            if not ok.all():
                i = np.flatnonzero(~ok.ravel())[0]
                raise WrongResultError(
                    f"{where}: element {i}: {got.ravel()[i]!r} != {want.ravel()[i]!r} "
                    f"(rtol {rtol}, atol {atol})"
                )
        elif not np.array_equal(got, want):
            raise WrongResultError(f"{where}: integer arrays differ")
        return
    if isinstance(want, float) and isinstance(got, float):
        if not (got == want or np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)):
            raise WrongResultError(f"{where}: {got!r} != {want!r}")
        return
    if got != want:
        raise WrongResultError(f"{where}: {got!r} != {want!r}")


def scale_of(*inputs: Any) -> float:
    """The largest finite magnitude among the float arrays of ``inputs`` (1 if none)."""
    top = 0.0
    for leaf in _leaves(list(inputs)):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f" and leaf.size:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = np.abs(leaf.astype(np.float64))
            a = a[np.isfinite(a)]
            if a.size:
                top = max(top, float(a.max()))
    return top or 1.0


def _overflow_either_way(got: Outcome, want: Outcome, scale: float) -> bool:
    """Whether one side's documented float64 overflow against the other's finite answer is
    a difference of summation order, not an error.

    The reference sums in numpy's pairwise order, the kernels in index or sorted order: with
    values near the float64 maximum either's partial sums may overflow where the other's stay
    finite. Possible only when ``64 * max|x| >= 1.8e308`` (at most 12 updates are fuzzed,
    weights are scaled below 1); the finite answer must then really be finite.
    """
    failed = want if got.ok else got
    if "overflows float64" not in str(failed.error) or scale * 64 < DBL_MAX:
        return False
    answer = got if got.ok else want
    if has_nonfinite(answer.value):
        raise WrongResultError("a non-finite answer where the other side overflowed")
    STATS["overflow_either_way"] = STATS.get("overflow_either_way", 0) + 1
    return True


def agree(
    got: Outcome, want: Outcome, rtol: float, scale: float = 1.0, undefined: bool = False
) -> None:
    """The backend under test agrees with the reference: same error class, or close results.

    ``undefined``: the documented result is undefined (non-finite input with
    ``check_finite=False``); only a crash or a non-accepted exception counts then.
    """
    if undefined:
        STATS["undefined"] += 1
        return
    STATS["results" if got.ok else "errors"] += 1
    if got.ok != want.ok and _overflow_either_way(got, want, scale):
        return
    if got.ok != want.ok:
        raise WrongResultError(
            f"backend {'returned' if got.ok else f'raised {got.error!r}'} but the reference "
            f"{'returned' if want.ok else f'raised {want.error!r}'}"
        )
    if not got.ok:
        if type(got.error) is not type(want.error):
            raise WrongResultError(f"error {got.error!r} but the reference raised {want.error!r}")
        return
    same(got.value, want.value, rtol, rtol * scale)


def has_nonfinite(*inputs: Any) -> bool:
    """Whether any float array among ``inputs`` holds a NaN or an infinity."""
    for leaf in _leaves(list(inputs)):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind in "fc" and not np.isfinite(leaf).all():
            return True
    return False
