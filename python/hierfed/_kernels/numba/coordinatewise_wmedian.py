"""Numba twin of coordinatewise_wmedian.hpp: the weighted median for large ``n`` by a
selection by weight, no sort of the ``n`` values.

The median is the least value ``v`` with ``2 S(x <= v) > W`` (``S`` the weight of the
values, ``W`` the total). Each row carries one integer increment, its count ``1 << shift``
plus its weight as a fixed-point fraction ``floor(w / W * F)``, so one counting pass per lane
sums, for seven pivots at once, the increments of the rows below each pivot (vectorised over
the rows of the transposed tile): ``#(x < p)`` in the high bits, ``S(x < p) / W`` to within
``#(x < p) + 1`` units of ``1 / F`` in the low ones. The bracket ``[a, b)`` is where the half
weight surely falls; the first pivots are the sample's around its median
(:mod:`.coordinatewise_select`), later ones around where the half weight falls if it spread
evenly. Then the weight below ``a`` is summed in float64 in row order, for all lanes at once,
the few values in ``[a, b)`` are kept, sorted, and walked: the first value whose weight at or
below it makes ``D = 2 S - W`` exceed the margin (:func:`margin`) while ``D`` below it is under
minus the margin is the reference's median exactly. A lane where the two sides tie to
rounding, whose bracket stays wide, or in a tile holding a non-finite value, is computed as
the reference does (stable order, rank-order sums), so every result is the reference's bit
for bit. The entry point is :func:`.coordinatewise.median`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._shared import chunk, jit, jit_parallel, locate, tiling, view
from .coordinatewise_select import (
    _CAP,
    _CPP_LANES,
    _ENOUGH,
    _PIVOTS,
    _ROUNDS,
    SELECT_BLOCK,
    _first_pivots,
    _load_finite,
    _scratch,
    _sorted_sample,
    _transpose,
)
from .coordinatewise_tiles import _midpoint

__all__ = ["WMEDIAN_MIN_N", "margin", "wmedian_kernel"]

# Below this numba's pair network is as fast (one thread, float32, n * d = 5e6, CPU time, load
# 10-12: n = 200 network 15.7 ms against 18, n = 300 21.7 against 17, n = 500 21 against 14.5).
WMEDIAN_MIN_N = 256


@jit
def margin(n: int, total: float) -> float:
    """Past this margin of ``D = 2 S - W``, sums of the weights in any order have the sign
    of the reference's rank-order sums (each differs from the exact sum by at most ``n``
    units of ``W``)."""
    return 8.0 * (n + 2) * 2.0**-53 * total


@jit
def _increments(w: Any, total: float) -> tuple[Any, int, int]:
    """Each row's packed increment, the shift of the count bits and ``F``."""
    n = w.size
    bits = 0
    while (1 << bits) <= n:
        bits += 1
    shift = 62 - bits  # n << shift plus at most F fits in a signed int64
    frac = 1 << (shift - 1)
    inc = np.empty(n, np.int64)
    for i in range(n):
        part = int(np.floor(w[i] / total * frac))
        inc[i] = (1 << shift) + min(part, frac)
    return inc, shift, frac


@jit
def _count7(col: Any, inc: Any, piv: Any, out: Any) -> None:
    """``out[k]``: the packed increments of the rows below ``piv[k]`` (seven pivots, one pass
    that vectorises over the rows)."""
    p0, p1, p2, p3, p4, p5, p6 = piv[0], piv[1], piv[2], piv[3], piv[4], piv[5], piv[6]
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = 0
    for q in range(col.size):
        x = col[q]
        d = inc[q]
        c0 += d if x < p0 else 0
        c1 += d if x < p1 else 0
        c2 += d if x < p2 else 0
        c3 += d if x < p3 else 0
        c4 += d if x < p4 else 0
        c5 += d if x < p5 else 0
        c6 += d if x < p6 else 0
    out[0], out[1], out[2], out[3], out[4], out[5], out[6] = c0, c1, c2, c3, c4, c5, c6


