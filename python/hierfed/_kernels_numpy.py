"""Plain numpy references of the kernels: slow, obvious, the definition in code.

Every backend module (``_core`` via ``_kernels_cpp``, ``_kernels_numba``, this one) exposes the
same kernel contract, used by :mod:`hierfed.aggregator` through :mod:`hierfed._backend`:

``kernel(segments, outs, ..., weights, n_threads) -> bool``

- ``segments[s][i]`` is update ``i``'s part ``s``: a 1-D C-contiguous float32 or float64 array
  (one dtype throughout) of length ``outs[s].size``. A 2-D input is one segment; a per-layer
  model input has one segment per layer.
- ``outs[s]`` is a 1-D C-contiguous array of that dtype, written in place.
- ``weights`` is ``None`` or a validated float64 array of length ``n`` (finite, >= 0, sum > 0).
- The return value is ``True`` when a non-finite input value was seen; the outputs are then
  unspecified and the caller raises.

Weighted order statistics break ties by row index (a stable sort): among equal values the
update with the lower index counts as the smaller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Rows = Sequence[NDArray[np.floating]]


def _stack(rows: Rows) -> NDArray[np.float64]:
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows])


def midpoint(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The median of two middle values ``a <= b``: halves first (no overflow near the float64
    maximum), and ``a`` itself where they are equal (halving rounds below the smallest normal
    float64, so ``0.5a + 0.5a`` can exceed ``a`` by one unit; for ``a < b`` the result always
    lies in ``[a, b]``)."""
    out: NDArray[np.float64] = np.where(a == b, a, 0.5 * a + 0.5 * b)
    return out


def _any_nonfinite(segments: Sequence[Rows]) -> bool:
    return any(not np.isfinite(r).all() for rows in segments for r in rows)


def mean(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Weighted mean ``sum(w_i x_i) / sum(w_i)`` per coordinate, in float64."""
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        w = np.ones(len(rows)) if weights is None else weights
        with np.errstate(over="ignore"):  # the caller reports an overflowing mean
            out[...] = (w[:, None] * x).sum(axis=0) / w.sum()
    return False


def trimmed_mean(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    n_trim: int,
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Per coordinate drop the ``n_trim`` smallest and largest values, weighted mean of the rest.

    The kept weight of a coordinate can be zero only with zero weights; its result is then NaN.
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        n = x.shape[0]
        order = np.argsort(x, axis=0, kind="stable")[n_trim : n - n_trim]
        kept = np.take_along_axis(x, order, axis=0)
        w = np.ones(n) if weights is None else weights
        kw = w[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[...] = (kw * kept).sum(axis=0) / kw.sum(axis=0)
    return False


def median(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Coordinate-wise (weighted) median.

    In (value, index) order, ``below[q]`` is the weight at or below rank ``q`` (summed upwards)
    and ``above[q]`` the weight above it (summed downwards): ``lo`` is the first rank with
    ``below >= above`` (half the total reached), ``hi`` the first with ``below > above``, and
    the median is ``(lo + hi) / 2``. Comparing the two sides rather than ``2c`` with the total
    makes equal weights give exactly the unweighted median. Unweighted this is ``np.median``.
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
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


# --------------------------------------------------------------------------------------------
# Distance kernels. The compiled and numba kernels follow a fixed summation recipe (see
# ``pairwise_sq_distances`` in :mod:`hierfed._kernels_numba`) so that they agree bit for bit;
# the reference is the plain float64 definition, which they match to rounding.


def pairwise_sq_distances(
    segments: Sequence[Rows],
    out: NDArray[np.float64],
    chunk: int = 0,
    n_units: int = 1,
    n_threads: int = 1,
) -> None:
    """``out[i, j] = sum_c (x_i[c] - x_j[c])**2`` over every segment, in float64.

    ``chunk`` and ``n_units`` fix the summation order of the fast kernels; the reference sums
    exactly in float64 (``math.fsum``-accurate pairwise sums suffice here) and ignores them.
    Non-finite input gives non-finite entries; the caller checks.
    """
    n = len(segments[0])
    out[...] = 0.0
    for rows in segments:
        x = _stack(rows)
        for i in range(n):
            diff = x[i + 1 :] - x[i]
            sq = np.einsum("ij,ij->i", diff, diff) if diff.size else np.zeros(0)
            out[i, i + 1 :] += sq
    iu = np.triu_indices(n, 1)
    out[(iu[1], iu[0])] = out[iu]
    out[np.diag_indices(n)] = 0.0


def sq_distances_to(
    segments: Sequence[Rows],
    point: Sequence[NDArray[np.floating]],
    out: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """``out[i] = sum_c (x_i[c] - point[c])**2`` over every segment, in float64.

    ``point[s]`` is segment ``s`` of the point, in the rows' dtype.
    """
    out[...] = 0.0
    for rows, p in zip(segments, point, strict=True):
        diff = _stack(rows) - np.asarray(p, dtype=np.float64)
        out += np.einsum("ij,ij->i", diff, diff)


def mean_around_median(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    n_keep: int,
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Per coordinate, the weighted mean of the ``n_keep`` values closest to the median.

    Bulyan's last step (El Mhamdi et al. 2018): ``med`` the column's median (the two middle
    values by :func:`midpoint`), distances ``|x_i - med|`` in float64, the ``n_keep`` smallest
    distances taken with ties to the lower row index (a stable sort). Kept weights
    summing to zero give NaN; the caller checks.
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        n = x.shape[0]
        s = np.sort(x, axis=0)
        med = midpoint(s[(n - 1) // 2], s[n // 2])
        order = np.argsort(np.abs(x - med), axis=0, kind="stable")[:n_keep]
        kept = np.take_along_axis(x, order, axis=0)
        w = np.ones(n) if weights is None else weights
        kw = w[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[...] = (kw * kept).sum(axis=0) / kw.sum(axis=0)
    return False
