"""Numba twin of coordinatewise.hpp's weighted trimmed mean below the selection threshold:
the thresholds by the unweighted machinery, then one weighted pass.

The thresholds ``lo`` (rank ``k``) and ``hi`` (rank ``n - 1 - k``) do not depend on the
weights. ``k <= 8``: a pop network (``lo`` keeps the ``k`` smallest values, what it ejects
goes through ``hi``, which keeps the ``k`` largest), where the least value ``lo`` ejects is
rank ``k`` and the greatest ``hi`` ejects rank ``n - 1 - k``; larger ``k``: the value
sorting network. One pass over the rows then sums ``w x`` and ``w`` over ``lo <= x <= hi``
and counts ``#(x < lo)`` and ``#(x <= hi)``: when these are ``k`` and ``n - k`` in every
lane, those rows are exactly the ranks ``[k, n - k)`` of the stable order. A tile with ties
at a threshold takes them by row order (the select kernels' weighted pass), one whose kept
values could overflow a float64 sum in some order the stable sort. The entry point is in
:mod:`.coordinatewise`; the twins are ``cpp/include/hierfed/coordinatewise.hpp`` and
:mod:`hierfed._kernels.numpy.coordinatewise`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._shared import chunk, jit, jit_parallel, locate, tiling, view
from .coordinatewise_select import _sorted_columns, _weighted_trimmed
from .coordinatewise_tiles import NET_BLOCK, _load_flagged, _sort

__all__ = ["POP_MAX_TRIM", "weighted_trimmed_kernel"]

POP_MAX_TRIM = 8  # thresholds by the pop network up to this k, by the sorting network above
_DBL_MAX = float(np.finfo(np.float64).max)


@jit
def _pop_thresholds(tile: Any, k: int, slots: Any, v: Any, lo: Any, hi: Any) -> None:
    """Ranks ``k`` and ``n - 1 - k`` of each lane of the tile into ``lo`` and ``hi`` by the
    pop network; ``slots`` (2k, block) and ``v`` (block) are scratch."""
    n, block = tile.shape
    for t in range(k):
        for j in range(block):
            slots[t, j] = np.inf
            slots[k + t, j] = -np.inf
    for j in range(block):
        lo[j] = np.inf
        hi[j] = -np.inf
    for i in range(n):
        row = tile[i]
        for j in range(block):
            v[j] = row[j]
        for t in range(k):
            for j in range(block):
                a = slots[t, j]
                slots[t, j] = a if a < v[j] else v[j]
                v[j] = v[j] if a < v[j] else a
        for j in range(block):  # rows < k eject lo's +inf placeholders
            lo[j] = v[j] if v[j] < lo[j] else lo[j]
        if i < k:
            continue
        for t in range(k, 2 * k):
            for j in range(block):
                a = slots[t, j]
                slots[t, j] = v[j] if a < v[j] else a
                v[j] = a if a < v[j] else v[j]
        for j in range(block):  # rows < 2k eject hi's -inf placeholders
            hi[j] = v[j] if hi[j] < v[j] else hi[j]


@jit
def _between(
    tile: Any, k: int, w: Any, lo: Any, hi: Any, sums: Any, counts: Any, le: int, out: Any
) -> bool:
    """The weighted mean over ``lo <= x <= hi`` per lane into ``out``; False (out unspecified)
    where a threshold is tied. ``sums`` (2, block) float64, ``counts`` (2, block) int64."""
    n, block = tile.shape
    acc = sums[0]
    wacc = sums[1]
    below = counts[0]
    upto = counts[1]
    sums[:2] = 0.0
    counts[:2] = 0
    for i in range(n):
        row = tile[i]
        wi = w[i]
        for j in range(block):
            x = row[j]
            below[j] += x < lo[j]
            upto[j] += x <= hi[j]
            take = (x >= lo[j]) & (x <= hi[j])
            acc[j] += wi * np.float64(x) if take else 0.0
            wacc[j] += wi if take else 0.0
    tied = 0
    for j in range(le):  # 0/0 = NaN where every kept weight is zero, as the reference
        tied += (below[j] != k) | (upto[j] != n - k)
        out[j] = acc[j] / wacc[j]
    return tied == 0


@jit_parallel
def weighted_trimmed_kernel(
    segs: Any, n: int, net: Any, k: int, w: Any, like: Any, n_threads: int
) -> bool:
    """Weighted trimmed mean dropping ``k`` values at each end (module docstring); ``net``
    sorts a copy of the tile for the thresholds when ``k > POP_MAX_TRIM``. True when an input
    value is non-finite."""
    pa, pb = net
    block = NET_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    scale = w.sum()  # the total weight, for the overflow test only
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        ranked = np.zeros((n if k > POP_MAX_TRIM else 1, block), like.dtype)
        slots = np.empty((2 * k, block), like.dtype)
        v = np.empty(block, like.dtype)
        probe = np.empty(block, like.dtype)
        lo = np.empty(block, like.dtype)
        hi = np.empty(block, like.dtype)
        res = np.empty(block, like.dtype)
        sums = np.zeros((5, block))
        counts = np.zeros((4, block), np.int64)
        for b in chunk(c, nb, nch):
            s, j0, le = locate(b, starts, lens, block)
            bad += _load_flagged(ptrs, s * n, j0, le, tile, probe, like)
            if k > POP_MAX_TRIM:
                for i in range(n):
                    for j in range(block):
                        ranked[i, j] = tile[i, j]
                _sort(ranked, pa, pb)
                for j in range(block):
                    lo[j] = ranked[k, j]
                    hi[j] = ranked[n - 1 - k, j]
            else:
                _pop_thresholds(tile, k, slots, v, lo, hi)
            huge = False  # kept values near the float64 maximum: the stable sort's rank order
            for j in range(le):
                big = max(abs(np.float64(lo[j])), abs(np.float64(hi[j])))
                huge = huge or not bool(big * scale < 0.25 * _DBL_MAX)
            if huge:
                _sorted_columns(tile, k, False, w, True, le, res)
            elif not _between(tile, k, w, lo, hi, sums, counts, le, res):
                _weighted_trimmed(tile, k, w, lo, hi, sums, counts, res[:le])
            out = view(optrs[s], j0, le, like)
            for j in range(le):
                out[j] = res[j]
    return bad > 0
