"""Numba twins of coordinatewise_select.hpp: the median and the (weighted) trimmed mean for
large ``n`` by selection, not sorting.

A tile holds ``n`` rows of ``SELECT_BLOCK`` consecutive coordinates (lanes). Per lane:

1. a sample of ``s`` rows (every ``n/s``-th) is sorted by Batcher's network; ``P`` of its
   values around the target's expected sample rank are the first pivots;
2. a pass counts the values below each pivot; the pivots whose counts lie on either side of
   the target rank ``r`` give a bracket ``[a, b)`` with ``#(x < a) <= r < #(x < b)``; later
   rounds split the bracket by value into ``P + 1`` parts until it holds few values;
3. a pass keeps the values strictly inside ``(a, b)`` and counts those equal to ``a``: the
   target is ``a`` or one of the few kept values, found by sorting them.

A tile where some lane's bracket still holds more than ``_CAP`` values falls back to sorting
each column (``np.sort``, stable ``np.argsort`` when weighted). The thresholds are exact order
statistics, so the median is exact and the trimmed means differ from the sorting kernels only
in the order of their float64 sums (row order here). The entry points are in
:mod:`.coordinatewise`; the twins are ``cpp/include/hierfed/coordinatewise_select.hpp`` and
:mod:`hierfed._kernels.numpy.coordinatewise` (the definitions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._shared import blocks, jit, jit_parallel, locate, view
from .coordinatewise_tiles import _midpoint
from .sorting_network import network

__all__ = ["SELECT_MIN_N", "sample_network", "select_kernel"]

SELECT_MIN_N = 256  # below this the sorting networks are as fast (as the C++ kernels)
SELECT_BLOCK = 64  # lanes per tile: n rows of them stay in L2
_PIVOTS = 7  # pivots per counting pass
_CAP = 64  # values a lane may keep for the final sort
_ENOUGH = 4  # stop splitting when the brackets' squared sizes sum to <= this * n
_ROUNDS = 6  # counting passes at most
_CPP_LANES = 16  # the C++ kernels' block (AVX-512 float32), to which _ENOUGH refers
_DBL_MAX = float(np.finfo(np.float64).max)


@jit
def sample_size(n: int) -> int:
    """Sample rows: 16, 32 or 64, at most a quarter of the rows (as the C++ kernel)."""
    return 64 if n >= 512 else 32 if n >= 128 else 16


def sample_network(n: int) -> tuple[Any, Any]:
    """The full sorting network of the sample of ``n`` rows, as comparator arrays."""
    s = sample_size(n)
    return network(s, 0, s - 1)


@jit
def _load(ptrs: Any, base: int, j0: int, le: int, tile: Any, lanes: Any, like: Any) -> None:
    """Rows ``ptrs[base:base + n]`` into the tile; ``lanes`` rows 0, 1, 2: the probe
    (``v * 0`` is NaN exactly for NaN and infinity), each lane's minimum and maximum."""
    zero = np.zeros(1, like.dtype)[0]
    probe = lanes[0]
    lo = lanes[1]
    hi = lanes[2]
    for j in range(tile.shape[1]):
        probe[j] = 0.0
        lo[j] = np.inf
        hi[j] = -np.inf
    for i in range(tile.shape[0]):
        x = view(ptrs[base + i], j0, le, like)
        row = tile[i]
        for j in range(le):
            v = x[j]
            probe[j] += v * zero
            row[j] = v
        for j in range(tile.shape[1]):
            v = row[j]
            lo[j] = v if v < lo[j] else lo[j]
            hi[j] = v if v > hi[j] else hi[j]


