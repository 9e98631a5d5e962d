"""Numba twins of coordinatewise_select.hpp: the median and the (weighted) trimmed mean for
large ``n`` by selection, not sorting.

A tile holds ``n`` rows of ``SELECT_BLOCK`` consecutive coordinates (lanes). A rule has one
target (the median: ranks ``(n - 1) // 2`` and ``n // 2``) or two (a trimmed mean: ranks ``k``
and ``n - 1 - k``, found in the same passes). Per lane:

1. a sample of ``s`` rows (every ``n/s``-th) is sorted by Batcher's network; ``P`` of its
   values around each target's expected sample rank are the first pivots;
2. a pass counts the values below every open target's pivots; the pivots whose counts lie on
   either side of a target's rank ``r`` give a bracket ``[a, b)`` with
   ``#(x < a) <= r < #(x < b)``; later rounds place ``P`` pivots around where ``r`` falls in
   the bracket if its values spread evenly, until it holds few values;
3. a pass keeps the values in ``[a, b)`` (brackets still wide after every round hold many
   ties: then those in ``(a, b)``, counting the ones equal to ``a``); the target is found among
   them after sorting. For the unweighted trimmed mean the same pass sums the values in
   ``[b_lo, a_hi)``, which lie strictly between the thresholds whatever they are.

A tile holding a non-finite value, or where a lane's bracket still holds more than ``_CAP``
values, falls back to sorting each column (``np.sort``, stable ``np.argsort`` when weighted).
The thresholds are exact order statistics, so the median is exact and the trimmed means differ
from the sorting kernels only in the order of their float64 sums. The entry points are in
:mod:`.coordinatewise`; the twins are ``cpp/include/hierfed/coordinatewise_select.hpp`` and
:mod:`hierfed._kernels.numpy.coordinatewise` (the definitions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from ._shared import chunk, jit, jit_parallel, locate, tiling, view
from .coordinatewise_tiles import _load, _midpoint
from .sorting_network import network

__all__ = ["SELECT_MIN_N", "sample_network", "select_kernel"]

# Below this the numba sorting networks are faster (measured, one thread, n * d = 5e6, CPU
# time, load 7-12: at n = 1000 the network took 10-14 ms against 28-33 by selection, at
# n = 4000 33 against 26).
SELECT_MIN_N = 2048
SELECT_BLOCK = 64  # lanes per tile: n rows of them stay in L2
_PIVOTS = 7  # pivots per target and counting pass
_CAP = 64  # values a lane may keep per target for the final sort
_ENOUGH = 4  # stop counting when a target's lanes keep at most n / this per _CPP_LANES
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
def _load_range(ptrs: Any, base: int, j0: int, le: int, tile: Any, lanes: Any, like: Any) -> None:
    """Rows ``ptrs[base:base + n]`` into the tile (:func:`.coordinatewise_tiles._load`);
    ``lanes`` rows 0, 1, 2: the probe (``v * 0`` is NaN exactly for NaN and infinity), each
    lane's minimum and maximum."""
    probe = lanes[0]
    lo = lanes[1]
    hi = lanes[2]
    probe[:] = 0.0
    lo[:] = np.inf
    hi[:] = -np.inf
    _load(ptrs, base, 0, j0, le, tile, probe, like)
    for i in range(tile.shape[0]):
        row = tile[i]
        for j in range(tile.shape[1]):
            v = row[j]
            lo[j] = v if v < lo[j] else lo[j]
            hi[j] = v if v > hi[j] else hi[j]


@jit
def _scratch(n: int, like: Any) -> tuple[Any, Any, Any, Any]:
    """A thread's tile, its transpose, its sample and its ``lanes`` (:func:`_load_range`)."""
    block = SELECT_BLOCK
    tile = np.zeros((n, block), like.dtype)
    cols = np.empty((block, n), like.dtype)
    sample = np.empty((sample_size(n), block), like.dtype)
    lanes = np.zeros((3, block), like.dtype)
    return tile, cols, sample, lanes


