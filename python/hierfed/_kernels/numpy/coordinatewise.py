"""Numpy references of the coordinate-wise kernels: mean, trimmed mean, median, mean around
the median. Slow, obvious, the definition in code.

Twins: ``cpp/include/hierfed/coordinatewise.hpp`` (bound in ``cpp/src/bind_coordinatewise.cpp``)
and :mod:`hierfed._kernels.numba.coordinatewise`. The contract is the one of
:mod:`hierfed._kernels`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import Outs, Segments, Weights
from ._rows import any_nonfinite, plain_matrix, plain_weights, stack

__all__ = [
    "mean",
    "mean_around_median",
    "mean_matrix",
    "median",
    "median_matrix",
    "midpoint",
    "on_matrix",
    "rule_matrix_with",
    "trimmed_mean",
    "trimmed_mean_matrix",
]


def midpoint(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The median of two middle values ``a <= b``: halves first (no overflow near the float64
    maximum), and ``a`` itself where they are equal (halving rounds below the smallest normal
    float64, so ``0.5a + 0.5a`` can exceed ``a`` by one unit; for ``a < b`` the result always
    lies in ``[a, b]``)."""
    out: NDArray[np.float64] = np.where(a == b, a, 0.5 * a + 0.5 * b)
    return out


def _kept_mean(
    x: NDArray[np.float64], order: NDArray[np.intp], weights: Weights
) -> NDArray[np.float64]:
    """Per column the weighted mean of the rows ``order`` picks (0/0 = NaN for zero weights,
    an overflowing sum inf or NaN: the caller reports both)."""
    w = np.ones(x.shape[0]) if weights is None else weights
    kw = w[order]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # the caller reports
        result: NDArray[np.float64] = (kw * np.take_along_axis(x, order, axis=0)).sum(axis=0)
        result /= kw.sum(axis=0)
    return result


def mean(segments: Segments, outs: Outs, weights: Weights, n_threads: int = 1) -> bool:
    """Weighted mean ``sum(w_i x_i) / sum(w_i)`` per coordinate, in float64."""
    if any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = stack(rows)
        w = np.ones(len(rows)) if weights is None else weights
        with np.errstate(over="ignore"):  # the caller reports an overflowing mean
            out[...] = (w[:, None] * x).sum(axis=0) / w.sum()
    return False


def trimmed_mean(
    segments: Segments, outs: Outs, n_trim: int, weights: Weights, n_threads: int = 1
) -> bool:
    """Per coordinate drop the ``n_trim`` smallest and largest values, weighted mean of the rest.

    The kept weight of a coordinate can be zero only with zero weights; its result is then NaN.
    """
    if any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = stack(rows)
        n = x.shape[0]
        out[...] = _kept_mean(x, np.argsort(x, axis=0, kind="stable")[n_trim : n - n_trim], weights)
    return False


def median(segments: Segments, outs: Outs, weights: Weights, n_threads: int = 1) -> bool:
    """Coordinate-wise (weighted) median.

    In (value, index) order, ``below[q]`` is the weight at or below rank ``q`` (summed upwards)
    and ``above[q]`` the weight above it (summed downwards): ``lo`` is the first rank with
    ``below >= above`` (half the total reached), ``hi`` the first with ``below > above``, and
    the median is ``(lo + hi) / 2``. Comparing the two sides rather than ``2c`` with the total
    makes equal weights give exactly the unweighted median. Unweighted this is ``np.median``.
    """
    if any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = stack(rows)
        order = np.argsort(x, axis=0, kind="stable")
        s = np.take_along_axis(x, order, axis=0)
        w = np.ones(x.shape[0]) if weights is None else weights
        ws = w[order]
        below = np.cumsum(ws, axis=0)  # weight at or below each rank, summed upwards
        above = np.zeros_like(ws)  # weight above each rank, summed downwards
        above[:-1] = np.cumsum(ws[:0:-1], axis=0)[::-1]
        lo = np.argmax(below >= above, axis=0)
        hi = np.argmax(below > above, axis=0)
        cols = np.arange(x.shape[1])
        out[...] = midpoint(s[lo, cols], s[hi, cols])
    return False


def mean_around_median(
    segments: Segments, outs: Outs, n_keep: int, weights: Weights, n_threads: int = 1
) -> bool:
    """Per coordinate, the weighted mean of the ``n_keep`` values closest to the median.

    Bulyan's last step (El Mhamdi et al. 2018): ``med`` the column's median (the two middle
    values by :func:`midpoint`), distances ``|x_i - med|`` in float64, the ``n_keep`` smallest
    distances taken with ties to the lower row index (a stable sort). Kept weights
    summing to zero give NaN; the caller checks.
    """
    if any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = stack(rows)
        n = x.shape[0]
        s = np.sort(x, axis=0)
        med = midpoint(s[(n - 1) // 2], s[n // 2])
        out[...] = _kept_mean(
            x, np.argsort(np.abs(x - med), axis=0, kind="stable")[:n_keep], weights
        )
    return False


def rule_matrix_with(
    run: Callable[..., bool], x: Any, n_trim: int | None, weights: Any, n_threads: int
) -> Any:
    """The one-call entry of a backend's rule: ``run(x, out, [n_trim,] weights, n_threads)``
    (its ``mean``, ``trimmed_mean`` or ``median`` on the matrix's rows, :func:`on_matrix`).
    The answer for a plain ``(n, d)`` matrix (``plain_matrix``) with plain weights
    (``plain_weights``), the general way's bit for bit; None for anything else, NaN/inf input,
    or a non-finite answer (an overflowing float64 sum, a coordinate whose kept weights are all
    zero), which the caller's general way checks and reports."""
    if not plain_matrix(x):
        return None
    n = x.shape[0]
    ok, w = plain_weights(weights, n)
    if not ok or (n_trim is not None and not 0 <= n_trim < n - n_trim):
        return None
    out = np.empty(x.shape[1], x.dtype)
    trim = () if n_trim is None else (n_trim,)
    if run(x, out, *trim, w, n_threads) or not np.isfinite(out).all():
        return None
    return out


def on_matrix(kernel: Callable[..., bool]) -> Callable[..., bool]:
    """A kernel over segments as :func:`rule_matrix_with` runs it: the matrix's rows its one
    segment, ``out`` its output."""

    def run(x: Any, out: Any, *args: Any) -> bool:
        return kernel([list(x)], [out], *args)

    return run


def mean_matrix(x: Any, weights: Any, n_threads: int = 1) -> Any:
    """:func:`mean` of a plain ``(n, d)`` matrix in one call, or None (:func:`rule_matrix_with`)."""
    return rule_matrix_with(on_matrix(mean), x, None, weights, n_threads)


def trimmed_mean_matrix(x: Any, n_trim: int, weights: Any, n_threads: int = 1) -> Any:
    """:func:`trimmed_mean` of a plain ``(n, d)`` matrix in one call, or None."""
    return rule_matrix_with(on_matrix(trimmed_mean), x, n_trim, weights, n_threads)


def median_matrix(x: Any, weights: Any, n_threads: int = 1) -> Any:
    """:func:`median` of a plain ``(n, d)`` matrix in one call, or None."""
    return rule_matrix_with(on_matrix(median), x, None, weights, n_threads)
