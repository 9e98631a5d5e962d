"""Numba twins of coordinatewise.hpp's tile kernels: median, trimmed means other than the
unweighted pop network, and the mean around the median, all on sorted tiles.

A tile holds ``n`` rows of ``_NET_BLOCK`` consecutive coordinates, sorted vertically by
Batcher's network (:mod:`.sorting_network`) pruned to the ranks that are read; weighted rules
sort (value, row index) pairs, so ties go to the lower index as in a stable sort. The entry
points are in :mod:`.coordinatewise`; the twins are ``cpp/include/hierfed/coordinatewise.hpp``
and :mod:`hierfed._kernels.numpy.coordinatewise`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._shared import chunk, jit, jit_inline, jit_parallel, locate, tiling, view

__all__ = ["NET_BLOCK", "NET_GROUP", "around_median_kernel", "net_kernel", "net_weighted_kernel"]

NET_BLOCK = 128  # lanes (coordinates) per tile of the sorting networks
NET_GROUP = 8  # rows sorted in registers as they are loaded (the code is written for 8)


@jit_inline
def _cx(a: Any, b: Any) -> tuple[Any, Any]:
    """Compare-exchange: ``(min, max)`` of two values (lane-wise once vectorised)."""
    return (b, a) if b < a else (a, b)


@jit_inline
def _midpoint(a: float, b: float) -> float:
    """The median of two middle values: halves first (no overflow), ``a`` when they are equal.

    Halving rounds below the smallest normal float64; ``0.5a + 0.5b`` always lies in
    ``[a, b]`` when ``a < b``, but for ``a == b`` it can exceed ``a`` by one unit.
    """
    return a if a == b else 0.5 * a + 0.5 * b


@jit
def _load(
    ptrs: Any, base: int, first: int, j0: int, le: int, tile: Any, probe: Any, like: Any
) -> None:
    """Rows ``first..`` of the tile from ``ptrs[base + i]`` (``le`` values at ``j0``); every
    value also feeds the probe (``v * 0`` is NaN exactly for NaN and infinity)."""
    zero = np.zeros(1, like.dtype)[0]
    for i in range(first, tile.shape[0]):
        x = view(ptrs[base + i], j0, le, like)
        row = tile[i]
        for j in range(le):
            v = x[j]
            probe[j] += v * zero
            row[j] = v


@jit
def _sort(tile: Any, pa: Any, pb: Any) -> None:
    """The comparators ``(pa[q], pb[q])`` in order: lane-wise minimum to row ``pa[q]``."""
    for q in range(pa.size):
        ra = tile[pa[q]]
        rb = tile[pb[q]]
        for j in range(NET_BLOCK):
            u = ra[j]
            v = rb[j]
            ra[j] = v if v < u else u
            rb[j] = u if v < u else v


@jit_inline
def _flagged(probe: Any, le: int) -> bool:
    """Whether the probe of ``le`` lanes saw a NaN or an infinity."""
    check = 0.0
    for j in range(le):
        check += probe[j]
    return check != 0.0


@jit
def _load_flagged(ptrs: Any, base: int, j0: int, le: int, tile: Any, probe: Any, like: Any) -> bool:
    """Every row of the tile loaded (:func:`_load`, ``probe`` cleared first), and whether one
    of the values is NaN or infinite."""
    probe[:] = 0
    _load(ptrs, base, 0, j0, le, tile, probe, like)
    return _flagged(probe, le)


@jit_parallel
def net_kernel(
    segs: Any, n: int, net: Any, k: int, median: bool, like: Any, n_threads: int
) -> bool:
    """Unweighted median or trimmed mean: a vertical sorting network over tiles of lanes.

    A tile holds ``n`` rows of ``NET_BLOCK`` consecutive coordinates; comparator ``(a, b)``
    puts the lane-wise minimum of rows ``a`` and ``b`` into row ``a`` and the maximum into
    ``b``, which vectorises over the lanes. Rows are loaded eight at a time and sorted in
    registers on the way in (the network's first three stages, ``pa``/``pb`` being the rest),
    which saves a quarter of the comparators' loads and stores. The median averages sorted
    rows ``(n - 1) // 2`` and ``n // 2``; the trimmed mean sums sorted rows ``k..n-k-1`` in
    ascending order.
    """
    pa, pb = net
    block = NET_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    zero = np.zeros(1, like.dtype)[0]
    kept = float(n - 2 * k)
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        probe = np.empty(block, like.dtype)
        acc = np.empty(block, np.float64)
        for b in chunk(c, nb, nch):
            s, j0, le = locate(b, starts, lens, block)
            probe[:] = zero
            full = n - n % NET_GROUP
            for g in range(0, full, NET_GROUP):  # a group of 8 rows, sorted in registers
                base = s * n + g
                x0 = view(ptrs[base], j0, le, like)
                x1 = view(ptrs[base + 1], j0, le, like)
                x2 = view(ptrs[base + 2], j0, le, like)
                x3 = view(ptrs[base + 3], j0, le, like)
                x4 = view(ptrs[base + 4], j0, le, like)
                x5 = view(ptrs[base + 5], j0, le, like)
                x6 = view(ptrs[base + 6], j0, le, like)
                x7 = view(ptrs[base + 7], j0, le, like)
                r0 = tile[g]
                r1 = tile[g + 1]
                r2 = tile[g + 2]
                r3 = tile[g + 3]
                r4 = tile[g + 4]
                r5 = tile[g + 5]
                r6 = tile[g + 6]
                r7 = tile[g + 7]
                for j in range(le):
                    v0 = x0[j]
                    v1 = x1[j]
                    v2 = x2[j]
                    v3 = x3[j]
                    v4 = x4[j]
                    v5 = x5[j]
                    v6 = x6[j]
                    v7 = x7[j]
                    probe[j] += (v0 * zero + v1 * zero + v2 * zero + v3 * zero) + (
                        v4 * zero + v5 * zero + v6 * zero + v7 * zero
                    )
                    v0, v1 = _cx(v0, v1)
                    v2, v3 = _cx(v2, v3)
                    v4, v5 = _cx(v4, v5)
                    v6, v7 = _cx(v6, v7)
                    v0, v2 = _cx(v0, v2)
                    v1, v3 = _cx(v1, v3)
                    v4, v6 = _cx(v4, v6)
                    v5, v7 = _cx(v5, v7)
                    v1, v2 = _cx(v1, v2)
                    v5, v6 = _cx(v5, v6)
                    v0, v4 = _cx(v0, v4)
                    v1, v5 = _cx(v1, v5)
                    v2, v6 = _cx(v2, v6)
                    v3, v7 = _cx(v3, v7)
                    v2, v4 = _cx(v2, v4)
                    v3, v5 = _cx(v3, v5)
                    v1, v2 = _cx(v1, v2)
                    v3, v4 = _cx(v3, v4)
                    v5, v6 = _cx(v5, v6)
                    r0[j] = v0
                    r1[j] = v1
                    r2[j] = v2
                    r3[j] = v3
                    r4[j] = v4
                    r5[j] = v5
                    r6[j] = v6
                    r7[j] = v7
            _load(ptrs, s * n, full, j0, le, tile, probe, like)
            _sort(tile, pa, pb)
            bad += _flagged(probe, le)
            out = view(optrs[s], j0, le, like)
            if median:
                lo = tile[(n - 1) // 2]
                hi = tile[n // 2]
                for j in range(le):
                    out[j] = _midpoint(np.float64(lo[j]), np.float64(hi[j]))
            else:
                for j in range(block):
                    acc[j] = 0.0
                for p in range(k, n - k):
                    row = tile[p]
                    for j in range(block):
                        acc[j] += row[j]
                for j in range(le):
                    out[j] = acc[j] / kept
    return bad > 0


@jit_parallel
def net_weighted_kernel(
    segs: Any, n: int, net: Any, w: Any, like: Any, index_like: Any, n_threads: int
) -> bool:
    """Weighted median: the sorting network on (value, row index) pairs.

    Comparing pairs lexicographically sorts the values stably (equal values keep row order).
    With ``below[q]`` the weight at or below rank ``q`` (summed upwards) and ``above[q]`` the
    weight above it (summed downwards), the mean of the values at the first rank with
    ``below >= above`` and the first with ``below > above``; equal weights thus give exactly
    the unweighted median.
    """
    pa, pb = net
    block = NET_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    ncomp = pa.size
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        index = np.empty((n, block), index_like.dtype)
        probe = np.empty(block, like.dtype)
        wsorted = np.empty((n, block), np.float64)
        above = np.empty((n, block), np.float64)
        below = np.empty(block, np.float64)
        lo = np.empty(block, np.float64)
        hi = np.empty(block, np.float64)
        for b in chunk(c, nb, nch):
            s, j0, le = locate(b, starts, lens, block)
            bad += _load_flagged(ptrs, s * n, j0, le, tile, probe, like)
            for i in range(n):  # a loop of its own: inside the one above it runs 10x slower
                ir = index[i]
                for j in range(block):
                    ir[j] = i
            for q in range(ncomp):
                ra = tile[pa[q]]
                rb = tile[pb[q]]
                ia = index[pa[q]]
                ib = index[pb[q]]
                for j in range(block):
                    u = ra[j]
                    v = rb[j]
                    iu = ia[j]
                    iv = ib[j]
                    swap = (v < u) | ((v == u) & (iv < iu))
                    ra[j] = v if swap else u
                    rb[j] = u if swap else v
                    ia[j] = iv if swap else iu
                    ib[j] = iu if swap else iv
            out = view(optrs[s], j0, le, like)
            for p in range(n):  # the weights in sorted order (a scalar gather)
                ip = index[p]
                wp = wsorted[p]
                for j in range(block):
                    wp[j] = w[ip[j]]
            # above[q]: the weight above rank q, summed downwards
            top = above[n - 1]
            for j in range(block):
                top[j] = 0.0
            for p in range(n - 2, -1, -1):
                ap = above[p]
                aq = above[p + 1]
                wq = wsorted[p + 1]
                for j in range(block):
                    ap[j] = aq[j] + wq[j]
            # below: the weight at or below rank q, summed upwards. below grows and above
            # shrinks, so the first rank with below >= above is the one where the test
            # holds and did not hold at the rank before (likewise for >).
            w0 = wsorted[0]
            row = tile[0]
            for j in range(block):
                below[j] = w0[j]
                lo[j] = np.float64(row[j])  # stays where the test holds at rank 0
                hi[j] = np.float64(row[j])
            for p in range(1, n):
                wp = wsorted[p]
                ap = above[p]
                was = above[p - 1]
                row = tile[p]
                for j in range(block):
                    before = below[j]
                    now = before + wp[j]
                    below[j] = now
                    value = np.float64(row[j])
                    lo[j] = value if (now >= ap[j]) & (before < was[j]) else lo[j]
                    hi[j] = value if (now > ap[j]) & (before <= was[j]) else hi[j]
            for j in range(le):
                out[j] = _midpoint(lo[j], hi[j])
    return bad > 0


@jit
def _around_median_block(
    ptrs: Any,
    out: Any,
    base: int,
    j0: int,
    le: int,
    n: int,
    pa: Any,
    pb: Any,
    k: int,
    w: Any,
    tile: Any,
    lanes: Any,
    counts: Any,
    like: Any,
) -> bool:
    """One block of :func:`around_median_kernel`: ``le`` coordinates at ``j0`` into ``out``.

    Rows are ``ptrs[base:base + n]``; ``tile`` (n, 128), ``lanes`` (5, 128) float64 and
    ``counts`` (2, 128) int64 are scratch. True when an input value is non-finite.
    """
    block = NET_BLOCK
    m = (n - 1) // 2
    med = lanes[0]
    thr = lanes[1]
    acc = lanes[2]
    wacc = lanes[3]
    check_lane = lanes[4]
    ties = counts[0]
    seen = counts[1]
    bad = _load_flagged(ptrs, base, j0, le, tile, check_lane, like)
    _sort(tile, pa, pb)
    lo = tile[m]
    hi = tile[n // 2]
    for j in range(block):
        med[j] = _midpoint(np.float64(lo[j]), np.float64(hi[j]))
    for j in range(block):
        thr[j] = np.inf
    # a picks on the left (ranks m down to m - a + 1), k - a on the right (m + 1 up)
    for a in range(max(0, k - (n - 1 - m)), min(k, m + 1) + 1):
        left = tile[m - a + 1] if a > 0 else tile[m]
        right = tile[m + k - a] if a < k else tile[m]
        for j in range(block):
            dl = abs(np.float64(left[j]) - med[j]) if a > 0 else 0.0
            dr = abs(np.float64(right[j]) - med[j]) if a < k else 0.0
            far = dl if dr < dl else dr
            thr[j] = far if far < thr[j] else thr[j]
    for j in range(block):
        ties[j] = k
    for i in range(n):
        row = tile[i]
        for j in range(block):
            ties[j] -= abs(np.float64(row[j]) - med[j]) < thr[j]
    for j in range(block):
        seen[j] = 0
    for j in range(block):
        acc[j] = 0.0
    for j in range(block):
        wacc[j] = 0.0
    for i in range(n):
        x = view(ptrs[base + i], j0, le, like)
        wi = w[i]
        for j in range(le):
            v = np.float64(x[j])
            d = abs(v - med[j])
            tie = d == thr[j]
            keep = (d < thr[j]) | (tie & (seen[j] < ties[j]))
            seen[j] += tie
            acc[j] = acc[j] + (wi * v if keep else 0.0)
            wacc[j] = wacc[j] + (wi if keep else 0.0)
    for j in range(le):
        out[j] = acc[j] / wacc[j]
    return bad


@jit_parallel
def around_median_kernel(
    segs: Any, n: int, net: Any, k: int, w: Any, like: Any, n_threads: int
) -> bool:
    """Per coordinate the weighted mean of the ``k`` values closest to the median.

    A tile of lanes is sorted by the network pruned to the ranks ``m - k + 1 .. m + k``
    (``m = (n - 1) // 2``), which hold every candidate. Going away from the middle, the
    distances grow on each side (left from rank ``m`` down, right from ``m + 1`` up), so the
    ``k``-th smallest distance is ``t = min_a max(left[a], right[k - a])`` over the splits
    of ``k`` picks. The rows are then read again in row order: a row is kept if its distance
    is below ``t``, or equal to it while fewer than ``e = k - #(dist < t)`` rows at ``t`` came
    before it, which is the stable (distance, row index) order. Kept values times their
    weights, and the weights, add up in row order, in float64. Unit weights give exactly the
    unweighted mean: ``1.0 * x`` is ``x`` and ``k`` ones add up to ``k``.
    """
    pa, pb = net
    block = NET_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        lanes = np.zeros((5, block))
        counts = np.zeros((2, block), np.int64)
        for b in chunk(c, nb, nch):
            s, j0, le = locate(b, starts, lens, block)
            out = view(optrs[s], j0, le, like)
            bad += _around_median_block(
                ptrs, out, s * n, j0, le, n, pa, pb, k, w, tile, lanes, counts, like
            )
    return bad > 0