@jit
def _sorted_sample(tile: Any, sample: Any, pa: Any, pb: Any) -> None:
    """Every ``n/s``-th row of the tile into ``sample`` (s rows), sorted lane-wise."""
    n = tile.shape[0]
    s = sample.shape[0]
    for q in range(s):
        src = tile[(2 * q + 1) * n // (2 * s)]
        dst = sample[q]
        for j in range(tile.shape[1]):
            dst[j] = src[j]
    for c in range(pa.size):
        ra = sample[pa[c]]
        rb = sample[pb[c]]
        for j in range(tile.shape[1]):
            u = ra[j]
            v = rb[j]
            ra[j] = v if v < u else u
            rb[j] = u if v < u else v


@jit
def _select(
    tile: Any,
    sample: Any,
    lanes: Any,
    r_lo: int,
    r_hi: int,
    le: int,
    piv: Any,
    cnt: Any,
    state: Any,
    kept: Any,
    out_lo: Any,
    out_hi: Any,
) -> bool:
    """Per lane the values at ranks ``r_lo`` and ``r_hi`` (``r_hi - r_lo <= 1``) into
    ``out_lo`` / ``out_hi``; False when a lane of the first ``le`` is not resolved."""
    n, block = tile.shape
    s = sample.shape[0]
    npiv = piv.shape[0]
    lo_lane = lanes[1]
    hi_lane = lanes[2]
    a = lanes[3]
    b = lanes[4]
    la = state[0]
    lb = state[1]
    eq = state[2]
    count = state[3]
    for j in range(block):
        a[j] = -np.inf
        b[j] = np.inf
        la[j] = 0
        lb[j] = n
    q = (r_lo + r_hi + 1.0) / (2.0 * n)
    centre = q * s - 0.5
    g = max(1, int(np.ceil(0.75 * np.sqrt(s * q * (1.0 - q)))))
    for i in range(npiv):
        r = int(np.rint(centre + (i - (npiv - 1) / 2.0) * g))
        src = sample[min(max(r, 0), s - 1)]
        for j in range(block):
            piv[i, j] = src[j]
    for rnd in range(_ROUNDS):
        if rnd > 0:  # split [a, b) by value (b: the lane's maximum when unbounded)
            for j in range(block):
                top = hi_lane[j] if b[j] == np.inf else b[j]
                bot = lo_lane[j] if a[j] == -np.inf else a[j]
                half = 0.5 * np.float64(top) - 0.5 * np.float64(bot)
                for i in range(npiv):
                    piv[i, j] = np.float64(bot) + half * (2.0 * (i + 1) / (npiv + 1))
                    v = piv[i, j]  # rounded to the tile's dtype
                    v = v if v < top else top
                    piv[i, j] = v if v > bot else bot
        for i in range(npiv):
            ci = cnt[i]
            for j in range(block):
                ci[j] = 0
        for r in range(n):
            row = tile[r]
            for i in range(npiv):
                pi = piv[i]
                ci = cnt[i]
                for j in range(block):
                    ci[j] += row[j] < pi[j]
        widest = 0  # another round costs about 4n; sorting the kept values about m^2 a lane
        squares = 0
        for j in range(block):
            for i in range(npiv):  # ascending: the highest pivot with few enough below
                if cnt[i, j] <= r_lo:
                    a[j] = piv[i, j]
                    la[j] = cnt[i, j]
            for i in range(npiv - 1, -1, -1):  # descending: the lowest with too many
                if cnt[i, j] > r_hi:
                    b[j] = piv[i, j]
                    lb[j] = cnt[i, j]
            widest = max(widest, lb[j] - la[j])
            squares += (lb[j] - la[j]) * (lb[j] - la[j])
        if widest <= _CAP and squares <= _ENOUGH * n * block // _CPP_LANES:
            break
    for j in range(block):
        eq[j] = 0
        count[j] = 0
    for r in range(n):
        row = tile[r]
        inside = 0
        for j in range(block):
            x = row[j]
            inside += (x > a[j]) & (x < b[j])
            eq[j] += x == a[j]
        if inside:  # rare once the bracket is narrow: only then look lane by lane
            for j in range(block):
                x = row[j]
                if (x > a[j]) & (x < b[j]):
                    c = count[j]
                    if c < _CAP:
                        kept[j, c] = x
                    count[j] = c + 1
    for j in range(le):
        m = count[j]
        j_lo = r_lo - la[j] - eq[j]
        j_hi = r_hi - la[j] - eq[j]
        if m > _CAP or j_hi >= m:
            return False
        v = kept[j]
        for x in range(1, m):  # insertion sort: m is small
            key = v[x]
            y = x - 1
            while y >= 0 and key < v[y]:
                v[y + 1] = v[y]
                y -= 1
            v[y + 1] = key
        out_lo[j] = a[j] if j_lo < 0 else v[j_lo]
        out_hi[j] = a[j] if j_hi < 0 else v[j_hi]
    return True


@jit
def _trimmed(tile: Any, k: int, lo: Any, hi: Any, acc: Any, state: Any, out: Any) -> None:
    """Trimmed mean from the thresholds: values strictly between, ``#(x <= lo) - k`` copies
    of ``lo`` and ``n - k - #(x < hi)`` of ``hi``."""
    n, block = tile.shape
    le_lo = state[0]
    lt_hi = state[1]
    for j in range(block):
        acc[j] = 0.0
        le_lo[j] = 0
        lt_hi[j] = 0
    for r in range(n):
        row = tile[r]
        for j in range(block):
            x = row[j]
            le_lo[j] += x <= lo[j]
            lt_hi[j] += x < hi[j]
            acc[j] += np.float64(x) if (x > lo[j]) & (x < hi[j]) else 0.0
    for j in range(out.size):
        a = np.float64(lo[j])
        b = np.float64(hi[j])
        if a == b:
            out[j] = lo[j]
        else:
            out[j] = (acc[j] + a * (le_lo[j] - k) + b * (n - k - lt_hi[j])) / (n - 2 * k)


@jit
def _weighted_trimmed(
    tile: Any, k: int, w: Any, lo: Any, hi: Any, lanes: Any, state: Any, out: Any
) -> None:
    """Weighted trimmed mean from the thresholds, rows in order: of the rows equal to ``lo``
    the first ``k - #(x < lo)`` are dropped (and, when ``lo == hi``, all after the next
    ``n - 2k``), of those equal to ``hi > lo`` the first ``n - k - #(x < hi)`` kept."""
    n, block = tile.shape
    lt_lo = state[0]
    lt_hi = state[1]
    seen_lo = state[2]
    seen_hi = state[3]
    acc = lanes[3]
    wacc = lanes[4]
    for j in range(block):
        lt_lo[j] = 0
        lt_hi[j] = 0
        seen_lo[j] = 0
        seen_hi[j] = 0
        acc[j] = 0.0
        wacc[j] = 0.0
    for r in range(n):
        row = tile[r]
        for j in range(block):
            lt_lo[j] += row[j] < lo[j]
            lt_hi[j] += row[j] < hi[j]
    for r in range(n):
        row = tile[r]
        wr = w[r]
        for j in range(block):
            x = row[j]
            skip = k - lt_lo[j]
            end = skip + n - 2 * k if lo[j] == hi[j] else n + 1
            eq_lo = x == lo[j]
            eq_hi = (x == hi[j]) & (x > lo[j])
            take = (
                ((x > lo[j]) & (x < hi[j]))
                | (eq_lo & (seen_lo[j] >= skip) & (seen_lo[j] < end))
                | (eq_hi & (seen_hi[j] < n - k - lt_hi[j]))
            )
            seen_lo[j] += eq_lo
            seen_hi[j] += eq_hi
            acc[j] += wr * np.float64(x) if take else 0.0
            wacc[j] += wr if take else 0.0
    for j in range(out.size):
        out[j] = acc[j] / wacc[j]


@jit
def _sorted_columns(
    tile: Any, k: int, median: bool, w: Any, weighted: bool, le: int, out: Any
) -> None:
    """The fallback: each column sorted (stable argsort when weighted), as the reference."""
    n = tile.shape[0]
    for j in range(le):
        col = tile[:, j].copy()
        if median:
            col.sort()
            out[j] = _midpoint(np.float64(col[(n - 1) // 2]), np.float64(col[n // 2]))
        elif weighted:
            order = np.argsort(col, kind="mergesort")
            acc = 0.0
            wacc = 0.0
            for p in range(k, n - k):
                acc += w[order[p]] * np.float64(col[order[p]])
                wacc += w[order[p]]
            out[j] = acc / wacc
        else:
            col.sort()
            acc = 0.0
            for p in range(k, n - k):
                acc += col[p]
            out[j] = acc / (n - 2 * k)


@jit_parallel
def select_kernel(
    segs: Any,
    n: int,
    k: int,
    median: bool,
    w: Any,
    weighted: bool,
    net: Any,
    like: Any,
    n_threads: int,
) -> bool:
    """Unweighted median, or (weighted) trimmed mean dropping ``k`` values at each end, by
    selection over tiles of ``SELECT_BLOCK`` lanes (module docstring); ``net`` sorts the
    sample (:func:`sample_network`). True when an input value is non-finite."""
    ptrs, optrs, lens = segs
    pa, pb = net
    block = SELECT_BLOCK
    s = sample_size(n)
    starts, nb, nch = blocks(lens, block, n_threads)
    scale = float(n - 2 * k)
    if weighted:
        scale = 0.0
        for i in range(n):
            scale += w[i]
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        sample = np.empty((s, block), like.dtype)
        lanes = np.zeros((5, block), like.dtype)
        flanes = np.zeros((5, block))
        piv = np.empty((_PIVOTS, block), like.dtype)
        cnt = np.empty((_PIVOTS, block), np.int64)
        state = np.zeros((4, block), np.int64)
        kept = np.empty((block, _CAP), like.dtype)
        lo = np.empty(block, like.dtype)
        hi = np.empty(block, like.dtype)
        spare = np.empty(block, like.dtype)
        res = np.empty(block, like.dtype)
        sb = 0
        for bi in range(c * nb // nch, (c + 1) * nb // nch):
            sb, j0, le = locate(bi, sb, starts, lens, block)
            _load(ptrs, sb * n, j0, le, tile, lanes, like)
            check = 0.0
            for j in range(le):
                check += lanes[0, j]
            bad += check != 0.0
            _sorted_sample(tile, sample, pa, pb)
            if median:
                ok = _select(
                    tile, sample, lanes, (n - 1) // 2, n // 2, le, piv, cnt, state, kept, lo, hi
                )
                if ok:
                    for j in range(le):
                        res[j] = _midpoint(np.float64(lo[j]), np.float64(hi[j]))
            else:
                ok = _select(tile, sample, lanes, k, k, le, piv, cnt, state, kept, lo, spare)
                top = n - 1 - k
                ok = ok and _select(
                    tile, sample, lanes, top, top, le, piv, cnt, state, kept, hi, spare
                )
                if ok:  # kept values near the float64 maximum: sum in rank order instead
                    for j in range(le):
                        big = max(abs(np.float64(lo[j])), abs(np.float64(hi[j])))
                        ok = ok and bool(big * scale < 0.25 * _DBL_MAX)
                if ok and weighted:
                    _weighted_trimmed(tile, k, w, lo, hi, flanes, state, res[:le])
                elif ok:
                    _trimmed(tile, k, lo, hi, flanes[0], state, res[:le])
            if not ok:
                _sorted_columns(tile, k, median, w, weighted, le, res)
            out = view(optrs[sb], j0, le, like)
            for j in range(le):
                out[j] = res[j]
    return bad > 0