@jit
def _load_finite(ptrs: Any, base: int, j0: int, le: int, tile: Any, lanes: Any, like: Any) -> bool:
    """:func:`_load_range`, and whether every value it loaded is finite (its probe is 0)."""
    _load_range(ptrs, base, j0, le, tile, lanes, like)
    check = 0.0
    for j in range(le):
        check += lanes[0, j]
    return check == 0.0


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
def _first_pivots(sample: Any, n: int, r_lo: int, r_hi: int, piv: Any, at: int) -> None:
    """Pivots ``at..at + P``: sample values g ranks apart around the target's expected rank."""
    s = sample.shape[0]
    q = (r_lo + r_hi + 1.0) / (2.0 * n)
    centre = q * s - 0.5
    g = max(1, int(np.ceil(0.75 * np.sqrt(s * q * (1.0 - q)))))
    for i in range(_PIVOTS):
        r = int(np.rint(centre + (i - (_PIVOTS - 1) / 2.0) * g))
        src = sample[min(max(r, 0), s - 1)]
        for j in range(sample.shape[1]):
            piv[at + i, j] = src[j]


@jit
def _split_pivots(
    lanes: Any, u: int, ranks: Any, a: Any, b: Any, la: Any, lb: Any, piv: Any, at: int
) -> None:
    """Pivots ``at..at + P`` of target ``u``: per lane around where its rank falls in
    ``[a, b)`` if the values spread evenly (the lane's extremes where unbounded), 0.75 of that
    guess's largest standard error in ranks apart (at least one rank), clamped into ``[a, b]``."""
    block = a.shape[1]
    widest = 1
    for j in range(block):
        widest = max(widest, lb[u, j] - la[u, j])
    step = max(1.0, 0.375 * np.sqrt(widest))
    target = 0.5 * (ranks[u, 0] + ranks[u, 1]) + 0.5
    for j in range(block):
        top = lanes[2, j] if b[u, j] == np.inf else b[u, j]
        bot = lanes[1, j] if a[u, j] == -np.inf else a[u, j]
        m = np.float64(lb[u, j] - la[u, j])
        f = (target - la[u, j]) / m
        df = step / m
        lo = np.float64(bot)
        half = np.float64(top) * 0.5 - lo * 0.5
        for i in range(_PIVOTS):
            q = f + df * (i - (_PIVOTS - 1) / 2.0)
            piv[at + i, j] = lo + q * half + q * half  # halves: no overflow near the maximum
            v = piv[at + i, j]  # rounded to the tile's dtype
            v = v if v < top else top
            piv[at + i, j] = v if v > bot else bot


@jit
def _transpose(tile: Any, cols: Any) -> None:
    """``cols[j]``: lane ``j`` of every row of the tile (the array copy: twice as fast as
    copying 16 rows at a time by hand, n = 1000)."""
    cols[:] = tile.T


@jit
def _count(cols: Any, piv: Any, npiv: int, cnt: Any) -> None:
    """``cnt[i]``: per lane the values below pivot ``piv[i]``, ``i < npiv`` (a multiple of
    ``_PIVOTS``): per lane and ``_PIVOTS`` pivots one pass over its column, whose seven counts
    vectorise over the rows (the row-major loop, 64 lanes long, is mostly loop overhead)."""
    for j in range(cols.shape[0]):
        col = cols[j]
        for g in range(0, npiv, _PIVOTS):
            p0 = piv[g, j]
            p1 = piv[g + 1, j]
            p2 = piv[g + 2, j]
            p3 = piv[g + 3, j]
            p4 = piv[g + 4, j]
            p5 = piv[g + 5, j]
            p6 = piv[g + 6, j]
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = 0
            for q in range(col.size):
                x = col[q]
                c0 += x < p0
                c1 += x < p1
                c2 += x < p2
                c3 += x < p3
                c4 += x < p4
                c5 += x < p5
                c6 += x < p6
            cnt[g, j] = c0
            cnt[g + 1, j] = c1
            cnt[g + 2, j] = c2
            cnt[g + 3, j] = c3
            cnt[g + 4, j] = c4
            cnt[g + 5, j] = c5
            cnt[g + 6, j] = c6


