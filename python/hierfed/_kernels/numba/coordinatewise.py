"""Numba twins of the coordinate-wise kernels: mean, trimmed mean, median, mean around the
median. Same algorithms and results as the C++ core, no compiler needed.

Twins: ``cpp/include/hierfed/coordinatewise.hpp`` (bound in ``cpp/src/bind_coordinatewise.cpp``)
and :mod:`hierfed._kernels.numpy.coordinatewise` (the definitions). Kernels return ``True``
when an input value is NaN or infinite (checked within the kernel's own pass).

- mean: per block a float64 accumulator, rows added in order.
- unweighted trimmed mean with ``1 <= k <= 8``: one pass with a "pop network" per coordinate,
  the ``k`` smallest and ``k`` largest values seen so far; a value pushed out of both is a kept
  middle value and goes into a float64 sum, so no outlier is ever added and subtracted again.
  Coordinates are independent lanes, which LLVM vectorises. Compiled once per ``k``.
- ``n >= SELECT_MIN_N`` (2048): the median and the other trimmed means (weighted too) by
  selection (:mod:`.coordinatewise_select`), not sorting.
- the weighted trimmed mean below ``n = 256``: its thresholds by the unweighted machinery, then
  one weighted pass (:mod:`.coordinatewise_weighted`).
- the weighted median from ``n = 256``: a selection by weight (:mod:`.coordinatewise_wmedian`).
- everything else (median, larger ``k``, the weighted median, the mean around the median): a
  tile of coordinates is sorted vertically by Batcher's odd-even merge sorting network
  (:mod:`.sorting_network`), pruned to the comparators the needed output positions depend on
  (unweighted, its first stages run in registers while loading); the weighted median sorts
  (value, row index) pairs, a stable order.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._types import Outs, Segments, Weights
from ..numpy import coordinatewise as _ref
from ._shared import (
    Segs,
    addresses,
    chunk,
    jit,
    jit_inline,
    jit_parallel,
    locate,
    matrix_addresses,
    tiling,
    use_threads,
    view,
)
from .coordinatewise_select import SELECT_MIN_N, sample_network, select_kernel
from .coordinatewise_tiles import (
    NET_GROUP,
    _flagged,
    around_median_kernel,
    net_kernel,
    net_weighted_kernel,
)
from .coordinatewise_weighted import POP_MAX_TRIM, weighted_trimmed_kernel
from .coordinatewise_wmedian import WMEDIAN_MIN_N, wmedian_kernel
from .sorting_network import network

__all__ = [
    "mean",
    "mean_around_median",
    "mean_matrix",
    "median",
    "median_matrix",
    "trimmed_mean",
    "trimmed_mean_matrix",
]

_MEAN_BLOCK = 8192  # coordinates per block of the mean (its float64 accumulator stays in L2)
_POP_BLOCK = 128  # coordinates per block of the pop network (2k slots per lane stay in L1)
_NO_WEIGHTS = np.ones(1)  # the weights argument of an unweighted kernel, unread

# The kernels below write out four rows (x0..x3, v0..v3) where a loop over rows would do: the
# unrolled form keeps four values per lane in registers for one load and store of the
# accumulator or slot, which is what makes them run at memory speed (a loop over a small row
# array does not vectorise). The repeated lines are deliberate.


@jit
def _any_nonfinite(ptrs: Any, s: int, n: int, j0: int, le: int, like: Any) -> bool:
    """Whether a row of segment ``s`` holds a NaN or infinity among ``le`` coordinates at j0."""
    zero = np.zeros(1, like.dtype)[0]
    probe = zero
    for i in range(n):
        x = view(ptrs[s * n + i], j0, le, like)
        for j in range(le):
            probe += x[j] * zero
    return bool(probe != zero)


@jit_parallel
def _mean_kernel(segs: Any, n: int, w: Any, weighted: bool, like: Any, n_threads: int) -> bool:
    """Weighted mean per block of coordinates: a float64 accumulator, rows added in order.

    Four rows are added per sweep over the accumulator (the same order of additions), which
    keeps the kernel at memory speed. A non-finite sum sends the block to a second look that
    tells a NaN or infinity in the input from an overflow of finite values.
    """
    block = _MEAN_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    total = 0.0
    for i in range(n):
        total += w[i] if weighted else 1.0
    bad = 0
    for c in prange(nch):
        acc = np.empty(block, np.float64)
        for b in chunk(c, nb, nch):
            s, j0, le = locate(b, starts, lens, block)
            for j in range(le):
                acc[j] = 0.0
            base = s * n
            i = 0
            while i + 4 <= n:
                x0 = view(ptrs[base + i], j0, le, like)
                x1 = view(ptrs[base + i + 1], j0, le, like)
                x2 = view(ptrs[base + i + 2], j0, le, like)
                x3 = view(ptrs[base + i + 3], j0, le, like)
                if weighted:
                    w0, w1, w2, w3 = w[i], w[i + 1], w[i + 2], w[i + 3]
                    for j in range(le):
                        acc[j] = (((acc[j] + w0 * x0[j]) + w1 * x1[j]) + w2 * x2[j]) + w3 * x3[j]
                else:
                    for j in range(le):
                        acc[j] = (((acc[j] + x0[j]) + x1[j]) + x2[j]) + x3[j]
                i += 4
            while i < n:
                x0 = view(ptrs[base + i], j0, le, like)
                if weighted:
                    w0 = w[i]
                    for j in range(le):
                        acc[j] += w0 * x0[j]
                else:
                    for j in range(le):
                        acc[j] += x0[j]
                i += 1
            nonfinite = 0  # an integer count vectorises, a float sum would not
            for j in range(le):
                nonfinite += (acc[j] - acc[j]) != 0.0
            if nonfinite and _any_nonfinite(ptrs, s, n, j0, le, like):
                bad += 1
            out = view(optrs[s], j0, le, like)
            for j in range(le):
                out[j] = acc[j] / total
    return bad > 0


@jit_inline
def _pop_slots(k: int, like: Any) -> tuple[Any, Any, Any, Any]:
    """A thread's scratch of the pop network: the ``k`` low and ``k`` high slots of each of
    ``_POP_BLOCK`` lanes, the non-finite probe and the float64 sums."""
    block = _POP_BLOCK
    lo = np.empty((k, block), like.dtype)
    hi = np.empty((k, block), like.dtype)
    return lo, hi, np.empty(block, like.dtype), np.empty(block, np.float64)


@cache
def _pop_kernel(k: int) -> Callable[..., bool]:
    """The pop-network trimmed mean compiled for ``k`` (a constant, so the slots unroll)."""

    @jit_parallel
    def pop_trimmed_mean(segs: Any, n: int, like: Any, n_threads: int) -> bool:
        """Unweighted trimmed mean dropping ``k`` values at each end, in one pass.

        Per lane ``lo`` holds the ``k`` smallest values seen, ascending, and ``hi`` the ``k``
        largest, descending. Each value is inserted into ``lo``; what ``lo`` pops out (its
        largest) goes into ``hi``, and what ``hi`` pops out (its smallest) is a middle value:
        it joins the float64 sum. Rows ``0..k-1`` only fill ``lo`` (it pops its +inf
        padding), rows ``k..2k-1`` also fill ``hi`` (which pops its -inf padding). Later rows
        go four at a time through each slot: the same comparisons in the same order, with a
        quarter of the slot loads and stores.
        """
        ptrs, optrs, lens, starts, nb, nch = tiling(segs, _POP_BLOCK, n_threads)
        zero = np.zeros(1, like.dtype)[0]
        kept = float(n - 2 * k)
        bad = 0
        for c in prange(nch):
            lo, hi, probe, acc = _pop_slots(k, like)
            for b in chunk(c, nb, nch):
                s, j0, le = locate(b, starts, lens, _POP_BLOCK)
                lo[:] = np.inf
                hi[:] = -np.inf
                probe[:] = zero
                for j in range(_POP_BLOCK):
                    acc[j] = 0.0
                i = 0
                while i < n:
                    if i >= 2 * k and i + 3 < n:  # four rows per sweep over the slots
                        x0 = view(ptrs[s * n + i], j0, le, like)
                        x1 = view(ptrs[s * n + i + 1], j0, le, like)
                        x2 = view(ptrs[s * n + i + 2], j0, le, like)
                        x3 = view(ptrs[s * n + i + 3], j0, le, like)
                        for j in range(le):
                            v0 = x0[j]
                            v1 = x1[j]
                            v2 = x2[j]
                            v3 = x3[j]
                            probe[j] += ((v0 * zero + v1 * zero) + v2 * zero) + v3 * zero
                            for t in range(k):
                                a = lo[t, j]
                                m = a if a < v0 else v0
                                v0 = v0 if a < v0 else a
                                a = m if m < v1 else v1
                                v1 = v1 if m < v1 else m
                                m = a if a < v2 else v2
                                v2 = v2 if a < v2 else a
                                lo[t, j] = m if m < v3 else v3
                                v3 = v3 if m < v3 else m
                            for t in range(k):
                                a = hi[t, j]
                                m = v0 if a < v0 else a
                                v0 = a if a < v0 else v0
                                a = v1 if m < v1 else m
                                v1 = m if m < v1 else v1
                                m = v2 if a < v2 else a
                                v2 = a if a < v2 else v2
                                hi[t, j] = v3 if m < v3 else m
                                v3 = m if m < v3 else v3
                            acc[j] = (((acc[j] + v0) + v1) + v2) + v3
                        i += 4
                        continue
                    # One row: rows < k only fill lo, rows < 2k also fill hi (what they
                    # eject are placeholders), later rows add the value ejected from hi.
                    x = view(ptrs[s * n + i], j0, le, like)
                    fill_hi = i >= k
                    keep = i >= 2 * k
                    for j in range(le):
                        v = x[j]
                        probe[j] += v * zero
                        for t in range(k):
                            a = lo[t, j]
                            lo[t, j] = a if a < v else v
                            v = v if a < v else a
                        if fill_hi:
                            for t in range(k):
                                a = hi[t, j]
                                hi[t, j] = v if a < v else a
                                v = a if a < v else v
                            if keep:
                                acc[j] += v
                    i += 1
                bad += _flagged(probe, le)
                out = view(optrs[s], j0, le, like)
                for j in range(le):
                    out[j] = acc[j] / kept
        return bad > 0

    return pop_trimmed_mean


def _index_like(outs: Outs) -> NDArray[np.integer[Any]]:
    """Row-index dtype witness of the weighted network: as wide as the values, to vectorise."""
    return np.empty(0, np.uint32 if outs[0].dtype == np.float32 else np.uint64)


def mean(segments: Segments, outs: Outs, weights: Weights, n_threads: int = 1) -> bool:
    """Weighted mean ``sum(w_i x_i) / sum(w_i)`` per coordinate, accumulated in float64.

    Returns True when an input value is NaN or infinite (the outputs are then unspecified).
    """
    if not segments:
        return False
    return _mean_at(*addresses(segments, outs), weights, outs[0], n_threads)


def _mean_at(n: int, segs: Segs, weights: Weights, like: Any, n_threads: int) -> bool:
    """:func:`mean` on checked addresses (``like``: an output, the dtype witness)."""
    used = use_threads(n_threads, n * int(segs.lens.sum()))
    w = _NO_WEIGHTS if weights is None else weights
    return bool(_mean_kernel(segs, n, w, weights is not None, like, used))


def trimmed_mean(
    segments: Segments, outs: Outs, n_trim: int, weights: Weights, n_threads: int = 1
) -> bool:
    """Per coordinate drop the ``n_trim`` smallest and largest values, weighted mean of the rest.

    ``n_trim == 0`` is the mean; unweighted with ``n_trim <= 8`` the single-pass pop network;
    ``n >= 256`` a selection; otherwise a sorting network (weighted: the thresholds of the
    unweighted kernels, then one weighted pass, ties by row order). A coordinate
    whose kept weights sum to zero gets NaN (0/0); the caller checks. Returns True when an
    input value is non-finite.
    """
    if not segments:
        return False
    return _trimmed_mean_at(*addresses(segments, outs), int(n_trim), weights, outs[0], n_threads)


def _trimmed_mean_at(
    n: int, segs: Segs, k: int, weights: Weights, like: Any, n_threads: int
) -> bool:
    """:func:`trimmed_mean` on checked addresses."""
    if k == 0:
        return _mean_at(n, segs, weights, like, n_threads)
    if not 0 < 2 * k < n:
        raise ValueError(f"n_trim must satisfy 0 <= 2*n_trim < n (n={n}), got {k}")
    used = use_threads(n_threads, n * int(segs.lens.sum()))
    if weights is None and k <= POP_MAX_TRIM:
        return bool(_pop_kernel(k)(segs, n, like, used))
    if n >= SELECT_MIN_N:
        w = _NO_WEIGHTS if weights is None else weights
        net = sample_network(n)
        return bool(select_kernel(segs, n, k, False, w, weights is not None, net, like, used))
    if weights is None:
        net = network(n, k, n - k - 1, NET_GROUP)
        return bool(net_kernel(segs, n, net, k, False, like, used))
    net = network(n, k, n - k - 1) if k > POP_MAX_TRIM else network(2, 0, 1)  # unread
    return bool(weighted_trimmed_kernel(segs, n, net, k, weights, like, used))


def median(segments: Segments, outs: Outs, weights: Weights, n_threads: int = 1) -> bool:
    """Coordinate-wise (weighted) median, as :func:`hierfed._kernels.numpy.coordinatewise.median`.

    Unweighted: the sorting network pruned to the two middle positions. Weighted: from
    ``n = 256`` a selection by weight (:mod:`.coordinatewise_wmedian`), below it the full
    stable sort by (value, row index), then the first ranks where the weight at or below
    reaches (``>=``) and exceeds (``>``) the weight above. Returns True when an input value
    is non-finite.
    """
    if not segments:
        return False
    return _median_at(*addresses(segments, outs), weights, outs[0], n_threads)


def _median_at(n: int, segs: Segs, weights: Weights, like: Any, n_threads: int) -> bool:
    """:func:`median` on checked addresses."""
    used = use_threads(n_threads, n * int(segs.lens.sum()))
    if weights is not None and bool((weights == weights[0]).all()):
        weights = None  # equal weights: exactly the unweighted median (the C++ kernels' rule)
    if weights is None and n >= SELECT_MIN_N:
        net = sample_network(n)
        return bool(select_kernel(segs, n, 0, True, _NO_WEIGHTS, False, net, like, used))
    if weights is None:
        net = network(n, (n - 1) // 2, n // 2, NET_GROUP)
        return bool(net_kernel(segs, n, net, 0, True, like, used))
    if n >= WMEDIAN_MIN_N:
        return bool(wmedian_kernel(segs, n, weights, sample_network(n), like, used))
    net = network(n, 0, n - 1)
    return bool(net_weighted_kernel(segs, n, net, weights, like, _index_like([like]), used))


def mean_around_median(
    segments: Segments, outs: Outs, n_keep: int, weights: Weights, n_threads: int = 1
) -> bool:
    """Per coordinate, the (weighted) mean of the ``n_keep`` values closest to the median.

    As the numpy reference: ``med`` the two middle values halved then added, distances
    ``|x_i - med|`` in float64, the ``n_keep`` smallest taken with ties to the lower row
    index; the kept values (times their weights) and the kept weights are summed in row
    order. Kept weights summing to zero give NaN; the caller checks. Returns True when an
    input value is non-finite.
    """
    if not segments:
        return False
    n, segs = addresses(segments, outs)
    k = int(n_keep)
    if not 1 <= k <= n:
        raise ValueError(f"n_keep must satisfy 1 <= n_keep <= n (n={n}), got {k}")
    if weights is not None and (weights.dtype != np.float64 or weights.shape != (n,)):
        raise ValueError(f"weights must be a float64 array of length {n}")
    used = use_threads(n_threads, n * int(segs.lens.sum()))
    m = (n - 1) // 2
    net = network(n, max(0, m - k + 1), min(n - 1, m + k))
    w = np.ones(n) if weights is None else weights  # the same sums, bit for bit
    return bool(around_median_kernel(segs, n, net, k, w, outs[0], used))


def mean_matrix(x: Any, weights: Any, n_threads: int = 1) -> Any:
    """:func:`mean` of a plain ``(n, d)`` matrix in one call, or None (the reference's
    :func:`~hierfed._kernels.numpy.coordinatewise.rule_matrix_with`), the rows' addresses taken
    at the matrix's stride (:func:`matrix_addresses`) rather than row by row."""
    return _ref.rule_matrix_with(_on_matrix(_mean_at), x, None, weights, n_threads)


def trimmed_mean_matrix(x: Any, n_trim: int, weights: Any, n_threads: int = 1) -> Any:
    """:func:`trimmed_mean` of a plain ``(n, d)`` matrix in one call, or None."""
    return _ref.rule_matrix_with(_on_matrix(_trimmed_mean_at), x, n_trim, weights, n_threads)


def median_matrix(x: Any, weights: Any, n_threads: int = 1) -> Any:
    """:func:`median` of a plain ``(n, d)`` matrix in one call, or None."""
    return _ref.rule_matrix_with(_on_matrix(_median_at), x, None, weights, n_threads)


def _on_matrix(rule_at: Callable[..., bool]) -> Callable[..., bool]:
    """A ``*_at`` rule as ``rule_matrix_with`` runs it: ``(x, out, *params, n_threads)``."""

    def run(x: Any, out: Any, *params_and_threads: Any) -> bool:
        *params, n_threads = params_and_threads
        return rule_at(*matrix_addresses(x, out), *params, out, n_threads)

    return run