@jit
def _bracket(
    col: Any, inc: Any, shift: int, frac: int, piv: Any, ab: Any, ext: Any, sums: Any
) -> bool:
    """One lane's bracket ``[ab[0], ab[1])`` with packed sums ``sums[0]``, ``sums[1]``;
    ``piv`` holds the first pivots, ``ext`` the lane's least and greatest value. False when
    it still holds too many values after ``_ROUNDS`` counting passes."""
    n = col.size
    mask = (1 << shift) - 1
    keep = max(n // (_ENOUGH * _CPP_LANES), 4)
    bot_all = ext[0]
    top_all = ext[1]
    a = -np.inf
    b = np.inf
    sa = 0
    sb = 0
    for i in range(n):
        sb += inc[i]
    c = sums[2:]
    for rnd in range(_ROUNDS):
        if rnd > 0:  # around where the half weight falls if it spread evenly over [a, b)
            top = top_all if b == np.inf else b
            bot = bot_all if a == -np.inf else a
            ca = sa >> shift
            m = float((sb >> shift) - ca)
            wa = (sa & mask) + 0.5 * ca
            wb = (sb & mask) + 0.5 * (sb >> shift)
            f = (0.5 * frac - wa) / (wb - wa)
            df = max(1.0, 0.375 * np.sqrt(m)) / m
            base = np.float64(bot)
            half = np.float64(top) * 0.5 - base * 0.5
            for k in range(_PIVOTS):
                q = f + df * (k - (_PIVOTS - 1) / 2.0)
                piv[k] = base + q * half + q * half  # halves: no overflow near the maximum
                v = piv[k]  # rounded to the tile's dtype
                v = v if v < top else top
                piv[k] = v if v > bot else bot
        _count7(col, inc, piv, c)
        for k in range(_PIVOTS):  # ascending: the highest pivot surely below half
            if 2 * ((c[k] & mask) + (c[k] >> shift) + 1) <= frac:
                a = piv[k]
                sa = c[k]
        for k in range(_PIVOTS - 1, -1, -1):  # descending: the lowest surely above
            if 2 * ((c[k] & mask) - 1) > frac:
                b = piv[k]
                sb = c[k]
        if (sb >> shift) - (sa >> shift) <= min(keep, _CAP):
            ab[0] = a
            ab[1] = b
            sums[0] = sa
            sums[1] = sb
            return True
    return False


@jit
def _walk(
    col: Any,
    w: Any,
    a: Any,
    b: Any,
    below: float,
    total: float,
    kept: Any,
    rows: Any,
    inside: Any,
) -> Any:
    """The values of ``col`` in ``[a, b)``, at most ``_CAP`` (:func:`_bracket`; into
    ``kept``, their rows into ``rows``: ``_CAP`` long) sorted and walked from ``below``
    (the weight under ``a``): their median, or NaN where the crossing is not sure;
    ``inside``: n bytes of scratch."""
    n = col.size
    eps = margin(n, total)
    if not 2.0 * below - total < -eps:
        return np.nan
    for i in range(n):  # which rows lie inside: vectorises
        x = col[i]
        inside[i] = (x >= a) & (x < b)
    c = 0
    for i in range(n):  # a branch rarely taken
        if inside[i]:
            kept[c] = col[i]
            rows[c] = i
            c += 1
    for q in range(1, c):  # insertion sort: a few values, their rows alongside
        v = kept[q]
        r = rows[q]
        p = q
        while p > 0 and kept[p - 1] > v:
            kept[p] = kept[p - 1]
            rows[p] = rows[p - 1]
            p -= 1
        kept[p] = v
        rows[p] = r
    s = below
    q = 0
    while q < c:
        v = kept[q]
        while q < c and kept[q] == v:
            s += w[rows[q]]
            q += 1
        d = 2.0 * s - total
        if d > eps:
            return v
        if not d < -eps:
            return np.nan  # the two sides tie to rounding: the reference's sums decide
    return np.nan


@jit
def _reference_lane(col: Any, w: Any, out: Any, j: int) -> None:
    """The reference's weighted median of one lane: stable order, its rank-order sums."""
    n = col.size
    order = np.argsort(col, kind="mergesort")
    above = np.zeros(n)
    for q in range(n - 2, -1, -1):
        above[q] = above[q + 1] + w[order[q + 1]]
    below = 0.0
    lo = -1
    hi = -1
    for q in range(n):
        below += w[order[q]]
        if lo < 0 and below >= above[q]:
            lo = q
        if hi < 0 and below > above[q]:
            hi = q
    out[j] = _midpoint(np.float64(col[order[lo]]), np.float64(col[order[hi]]))


@jit_parallel
def wmedian_kernel(segs: Any, n: int, w: Any, net: Any, like: Any, n_threads: int) -> bool:
    """Weighted median by selection by weight over tiles of ``SELECT_BLOCK`` lanes (module
    docstring); ``net`` sorts the sample. True when an input value is non-finite."""
    pa, pb = net
    block = SELECT_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    total = 0.0
    for i in range(n):
        total += w[i]
    inc, shift, frac = _increments(w, total)
    bad = 0
    for c in prange(nch):
        tile, cols, sample, lanes = _scratch(n, like)
        piv = np.empty((_PIVOTS, block), like.dtype)
        bounds = np.empty((block, 2), like.dtype)  # per lane a, b
        extremes = np.empty(2, like.dtype)
        sums = np.empty(2 + _PIVOTS, np.int64)  # the bracket's sums, then the counts
        lane_piv = np.empty(_PIVOTS, like.dtype)
        kept = np.empty(_CAP, like.dtype)
        rows = np.empty(_CAP, np.int64)
        inside = np.empty(n, np.uint8)
        sure = np.zeros(block, np.bool_)
        below = np.zeros(block)
        res = np.empty(block, like.dtype)
        for bi in chunk(c, nb, nch):
            sb, j0, le = locate(bi, starts, lens, block)
            ok = _load_finite(ptrs, sb * n, j0, le, tile, lanes, like)  # else as the reference
            bad += not ok
            sure[:] = False
            if ok:
                _sorted_sample(tile, sample, pa, pb)
                _transpose(tile, cols)
                _first_pivots(sample, n, (n - 1) // 2, n // 2, piv, 0)
                for j in range(le):
                    if lanes[1, j] == lanes[2, j]:  # all equal: that value
                        res[j] = lanes[1, j]
                        bounds[j, 0] = -np.inf  # nothing below, nothing kept
                        bounds[j, 1] = -np.inf
                        continue
                    extremes[0] = lanes[1, j]
                    extremes[1] = lanes[2, j]
                    lane_piv[:] = piv[:, j]
                    sure[j] = _bracket(
                        cols[j], inc, shift, frac, lane_piv, bounds[j], extremes, sums
                    )
                below[:] = 0.0
                for i in range(n):  # the weight below a, all lanes at once, in row order
                    row = tile[i]
                    wi = w[i]
                    for j in range(block):
                        below[j] += wi if row[j] < bounds[j, 0] else 0.0
            for j in range(le):
                if ok and lanes[1, j] == lanes[2, j]:
                    continue
                v = np.nan
                if sure[j]:
                    a = bounds[j, 0]
                    b = bounds[j, 1]
                    v = _walk(cols[j], w, a, b, below[j], total, kept, rows, inside)
                if v == v:
                    res[j] = v
                else:
                    _reference_lane(tile[:, j].copy(), w, res, j)
            out = view(optrs[sb], j0, le, like)
            for j in range(le):
                out[j] = res[j]
    return bad > 0