@jit
def _narrow(
    piv: Any, cnt: Any, at: int, u: int, ranks: Any, n: int, a: Any, b: Any, la: Any, lb: Any
) -> bool:
    """Target ``u``'s bracket narrowed to its pivots (``at..at + P``) whose counts lie on
    either side of its ranks; True while it holds too many values to keep (the C++ rule:
    more than ``_CAP`` in a lane, or more than ``n / _ENOUGH`` per ``_CPP_LANES`` lanes)."""
    block = a.shape[1]
    r_lo = ranks[u, 0]
    r_hi = ranks[u, 1]
    widest = 0
    total = 0
    for j in range(block):
        for i in range(_PIVOTS):  # ascending: the highest pivot with few enough below
            if cnt[at + i, j] <= r_lo:
                a[u, j] = piv[at + i, j]
                la[u, j] = cnt[at + i, j]
        for i in range(_PIVOTS - 1, -1, -1):  # descending: the lowest with too many
            if cnt[at + i, j] > r_hi:
                b[u, j] = piv[at + i, j]
                lb[u, j] = cnt[at + i, j]
        widest = max(widest, lb[u, j] - la[u, j])
        total += lb[u, j] - la[u, j]
    return widest > _CAP or total * _ENOUGH * _CPP_LANES > n * block


@jit
def _bracket(
    cols: Any, sample: Any, lanes: Any, nt: int, ranks: Any, piv: Any, cnt: Any, br: Any, st: Any
) -> bool:
    """Brackets ``[a, b)`` (``br[0]``, ``br[1]``) with counts ``la``, ``lb`` (``st[0]``,
    ``st[1]``) for ``nt`` targets (ranks ``ranks[u]``): counting rounds, all open targets'
    pivots in one pass, until each holds few values; False when one is still wide after
    ``_ROUNDS``; ``cols``: the tile transposed."""
    block, n = cols.shape
    a = br[0]
    b = br[1]
    la = st[0]
    lb = st[1]
    wide = np.ones(2, np.bool_)
    for u in range(nt):
        for j in range(block):
            a[u, j] = -np.inf
            b[u, j] = np.inf
            la[u, j] = 0
            lb[u, j] = n
    for rnd in range(_ROUNDS):
        m = 0
        for u in range(nt):
            if wide[u]:
                if rnd == 0:
                    _first_pivots(sample, n, ranks[u, 0], ranks[u, 1], piv, m * _PIVOTS)
                else:
                    _split_pivots(lanes, u, ranks, a, b, la, lb, piv, m * _PIVOTS)
                m += 1
        if m == 0:
            return True
        _count(cols, piv, m * _PIVOTS, cnt)
        m = 0
        for u in range(nt):
            if wide[u]:
                wide[u] = _narrow(piv, cnt, m * _PIVOTS, u, ranks, n, a, b, la, lb)
                m += 1
    return not wide[:nt].any()


@jit
def _keep(tile: Any, nt: int, ties: bool, mid: bool, br: Any, st: Any, kept: Any, acc: Any) -> None:
    """The keep pass: per target ``u`` the values in ``[a, b)`` into ``kept[u]`` (with
    ``ties``, those in ``(a, b)``, and ``#(x == a)`` into ``eq``), counted in ``count``; with
    ``mid``, ``acc`` the float64 sum of the values in ``[b[0], a[1])`` in row order. Each
    lane's kept values are then sorted."""
    n, block = tile.shape
    a = br[0]
    b = br[1]
    eq = st[2]
    count = st[3]
    for u in range(nt):
        for j in range(block):
            eq[u, j] = 0
            count[u, j] = 0
    for j in range(block):
        acc[j] = 0.0
    for r in range(n):
        row = tile[r]
        if mid:
            for j in range(block):
                x = row[j]
                acc[j] += np.float64(x) if (x >= b[0, j]) & (x < a[1, j]) else 0.0
        for u in range(nt):
            au = a[u]
            bu = b[u]
            inside = 0
            if ties:
                eu = eq[u]
                for j in range(block):
                    x = row[j]
                    inside += (x > au[j]) & (x < bu[j])
                    eu[j] += x == au[j]
            else:
                for j in range(block):
                    x = row[j]
                    inside += (x >= au[j]) & (x < bu[j])
            if inside:  # rare once the bracket is narrow: only then look lane by lane
                for j in range(block):
                    x = row[j]
                    if (x > au[j] if ties else x >= au[j]) & (x < bu[j]):
                        c = count[u, j]
                        if c < _CAP:
                            kept[u, j, c] = x
                        count[u, j] = c + 1
    for u in range(nt):
        for j in range(block):
            m = min(count[u, j], _CAP)
            v = kept[u, j]
            for x in range(1, m):  # insertion sort: m is small
                key = v[x]
                y = x - 1
                while y >= 0 and key < v[y]:
                    v[y + 1] = v[y]
                    y -= 1
                v[y + 1] = key


@jit
def _ranked(br: Any, st: Any, kept: Any, u: int, r: int, le: int, out: Any) -> bool:
    """Per lane (the first ``le``) the value at rank ``r`` of target ``u`` into ``out``; False
    when it is not among the bracket's values (only NaN input does that)."""
    for j in range(le):
        c = st[3, u, j]
        q = r - st[0, u, j] - st[2, u, j]
        if q >= c or c > _CAP:
            return False
        out[j] = br[0, u, j] if q < 0 else kept[u, j, q]
    return True


@jit
def _below(br: Any, st: Any, kept: Any, u: int, j: int, v: Any) -> int:
    """``#(x < v)`` in lane ``j`` for a value ``v`` of target ``u``'s bracket."""
    c = st[0, u, j] + (st[2, u, j] if v > br[0, u, j] else 0)
    for q in range(st[3, u, j]):
        if kept[u, j, q] < v:
            c += 1
    return c


@jit
def _trimmed_from_brackets(
    br: Any, st: Any, kept: Any, n: int, k: int, lo: Any, hi: Any, acc: Any, out: Any
) -> None:
    """The unweighted trimmed mean from the keep pass's sum of the values in
    ``[b_lo, a_hi)`` (``b_lo <= a_hi``): the lower bracket's kept values above ``lo``, the
    upper one's below ``hi`` (and its ``eq`` copies of ``a_hi`` when below ``hi``), the copies
    of ``lo`` and ``hi`` that ranks ``[k, n - k)`` hold."""
    for j in range(out.size):
        x_lo = lo[j]
        x_hi = hi[j]
        if x_lo == x_hi:
            out[j] = x_lo
            continue
        total = acc[j]
        le = st[0, 0, j] + st[2, 0, j]
        lt = st[0, 1, j]
        for q in range(st[3, 0, j]):
            v = kept[0, j, q]
            if v <= x_lo:
                le += 1
            else:
                total += np.float64(v)
        if x_hi > br[0, 1, j]:
            lt += st[2, 1, j]
            total += np.float64(br[0, 1, j]) * st[2, 1, j]
        for q in range(st[3, 1, j]):
            v = kept[1, j, q]
            if v < x_hi:
                lt += 1
                total += np.float64(v)
        a = np.float64(x_lo)
        b = np.float64(x_hi)
        out[j] = (total + a * (le - k) + b * (n - k - lt)) / (n - 2 * k)


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
    """:func:`_weighted_pass` after counting ``#(x < lo)`` and ``#(x < hi)`` (into ``state[0]``,
    ``state[1]``; ``lanes[3:5]`` the sums)."""
    state[:2] = 0
    for row in tile:
        for j in range(row.size):
            state[0, j] += row[j] < lo[j]
            state[1, j] += row[j] < hi[j]
    _weighted_pass(tile, k, w, lo, hi, state[0], state[1], lanes[3:5], out)


@jit
def _weighted_pass(
    tile: Any, k: int, w: Any, lo: Any, hi: Any, lt_lo: Any, lt_hi: Any, acc: Any, out: Any
) -> None:
    """Weighted trimmed mean from the thresholds and ``#(x < lo)``, ``#(x < hi)``, rows in
    order: of the rows equal to ``lo`` the first ``k - #(x < lo)`` are dropped (and, when
    ``lo == hi``, all after the next ``n - 2k``), of those equal to ``hi > lo`` the first
    ``n - k - #(x < hi)`` kept."""
    n, block = tile.shape
    seen_lo = np.zeros(block, np.int64)
    seen_hi = np.zeros(block, np.int64)
    acc[:] = 0.0
    sacc, wacc = acc[0], acc[1]
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
            sacc[j] += wr * np.float64(x) if take else 0.0
            wacc[j] += wr if take else 0.0
    for j in range(out.size):
        out[j] = sacc[j] / wacc[j]


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
    pa, pb = net
    block = SELECT_BLOCK
    ptrs, optrs, lens, starts, nb, nch = tiling(segs, block, n_threads)
    scale = float(n - 2 * k)
    if weighted:
        scale = 0.0
        for i in range(n):
            scale += w[i]
    nt = 1 if median else 2
    ranks = np.empty((2, 2), np.int64)
    if median:
        ranks[0, 0] = (n - 1) // 2
        ranks[0, 1] = n // 2
    else:
        ranks[0, 0] = ranks[0, 1] = k
        ranks[1, 0] = ranks[1, 1] = n - 1 - k
    bad = 0
    for c in prange(nch):
        tile, cols, sample, lanes = _scratch(n, like)
        acc = np.zeros((2, block))
        piv = np.empty((2 * _PIVOTS, block), like.dtype)
        cnt = np.empty((2 * _PIVOTS, block), np.int64)
        br = np.empty((2, 2, block), like.dtype)  # a, b per target and lane
        st = np.zeros((4, 2, block), np.int64)  # la, lb, eq, count per target and lane
        kept = np.empty((2, block, _CAP), like.dtype)
        lt = np.empty((2, block), np.int64)
        thr = np.empty((3, block), like.dtype)  # per lane: the thresholds and the result
        lo, hi, res = thr[0], thr[1], thr[2]
        for bi in chunk(c, nb, nch):
            sb, j0, le = locate(bi, starts, lens, block)
            ok = _load_finite(ptrs, sb * n, j0, le, tile, lanes, like)  # else sorted: the network
            bad += not ok
            ties = False
            if ok:
                _sorted_sample(tile, sample, pa, pb)
                _transpose(tile, cols)
                ties = not _bracket(cols, sample, lanes, nt, ranks, piv, cnt, br, st)
            if ok and median:
                _keep(tile, 1, ties, False, br, st, kept, acc[0])
                ok = _ranked(br, st, kept, 0, ranks[0, 0], le, lo)
                ok = ok and _ranked(br, st, kept, 0, ranks[0, 1], le, hi)
                if ok:
                    for j in range(le):
                        res[j] = _midpoint(np.float64(lo[j]), np.float64(hi[j]))
            elif ok:
                apart = not weighted
                for j in range(block):
                    apart = apart and br[1, 0, j] <= br[0, 1, j]
                _keep(tile, 2, ties, apart, br, st, kept, acc[0])
                ok = _ranked(br, st, kept, 0, k, le, lo)
                ok = ok and _ranked(br, st, kept, 1, n - 1 - k, le, hi)
                if ok:  # kept values near the float64 maximum: sum in rank order instead
                    for j in range(le):
                        big = max(abs(np.float64(lo[j])), abs(np.float64(hi[j])))
                        ok = ok and bool(big * scale < 0.25 * _DBL_MAX)
                if ok and weighted:
                    for j in range(le):
                        lt[0, j] = _below(br, st, kept, 0, j, lo[j])
                        lt[1, j] = _below(br, st, kept, 1, j, hi[j])
                    _weighted_pass(tile, k, w, lo, hi, lt[0], lt[1], acc, res[:le])
                elif ok and apart:
                    _trimmed_from_brackets(br, st, kept, n, k, lo, hi, acc[0], res[:le])
                elif ok:
                    _trimmed(tile, k, lo, hi, acc[0], lt, res[:le])
            if not ok:
                _sorted_columns(tile, k, median, w, weighted, le, res)
            out = view(optrs[sb], j0, le, like)
            for j in range(le):
                out[j] = res[j]
    return bad > 0
