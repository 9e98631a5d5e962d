"""Numba twins of the compiled C++ kernels: same algorithms, same results, no compiler needed.

Used when the extension ``hierfed._core`` is missing. The contract is the one of
:mod:`hierfed._kernels_numpy`: ``kernel(segments, outs, ..., weights, n_threads) -> bool``,
``True`` when an input value is NaN or infinite (checked within the kernel's own pass).

The kernels read the rows in place through their addresses, collected and checked here
(1-D, C-contiguous, the outputs' dtype and length): no copy, no stacking. One parallel region
covers every segment, split into blocks of coordinates over ``n_threads`` threads (one thread
for a small input, where waking a second costs more than it saves). Kernels compile on first
use, once per dtype (and per ``k`` for the pop network), and are cached on disk.

Algorithms, as in the C++ core:

- mean: per block a float64 accumulator, rows added in order.
- unweighted trimmed mean with ``1 <= k <= 8``: one pass with a "pop network" per coordinate,
  the ``k`` smallest and ``k`` largest values seen so far; a value pushed out of both is a kept
  middle value and goes into a float64 sum, so no outlier is ever added and subtracted again.
  Coordinates are independent lanes, which LLVM vectorises.
- everything else (median, larger ``k``, weighted rules): a tile of coordinates is sorted
  vertically by Batcher's odd-even merge sorting network, pruned to the comparators the needed
  output positions depend on (unweighted, its first stages run in registers while loading);
  weighted rules sort (value, row index) pairs, a stable order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import Any

import numba
import numpy as np
from numba import prange
from numba.core import types
from numba.core.errors import NumbaError
from numba.extending import intrinsic, overload
from numba.np.numpy_support import carray
from numpy.typing import NDArray

__all__ = [
    "apply_masks",
    "chacha20_keystream",
    "chacha20_noise",
    "clip_by_l2",
    "discrete_gaussian",
    "l2_sq_norms",
    "mean",
    "mean_around_median",
    "median",
    "mix_rows",
    "pairwise_sq_distances",
    "sq_distances_to",
    "trimmed_mean",
]

FloatArray = NDArray[np.floating[Any]]
Rows = Sequence[FloatArray]
IntArray = NDArray[np.int64]

_POP_MAX_TRIM = 8  # the pop network handles 1 <= k <= this; larger k use a sorting network
_MEAN_BLOCK = 8192  # coordinates per block of the mean (its float64 accumulator stays in L2)
_POP_BLOCK = 128  # coordinates per block of the pop network (2k slots per lane stay in L1)
_NET_BLOCK = 128  # lanes (coordinates) per tile of the sorting networks
_NET_GROUP = 8  # rows sorted in registers as they are loaded (the code is written for 8)
_ADDRESS_CHUNK = 16  # rows per call of _row_addresses
_MIN_PARALLEL_WORK = 1 << 16  # values below which one thread is used
_NO_WEIGHTS = np.ones(1)  # the weights argument of an unweighted kernel, unread


def _cache_probe() -> None:
    """Nothing: decorated with ``cache=True`` to learn whether this file's kernels can be."""


def _can_cache() -> bool:
    """Whether numba finds a writable cache directory for this file (it raises if not)."""
    try:
        numba.njit(cache=True)(_cache_probe)
    except RuntimeError:  # e.g. a read-only install and no writable user cache directory
        return False
    return True


_CACHE = _can_cache()
# error_model="numpy": x / 0 gives inf or nan as in numpy (no exception path), which vectorises
_jit = numba.njit(cache=_CACHE, nogil=True, fastmath=False, error_model="numpy")
_jit_parallel = numba.njit(
    cache=_CACHE, nogil=True, fastmath=False, error_model="numpy", parallel=True
)
_jit_inline = numba.njit(
    cache=_CACHE, nogil=True, fastmath=False, error_model="numpy", inline="always"
)
_CPointer: Any = types.CPointer  # untyped in numba's stubs
_config: Any = numba.config  # its settings are set dynamically


def _as_pointer_typing(typingctx: Any, address: Any, like: Any) -> Any:
    """Reinterpret the integer ``address`` as a pointer to elements of ``like``'s dtype."""
    pointer = _CPointer(like.dtype)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, like), codegen


_as_pointer: Any = intrinsic(_as_pointer_typing)


@_jit
def _view(address: int, start: int, length: int, like: Any) -> Any:
    """The ``length`` elements from element ``start`` of the array at ``address``."""
    return carray(_as_pointer(address + start * like.itemsize, like), length)


@_jit_inline
def _cx(a: Any, b: Any) -> tuple[Any, Any]:
    """Compare-exchange: ``(min, max)`` of two values (lane-wise once vectorised)."""
    return (b, a) if b < a else (a, b)


@_jit_inline
def _midpoint(a: float, b: float) -> float:
    """The median of two middle values: halves first (no overflow), ``a`` when they are equal.

    Halving rounds below the smallest normal float64; ``0.5a + 0.5b`` always lies in
    ``[a, b]`` when ``a < b``, but for ``a == b`` it can exceed ``a`` by one unit.
    """
    return a if a == b else 0.5 * a + 0.5 * b


@_jit
def _block_starts(lens: Any, block: int) -> Any:
    """Segment ``s`` owns blocks ``starts[s]`` to ``starts[s + 1]`` of ``block`` coordinates."""
    starts = np.zeros(lens.size + 1, np.int64)
    for s in range(lens.size):
        starts[s + 1] = starts[s] + (lens[s] + block - 1) // block
    return starts


@_jit
def _any_nonfinite(ptrs: Any, s: int, n: int, j0: int, le: int, like: Any) -> bool:
    """Whether a row of segment ``s`` holds a NaN or infinity among ``le`` coordinates at j0."""
    zero = np.zeros(1, like.dtype)[0]
    probe = zero
    for i in range(n):
        x = _view(ptrs[s * n + i], j0, le, like)
        for j in range(le):
            probe += x[j] * zero
    return bool(probe != zero)


@_jit_parallel
def _mean_kernel(
    ptrs: Any, optrs: Any, lens: Any, n: int, w: Any, weighted: bool, like: Any, n_threads: int
) -> bool:
    """Weighted mean per block of coordinates: a float64 accumulator, rows added in order.

    Four rows are added per sweep over the accumulator (the same order of additions), which
    keeps the kernel at memory speed. A non-finite sum sends the block to a second look that
    tells a NaN or infinity in the input from an overflow of finite values.
    """
    block = _MEAN_BLOCK
    starts = _block_starts(lens, block)
    nb = starts[-1]
    nch = min(nb, n_threads)
    total = 0.0
    for i in range(n):
        total += w[i] if weighted else 1.0
    bad = 0
    for c in prange(nch):
        acc = np.empty(block, np.float64)
        s = 0
        for b in range(c * nb // nch, (c + 1) * nb // nch):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * block
            le = min(block, lens[s] - j0)
            for j in range(le):
                acc[j] = 0.0
            base = s * n
            i = 0
            while i + 4 <= n:
                x0 = _view(ptrs[base + i], j0, le, like)
                x1 = _view(ptrs[base + i + 1], j0, le, like)
                x2 = _view(ptrs[base + i + 2], j0, le, like)
                x3 = _view(ptrs[base + i + 3], j0, le, like)
                if weighted:
                    w0, w1, w2, w3 = w[i], w[i + 1], w[i + 2], w[i + 3]
                    for j in range(le):
                        acc[j] = (((acc[j] + w0 * x0[j]) + w1 * x1[j]) + w2 * x2[j]) + w3 * x3[j]
                else:
                    for j in range(le):
                        acc[j] = (((acc[j] + x0[j]) + x1[j]) + x2[j]) + x3[j]
                i += 4
            while i < n:
                x0 = _view(ptrs[base + i], j0, le, like)
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
            out = _view(optrs[s], j0, le, like)
            for j in range(le):
                out[j] = acc[j] / total
    return bad > 0


@cache
def _pop_kernel(k: int) -> Callable[..., bool]:
    """The pop-network trimmed mean compiled for ``k`` (a constant, so the slots unroll)."""

    @_jit_parallel
    def pop_trimmed_mean(
        ptrs: Any, optrs: Any, lens: Any, n: int, like: Any, n_threads: int
    ) -> bool:
        """Unweighted trimmed mean dropping ``k`` values at each end, in one pass.

        Per lane ``lo`` holds the ``k`` smallest values seen, ascending, and ``hi`` the ``k``
        largest, descending. Each value is inserted into ``lo``; what ``lo`` pops out (its
        largest) goes into ``hi``, and what ``hi`` pops out (its smallest) is a middle value:
        it joins the float64 sum. Rows ``0..k-1`` only fill ``lo`` (it pops its +inf
        padding), rows ``k..2k-1`` also fill ``hi`` (which pops its -inf padding). Later rows
        go four at a time through each slot: the same comparisons in the same order, with a
        quarter of the slot loads and stores.
        """
        block = _POP_BLOCK
        starts = _block_starts(lens, block)
        nb = starts[-1]
        nch = min(nb, n_threads)
        zero = np.zeros(1, like.dtype)[0]
        kept = float(n - 2 * k)
        bad = 0
        for c in prange(nch):
            lo = np.empty((k, block), like.dtype)
            hi = np.empty((k, block), like.dtype)
            probe = np.empty(block, like.dtype)
            acc = np.empty(block, np.float64)
            s = 0
            for b in range(c * nb // nch, (c + 1) * nb // nch):
                while b >= starts[s + 1]:
                    s += 1
                j0 = (b - starts[s]) * block
                le = min(block, lens[s] - j0)
                for t in range(k):
                    for j in range(block):
                        lo[t, j] = np.inf
                    for j in range(block):
                        hi[t, j] = -np.inf
                for j in range(block):
                    probe[j] = zero
                for j in range(block):
                    acc[j] = 0.0
                i = 0
                while i < n:
                    if i >= 2 * k and i + 3 < n:  # four rows per sweep over the slots
                        x0 = _view(ptrs[s * n + i], j0, le, like)
                        x1 = _view(ptrs[s * n + i + 1], j0, le, like)
                        x2 = _view(ptrs[s * n + i + 2], j0, le, like)
                        x3 = _view(ptrs[s * n + i + 3], j0, le, like)
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
                    x = _view(ptrs[s * n + i], j0, le, like)
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
                check = zero
                for j in range(le):
                    check += probe[j]
                if check != zero:
                    bad += 1
                out = _view(optrs[s], j0, le, like)
                for j in range(le):
                    out[j] = acc[j] / kept
        return bad > 0

    return pop_trimmed_mean


@_jit_parallel
def _net_kernel(
    ptrs: Any,
    optrs: Any,
    lens: Any,
    n: int,
    pa: Any,
    pb: Any,
    k: int,
    median: bool,
    like: Any,
    n_threads: int,
) -> bool:
    """Unweighted median or trimmed mean: a vertical sorting network over tiles of lanes.

    A tile holds ``n`` rows of ``_NET_BLOCK`` consecutive coordinates; comparator ``(a, b)``
    puts the lane-wise minimum of rows ``a`` and ``b`` into row ``a`` and the maximum into
    ``b``, which vectorises over the lanes. Rows are loaded eight at a time and sorted in
    registers on the way in (the network's first three stages, ``pa``/``pb`` being the rest),
    which saves a quarter of the comparators' loads and stores. The median averages sorted
    rows ``(n - 1) // 2`` and ``n // 2``; the trimmed mean sums sorted rows ``k..n-k-1`` in
    ascending order.
    """
    block = _NET_BLOCK
    starts = _block_starts(lens, block)
    nb = starts[-1]
    nch = min(nb, n_threads)
    zero = np.zeros(1, like.dtype)[0]
    ncomp = pa.size
    kept = float(n - 2 * k)
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        probe = np.empty(block, like.dtype)
        acc = np.empty(block, np.float64)
        s = 0
        for b in range(c * nb // nch, (c + 1) * nb // nch):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * block
            le = min(block, lens[s] - j0)
            for j in range(block):
                probe[j] = zero
            full = n - n % _NET_GROUP
            for g in range(0, full, _NET_GROUP):  # a group of 8 rows, sorted in registers
                base = s * n + g
                x0 = _view(ptrs[base], j0, le, like)
                x1 = _view(ptrs[base + 1], j0, le, like)
                x2 = _view(ptrs[base + 2], j0, le, like)
                x3 = _view(ptrs[base + 3], j0, le, like)
                x4 = _view(ptrs[base + 4], j0, le, like)
                x5 = _view(ptrs[base + 5], j0, le, like)
                x6 = _view(ptrs[base + 6], j0, le, like)
                x7 = _view(ptrs[base + 7], j0, le, like)
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
            for i in range(full, n):
                x = _view(ptrs[s * n + i], j0, le, like)
                row = tile[i]
                for j in range(le):
                    v = x[j]
                    probe[j] += v * zero
                    row[j] = v
            for q in range(ncomp):
                ra = tile[pa[q]]
                rb = tile[pb[q]]
                for j in range(block):
                    u = ra[j]
                    v = rb[j]
                    ra[j] = v if v < u else u
                    rb[j] = u if v < u else v
            check = zero
            for j in range(le):
                check += probe[j]
            if check != zero:
                bad += 1
            out = _view(optrs[s], j0, le, like)
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


@_jit_parallel
def _net_weighted_kernel(
    ptrs: Any,
    optrs: Any,
    lens: Any,
    n: int,
    pa: Any,
    pb: Any,
    k: int,
    median: bool,
    w: Any,
    like: Any,
    index_like: Any,
    n_threads: int,
) -> bool:
    """Weighted median or trimmed mean: the sorting network on (value, row index) pairs.

    Comparing pairs lexicographically sorts the values stably (equal values keep row order).
    Trimmed mean: ``sum(w v) / sum(w)`` over sorted positions ``k..n-k-1``, in ascending
    order (0/0 = NaN when all kept weights are zero). Median: with ``below[q]`` the weight at
    or below rank ``q`` (summed upwards) and ``above[q]`` the weight above it (summed
    downwards), the mean of the values at the first rank with ``below >= above`` and the
    first with ``below > above``; equal weights thus give exactly the unweighted median.
    """
    block = _NET_BLOCK
    starts = _block_starts(lens, block)
    nb = starts[-1]
    nch = min(nb, n_threads)
    zero = np.zeros(1, like.dtype)[0]
    ncomp = pa.size
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        index = np.empty((n, block), index_like.dtype)
        probe = np.empty(block, like.dtype)
        acc = np.empty(block, np.float64)
        wacc = np.empty(block, np.float64)
        wsorted = np.empty((n, block), np.float64)
        above = np.empty((n, block), np.float64)
        below = np.empty(block, np.float64)
        lo = np.empty(block, np.float64)
        hi = np.empty(block, np.float64)
        s = 0
        for b in range(c * nb // nch, (c + 1) * nb // nch):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * block
            le = min(block, lens[s] - j0)
            for j in range(block):
                probe[j] = zero
            for i in range(n):
                x = _view(ptrs[s * n + i], j0, le, like)
                row = tile[i]
                for j in range(le):
                    v = x[j]
                    probe[j] += v * zero
                    row[j] = v
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
            check = zero
            for j in range(le):
                check += probe[j]
            if check != zero:
                bad += 1
            out = _view(optrs[s], j0, le, like)
            first = 0 if median else k
            last = n if median else n - k
            for p in range(first, last):  # the weights in sorted order (a scalar gather)
                ip = index[p]
                wp = wsorted[p]
                for j in range(block):
                    wp[j] = w[ip[j]]
            if median:
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
            else:
                for j in range(block):
                    acc[j] = 0.0
                for j in range(block):
                    wacc[j] = 0.0
                for p in range(k, n - k):
                    wp = wsorted[p]
                    row = tile[p]
                    for j in range(block):
                        acc[j] += wp[j] * row[j]
                        wacc[j] += wp[j]
                for j in range(le):
                    out[j] = acc[j] / wacc[j]
    return bad > 0


# --------------------------------------------------------------------------------------------
# Sorting networks


def _odd_even_merge_sort(n: int, presorted: int = 1) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort of ``n`` wires, as (low, high) comparators in order.

    Built for the next power of two; comparators touching a wire ``>= n`` are dropped, which
    is exact because such a wire would hold +inf padding that no comparator moves. The first
    stages sort aligned groups of ``presorted`` wires (a power of two); their comparators are
    left out for the full groups, which the caller sorts itself.
    """
    size = 1
    while size < n:
        size *= 2
    full = n - n % presorted  # groups of wires below this arrive sorted
    pairs = []
    p = 1
    while p < size:
        step = p
        while step >= 1:
            for j in range(step % p, size - step, 2 * step):
                for i in range(min(step, size - j - step)):
                    a, b = i + j, i + j + step
                    if a // (2 * p) == b // (2 * p) and b < n and (p >= presorted or b >= full):
                        pairs.append((a, b))
            step //= 2
        p *= 2
    return pairs


@lru_cache(maxsize=256)
def _network(n: int, first: int, last: int, presorted: int = 1) -> tuple[IntArray, IntArray]:
    """The comparators that sorted positions ``first..last`` of ``n`` wires depend on.

    With ``presorted`` as in :func:`_odd_even_merge_sort`: the rest of the network.
    """
    needed = set(range(first, last + 1))
    kept = []
    for a, b in reversed(_odd_even_merge_sort(n, presorted)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    pa = np.array([a for a, _ in kept], dtype=np.int64)
    pb = np.array([b for _, b in kept], dtype=np.int64)
    return pa, pb


# --------------------------------------------------------------------------------------------
# Python entry points


@_jit
def _row_addresses(rows: Any, count: int, length: int, ptrs: Any, at: int) -> bool:
    """Store the data addresses of ``rows[:count]`` (a tuple) from ``ptrs[at]`` on.

    False when one of them is not a C-contiguous array of ``length`` elements. Unboxing a
    tuple of arrays in compiled code costs a fraction of reading each address in Python.
    """
    ok = True
    for i in range(count):
        x = rows[i]
        ptrs[at + i] = x.ctypes.data
        ok &= (x.size == length) & x.flags.c_contiguous
    return ok


def _checked_address(row: Any, dtype: np.dtype[Any], length: int, where: str) -> int:
    """The data address of ``row`` after checking its dtype, shape and memory layout."""
    face = getattr(row, "__array_interface__", None)
    if (
        face is None
        or face["shape"] != (length,)
        or face["strides"] not in (None, (dtype.itemsize,))
        or np.dtype(face["typestr"]) != dtype
    ):
        raise ValueError(f"{where} must be a 1-D C-contiguous {dtype} array of length {length}")
    return int(face["data"][0])


def _segment_addresses(
    rows: Rows, s: int, dtype: np.dtype[Any], length: int, ptrs: IntArray
) -> None:
    """Check segment ``s``'s rows and store their addresses at ``ptrs[s * n:]``.

    Rows go to :func:`_row_addresses` in tuples of ``_ADDRESS_CHUNK`` (one compiled signature
    per dtype); a tuple it cannot take (rows of mixed flags, non-arrays) falls back to checking
    each row in Python. ``ptrs`` has room for a padded last tuple.
    """
    n = len(rows)
    chunk = _ADDRESS_CHUNK
    for row in rows:
        if not isinstance(row, np.ndarray) or row.dtype != dtype:
            raise ValueError(f"rows of segment {s} must be {dtype} arrays")
    for q in range(0, n, chunk):
        part = tuple(rows[q : q + chunk])
        count = len(part)
        if count < chunk:
            part += (part[0],) * (chunk - count)
        try:
            ok = _row_addresses(part, count, length, ptrs, s * n + q)
        except (NumbaError, TypeError, ValueError):
            ok = False
        if not ok:
            for i in range(count):
                where = f"segments[{s}][{q + i}]"
                ptrs[s * n + q + i] = _checked_address(part[i], dtype, length, where)


def _addresses(
    segments: Sequence[Rows], outs: Sequence[FloatArray]
) -> tuple[int, IntArray, IntArray, IntArray]:
    """``n``, the row and output addresses and the segment lengths, every array checked.

    The kernels read raw memory, so a row of the wrong length, dtype or layout must never
    reach them. Rows go to :func:`_row_addresses` in tuples of ``_ADDRESS_CHUNK`` (one
    compiled signature per dtype); a tuple it cannot take (rows of mixed flags, non-arrays)
    falls back to checking each row in Python.
    """
    if len(segments) != len(outs):
        raise ValueError(f"{len(segments)} segments but {len(outs)} outputs")
    n = len(segments[0])
    dtype = np.dtype(outs[0].dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"kernels take float32 or float64 arrays, got {dtype}")
    chunk = _ADDRESS_CHUNK
    ptrs = np.empty(len(segments) * n + chunk, np.int64)  # room for a padded last tuple
    optrs = np.empty(len(outs), np.int64)
    lens = np.empty(len(outs), np.int64)
    for s, (rows, out) in enumerate(zip(segments, outs, strict=True)):
        length = out.size
        optrs[s] = _checked_address(out, dtype, length, f"outs[{s}]")
        if not out.flags.writeable:
            raise ValueError(f"outs[{s}] must be writeable")
        lens[s] = length
        if len(rows) != n:
            raise ValueError(f"segment {s} has {len(rows)} rows, segment 0 has {n}")
        _segment_addresses(rows, s, dtype, length, ptrs)
    return n, ptrs, optrs, lens


def _set_threads(n_threads: int, n: int, lens: IntArray) -> int:
    """Use ``n_threads`` threads (at most numba's pool), or one for a small input.

    Waking a second thread costs more than a few tens of microseconds of work.
    """
    used = max(1, min(int(n_threads), int(_config.NUMBA_NUM_THREADS)))
    if n * int(lens.sum()) < _MIN_PARALLEL_WORK:
        used = 1
    numba.set_num_threads(used)
    return used


def _index_like(outs: Sequence[FloatArray]) -> NDArray[np.integer[Any]]:
    """Row-index dtype witness of the weighted network: as wide as the values, to vectorise."""
    return np.empty(0, np.uint32 if outs[0].dtype == np.float32 else np.uint64)


def mean(
    segments: Sequence[Rows],
    outs: Sequence[FloatArray],
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Weighted mean ``sum(w_i x_i) / sum(w_i)`` per coordinate, accumulated in float64.

    Returns True when an input value is NaN or infinite (the outputs are then unspecified).
    """
    if not segments:
        return False
    n, ptrs, optrs, lens = _addresses(segments, outs)
    used = _set_threads(n_threads, n, lens)
    w = _NO_WEIGHTS if weights is None else weights
    return bool(_mean_kernel(ptrs, optrs, lens, n, w, weights is not None, outs[0], used))


def trimmed_mean(
    segments: Sequence[Rows],
    outs: Sequence[FloatArray],
    n_trim: int,
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Per coordinate drop the ``n_trim`` smallest and largest values, weighted mean of the rest.

    ``n_trim == 0`` is the mean; unweighted with ``n_trim <= 8`` the single-pass pop network;
    otherwise a sorting network (weighted: stable order by (value, row index)). A coordinate
    whose kept weights sum to zero gets NaN (0/0); the caller checks. Returns True when an
    input value is non-finite.
    """
    if not segments:
        return False
    k = int(n_trim)
    if k == 0:
        return mean(segments, outs, weights, n_threads)
    n, ptrs, optrs, lens = _addresses(segments, outs)
    if not 0 < 2 * k < n:
        raise ValueError(f"n_trim must satisfy 0 <= 2*n_trim < n (n={n}), got {k}")
    used = _set_threads(n_threads, n, lens)
    if weights is None and k <= _POP_MAX_TRIM:
        return bool(_pop_kernel(k)(ptrs, optrs, lens, n, outs[0], used))
    if weights is None:
        pa, pb = _network(n, k, n - k - 1, _NET_GROUP)
        return bool(_net_kernel(ptrs, optrs, lens, n, pa, pb, k, False, outs[0], used))
    pa, pb = _network(n, k, n - k - 1)
    return bool(
        _net_weighted_kernel(
            ptrs, optrs, lens, n, pa, pb, k, False, weights, outs[0], _index_like(outs), used
        )
    )


def median(
    segments: Sequence[Rows],
    outs: Sequence[FloatArray],
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Coordinate-wise (weighted) median, as :func:`hierfed._kernels_numpy.median`.

    Unweighted: the sorting network pruned to the two middle positions. Weighted: the full
    stable sort by (value, row index), then the first ranks where the weight at or below
    reaches (``>=``) and exceeds (``>``) the weight above. Returns True when an input value
    is non-finite.
    """
    if not segments:
        return False
    n, ptrs, optrs, lens = _addresses(segments, outs)
    used = _set_threads(n_threads, n, lens)
    if weights is None:
        pa, pb = _network(n, (n - 1) // 2, n // 2, _NET_GROUP)
        return bool(_net_kernel(ptrs, optrs, lens, n, pa, pb, 0, True, outs[0], used))
    pa, pb = _network(n, 0, n - 1)
    return bool(
        _net_weighted_kernel(
            ptrs, optrs, lens, n, pa, pb, 0, True, weights, outs[0], _index_like(outs), used
        )
    )


# --------------------------------------------------------------------------------------------
# Distance kernels
#
# Pairwise and point distances for the distance-based rules (Krum, Bulyan's selection) and
# Bulyan's last step, the mean around the median. The C++ core follows the same summation
# recipe, operation for operation, so the two agree bit for bit:
#
# - a segment is cut into chunks of ``chunk`` coordinates (the last may be shorter), numbered
#   segment-major; ``U = min(n_units, chunks)`` units take consecutive chunks,
#   ``[u*K//U, (u+1)*K//U)``;
# - a chunk's value for a pair is summed in 16 float64 lanes, coordinate ``c`` going to lane
#   ``(c - chunk start) % 16``: float64 rows add ``d*d`` to their lane directly; float32 rows
#   sum ``d*d`` in float32 lanes over runs of 128 coordinates (``d`` and ``d*d`` rounded to
#   float32, no fused multiply-add) and add each run's lanes to the float64 lanes;
# - the lanes fold as a tree (``A[l] += A[l + w]`` for ``w = 8, 4, 2, 1``), chunk values add
#   up in order within a unit, and unit partials in unit order.
#
# Within a lane the coordinates are always taken in order, so the code below may walk the
# lanes in any order: it takes a run lane by lane, the eight steps of a lane in a row, which
# LLVM vectorises across lanes with no reassociation.

_LANES = 16  # float64 lanes of a chunk sum
_RUN = 128  # coordinates per float32 run (8 steps of 16 lanes)
_PAIR_BLOCK = 4  # pairs (one row against four) summed per sweep over a chunk


def _run_start(total: Any, zero: Any) -> Any:
    """A lane's accumulator at the start of a run: float32 rows ``zero``, float64 ``total``."""
    return zero if np.asarray(zero).dtype == np.float32 else total


def _run_end(total: Any, run: Any) -> Any:
    """A lane's float64 total after a run: float32 rows add the run sum, float64 rows are it."""
    return total + np.float64(run) if np.asarray(run).dtype == np.float32 else run


def _run_start_typing(total: Any, zero: Any) -> Any:
    """Numba's :func:`_run_start`, chosen at compile time by the rows' dtype."""

    def from_zero(total: Any, zero: Any) -> Any:
        return zero

    def from_total(total: Any, zero: Any) -> Any:
        return total

    return from_zero if zero == types.float32 else from_total


def _run_end_typing(total: Any, run: Any) -> Any:
    """Numba's :func:`_run_end`, chosen at compile time by the rows' dtype."""

    def add_run(total: Any, run: Any) -> Any:
        return total + np.float64(run)

    def is_run(total: Any, run: Any) -> Any:
        return run

    return add_run if run == types.float32 else is_run


overload(_run_start, inline="always")(_run_start_typing)
overload(_run_end, inline="always")(_run_end_typing)


@_jit_inline
def _fold_lanes(lanes: Any) -> float:
    """The lanes' tree sum: ``lanes[l] += lanes[l + w]`` for ``w = 8, 4, 2, 1`` (in place)."""
    w = _LANES // 2
    while w > 0:
        for q in range(w):
            lanes[q] = lanes[q] + lanes[q + w]
        w //= 2
    return float(lanes[0])


@_jit
def _pair_lanes4(xi: Any, x0: Any, x1: Any, x2: Any, x3: Any, full: int, acc: Any) -> None:
    """Add the squared differences of ``xi`` and each of ``x0..x3`` to their lanes in ``acc``.

    The first ``full`` coordinates of the chunk, a multiple of 128 (the rest goes to
    :func:`_pair_lanes1`). ``acc`` holds the 16 float64 lanes of each pair in a row (a 1-D
    array: LLVM does not vectorise the lane loop over a 2-D one). Per lane the coordinates
    go in order: a run of 128 is eight steps, each lane's steps in a row, lanes vectorised.
    """
    zero = np.zeros(1, xi.dtype)[0]
    for r in range(full // _RUN):  # not range(0, full, _RUN): LLVM then gathers the loads
        b = r * _RUN
        for q in range(_LANES):
            t0 = _run_start(acc[q], zero)
            t1 = _run_start(acc[_LANES + q], zero)
            t2 = _run_start(acc[2 * _LANES + q], zero)
            t3 = _run_start(acc[3 * _LANES + q], zero)
            for st in range(_RUN // _LANES):
                c = b + st * _LANES + q
                v = xi[c]
                d0 = v - x0[c]
                d1 = v - x1[c]
                d2 = v - x2[c]
                d3 = v - x3[c]
                t0 = t0 + d0 * d0
                t1 = t1 + d1 * d1
                t2 = t2 + d2 * d2
                t3 = t3 + d3 * d3
            acc[q] = _run_end(acc[q], t0)
            acc[_LANES + q] = _run_end(acc[_LANES + q], t1)
            acc[2 * _LANES + q] = _run_end(acc[2 * _LANES + q], t2)
            acc[3 * _LANES + q] = _run_end(acc[3 * _LANES + q], t3)


@_jit
def _pair_lanes1(xi: Any, xj: Any, le: int, acc: Any) -> None:
    """One pair's squared differences over ``le`` coordinates into ``acc[:16]``.

    Full runs as in :func:`_pair_lanes4`, then the last, shorter run with each lane's
    coordinates in order.
    """
    zero = np.zeros(1, xi.dtype)[0]
    full = le // _RUN * _RUN
    for r in range(full // _RUN):
        b = r * _RUN
        for q in range(_LANES):
            t = _run_start(acc[q], zero)
            for st in range(_RUN // _LANES):
                c = b + st * _LANES + q
                d = xi[c] - xj[c]
                t = t + d * d
            acc[q] = _run_end(acc[q], t)
    if full < le:
        for q in range(_LANES):
            t = _run_start(acc[q], zero)
            for c in range(full + q, le, _LANES):
                d = xi[c] - xj[c]
                t = t + d * d
            acc[q] = _run_end(acc[q], t)


@_jit
def _pairs_chunk(
    ptrs: Any, base: int, n: int, j0: int, le: int, acc: Any, part: Any, like: Any
) -> None:
    """Add every pair's value of one chunk (``le`` coordinates at ``j0``) to ``part``.

    Rows are ``ptrs[base:base + n]``; pair ``(i, j)``, ``i < j``, is ``part[p]`` in row-major
    order of the upper triangle. Row ``i`` is taken against four rows at a time over the
    full runs; a last, shorter run (at a segment's end) goes pair by pair.
    """
    full = le // _RUN * _RUN
    p = 0
    for i in range(n - 1):
        xi = _view(ptrs[base + i], j0, le, like)
        j = i + 1
        while j + _PAIR_BLOCK <= n:
            x0 = _view(ptrs[base + j], j0, le, like)
            x1 = _view(ptrs[base + j + 1], j0, le, like)
            x2 = _view(ptrs[base + j + 2], j0, le, like)
            x3 = _view(ptrs[base + j + 3], j0, le, like)
            for q in range(_PAIR_BLOCK * _LANES):
                acc[q] = 0.0
            _pair_lanes4(xi, x0, x1, x2, x3, full, acc)
            for q in range(_PAIR_BLOCK):
                lanes = acc[q * _LANES : (q + 1) * _LANES]
                if full < le:  # the last, shorter run (full is a multiple of 16: same lanes)
                    tail_i = _view(ptrs[base + i], j0 + full, le - full, like)
                    tail_q = _view(ptrs[base + j + q], j0 + full, le - full, like)
                    _pair_lanes1(tail_i, tail_q, le - full, lanes)
                part[p + q] = part[p + q] + _fold_lanes(lanes)
            p += _PAIR_BLOCK
            j += _PAIR_BLOCK
        while j < n:
            xj = _view(ptrs[base + j], j0, le, like)
            lanes = acc[:_LANES]
            for q in range(_LANES):
                lanes[q] = 0.0
            _pair_lanes1(xi, xj, le, lanes)
            part[p] = part[p] + _fold_lanes(lanes)
            p += 1
            j += 1


@_jit_parallel
def _pairwise_kernel(
    ptrs: Any, lens: Any, n: int, chunk: int, partial: Any, out: Any, like: Any, n_threads: int
) -> None:
    """Squared distances of every pair of rows, summed by the recipe above, into ``out``.

    ``partial`` is a zeroed (units, n*(n-1)/2) array, ``units = min(n_units, chunks)`` (or
    one row when there is no chunk). Units run in parallel, each over its chunks with all
    pairs per chunk (a chunk of every row stays in cache), into its row of partials; the
    partials then add up in unit order, so the result does not depend on the number of
    threads.
    """
    starts = _block_starts(lens, chunk)
    nk = starts[-1]
    units = min(partial.shape[0], nk)
    for u in prange(units):
        acc = np.empty(_PAIR_BLOCK * _LANES)
        part = partial[u]
        s = 0
        for b in range(u * nk // units, (u + 1) * nk // units):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * chunk
            _pairs_chunk(ptrs, s * n, n, j0, min(chunk, lens[s] - j0), acc, part, like)
    p = 0
    for i in range(n):
        out[i, i] = 0.0
        for j in range(i + 1, n):
            total = partial[0, p]
            for u in range(1, units):
                total = total + partial[u, p]
            out[i, j] = total
            out[j, i] = total
            p += 1


@_jit
def _lanes_to(x: Any, y: Any, le: int, acc: Any) -> None:
    """Add ``(float64(x[c]) - float64(y[c]))**2`` to lane ``c % 16`` of ``acc``, c in order."""
    steps = _RUN // _LANES
    runs = le // _RUN
    for r in range(runs):
        b = r * _RUN
        for q in range(_LANES):
            t = acc[q]
            for st in range(steps):
                c = b + st * _LANES + q
                d = np.float64(x[c]) - np.float64(y[c])
                t = t + d * d
            acc[q] = t
    b = runs * _RUN
    if b < le:
        for q in range(_LANES):
            t = acc[q]
            for c in range(b + q, le, _LANES):
                d = np.float64(x[c]) - np.float64(y[c])
                t = t + d * d
            acc[q] = t


@_jit_parallel
def _distances_to_kernel(
    ptrs: Any, pptrs: Any, lens: Any, n: int, out: Any, like: Any, n_threads: int
) -> None:
    """Squared distance of each row to the point, into ``out``.

    Per segment 16 float64 lanes and their tree, the segments added in order. Each row is
    summed by one thread, so the result does not depend on the number of threads.
    """
    nch = min(n, n_threads)
    for c in prange(nch):
        acc = np.empty(_LANES)
        for i in range(c * n // nch, (c + 1) * n // nch):
            total = 0.0
            for s in range(lens.size):
                x = _view(ptrs[s * n + i], 0, lens[s], like)
                y = _view(pptrs[s], 0, lens[s], like)
                for q in range(_LANES):
                    acc[q] = 0.0
                _lanes_to(x, y, lens[s], acc)
                total = total + _fold_lanes(acc)
            out[i] = total


@_jit
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
    """One block of :func:`_around_median_kernel`: ``le`` coordinates at ``j0`` into ``out``.

    Rows are ``ptrs[base:base + n]``; ``tile`` (n, 128), ``lanes`` (5, 128) float64 and
    ``counts`` (2, 128) int64 are scratch. True when an input value is non-finite.
    """
    block = _NET_BLOCK
    zero = np.zeros(1, like.dtype)[0]
    m = (n - 1) // 2
    med = lanes[0]
    thr = lanes[1]
    acc = lanes[2]
    wacc = lanes[3]
    check_lane = lanes[4]
    ties = counts[0]
    seen = counts[1]
    for j in range(block):
        check_lane[j] = 0.0
    for i in range(n):
        x = _view(ptrs[base + i], j0, le, like)
        row = tile[i]
        for j in range(le):
            v = x[j]
            check_lane[j] += v * zero
            row[j] = v
    for q in range(pa.size):
        ra = tile[pa[q]]
        rb = tile[pb[q]]
        for j in range(block):
            u = ra[j]
            v = rb[j]
            ra[j] = v if v < u else u
            rb[j] = u if v < u else v
    bad = False
    for j in range(le):
        bad |= check_lane[j] != 0.0
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
        x = _view(ptrs[base + i], j0, le, like)
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


@_jit_parallel
def _around_median_kernel(
    ptrs: Any,
    optrs: Any,
    lens: Any,
    n: int,
    pa: Any,
    pb: Any,
    k: int,
    w: Any,
    like: Any,
    n_threads: int,
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
    block = _NET_BLOCK
    starts = _block_starts(lens, block)
    nb = starts[-1]
    nch = min(nb, n_threads)
    bad = 0
    for c in prange(nch):
        tile = np.zeros((n, block), like.dtype)
        lanes = np.zeros((5, block))
        counts = np.zeros((2, block), np.int64)
        s = 0
        for b in range(c * nb // nch, (c + 1) * nb // nch):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * block
            le = min(block, lens[s] - j0)
            out = _view(optrs[s], j0, le, like)
            bad += _around_median_block(
                ptrs, out, s * n, j0, le, n, pa, pb, k, w, tile, lanes, counts, like
            )
    return bad > 0


def _input_addresses(segments: Sequence[Rows]) -> tuple[int, IntArray, IntArray, np.dtype[Any]]:
    """``n``, the row addresses, the segment lengths and the dtype, every row checked.

    As :func:`_addresses` for kernels without per-segment outputs: the dtype is the first
    row's and the length of segment ``s`` that of its first row, which every row must share.
    """
    n = len(segments[0])
    for s, rows in enumerate(segments):
        if len(rows) != n:
            raise ValueError(f"segment {s} has {len(rows)} rows, segment 0 has {n}")
    lens = np.zeros(len(segments), np.int64)
    if n == 0:
        return 0, np.empty(0, np.int64), lens, np.dtype(np.float64)
    first = segments[0][0]
    if not isinstance(first, np.ndarray) or first.dtype not in (np.float32, np.float64):
        raise TypeError(f"kernels take float32 or float64 arrays, got {type(first).__name__}")
    dtype = np.dtype(first.dtype)
    chunk = _ADDRESS_CHUNK
    ptrs = np.empty(len(segments) * n + chunk, np.int64)  # room for a padded last tuple
    for s, rows in enumerate(segments):
        lens[s] = rows[0].size
        _segment_addresses(rows, s, dtype, int(lens[s]), ptrs)
    return n, ptrs, lens, dtype


def _check_float64_output(out: Any, shape: tuple[int, ...], name: str) -> None:
    """``out`` must be a writeable C-contiguous float64 array of ``shape``."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float64:
        raise TypeError(f"{name} must be a float64 array")
    if out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be a writeable C-contiguous array of shape {shape}")


def pairwise_sq_distances(
    segments: Sequence[Rows],
    out: NDArray[np.float64],
    chunk: int,
    n_units: int,
    n_threads: int = 1,
) -> None:
    """``out[i, j] = sum_c (x_i[c] - x_j[c])**2`` over every segment, as the C++ kernel.

    The value is summed by the fixed recipe at the head of this section (chunks of
    ``chunk`` coordinates, a multiple of 128, grouped into ``min(n_units, chunks)`` units),
    so it does not depend on ``n_threads``. ``out`` is (n, n) float64, written in full:
    symmetric, zero diagonal. Non-finite input gives non-finite entries; the caller checks.
    """
    chunk = int(chunk)
    n_units = int(n_units)
    if chunk < _RUN or chunk % _RUN:
        raise ValueError(f"chunk must be a positive multiple of {_RUN}, got {chunk}")
    if n_units < 1:
        raise ValueError(f"n_units must be at least 1, got {n_units}")
    if not segments:
        _check_float64_output(out, np.shape(out), "out")
        out[...] = 0.0
        return
    n, ptrs, lens, dtype = _input_addresses(segments)
    _check_float64_output(out, (n, n), "out")
    if n == 0:
        return
    n_chunks = int(((lens + chunk - 1) // chunk).sum())
    partial = np.zeros((max(1, min(n_units, n_chunks)), n * (n - 1) // 2))
    used = _set_threads(n_threads, n, lens)
    _pairwise_kernel(ptrs, lens, n, chunk, partial, out, np.empty(0, dtype), used)


def sq_distances_to(
    segments: Sequence[Rows],
    point: Sequence[FloatArray],
    out: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """``out[i] = sum_c (x_i[c] - point[c])**2`` over every segment, as the C++ kernel.

    ``point[s]`` is segment ``s`` of the point, in the rows' dtype. Per row and segment the
    differences are taken in float64 and summed in 16 lanes folded as a tree, the segments
    in order; each row is summed by one thread, so the result does not depend on
    ``n_threads``.
    """
    if len(point) != len(segments):
        raise ValueError(f"{len(segments)} segments but {len(point)} point segments")
    if not segments:
        _check_float64_output(out, np.shape(out), "out")
        out[...] = 0.0
        return
    n, ptrs, lens, dtype = _input_addresses(segments)
    _check_float64_output(out, (n,), "out")
    if n == 0:
        return
    pptrs = np.empty(len(point), np.int64)
    for s, part in enumerate(point):
        pptrs[s] = _checked_address(part, dtype, int(lens[s]), f"point[{s}]")
    used = _set_threads(n_threads, n, lens)
    _distances_to_kernel(ptrs, pptrs, lens, n, out, np.empty(0, dtype), used)


def mean_around_median(
    segments: Sequence[Rows],
    outs: Sequence[FloatArray],
    n_keep: int,
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Per coordinate, the (weighted) mean of the ``n_keep`` values closest to the median.

    As :func:`hierfed._kernels_numpy.mean_around_median`: ``med`` the two middle values
    halved then added, distances ``|x_i - med|`` in float64, the ``n_keep`` smallest taken
    with ties to the lower row index; the kept values (times their weights) and the kept
    weights are summed in row order. Kept weights summing to zero give NaN; the caller
    checks. Returns True when an input value is non-finite.
    """
    if not segments:
        return False
    n, ptrs, optrs, lens = _addresses(segments, outs)
    k = int(n_keep)
    if not 1 <= k <= n:
        raise ValueError(f"n_keep must satisfy 1 <= n_keep <= n (n={n}), got {k}")
    if weights is not None and (weights.dtype != np.float64 or weights.shape != (n,)):
        raise ValueError(f"weights must be a float64 array of length {n}")
    used = _set_threads(n_threads, n, lens)
    m = (n - 1) // 2
    pa, pb = _network(n, max(0, m - k + 1), min(n - 1, m + k))
    w = np.ones(n) if weights is None else weights  # the same sums, bit for bit
    return bool(_around_median_kernel(ptrs, optrs, lens, n, pa, pb, k, w, outs[0], used))


# --------------------------------------------------------------------------------------------
# Mixing: many weighted means of the same rows (nearest-neighbour mixing)


@_jit_parallel
def _mix_kernel(
    ptrs: Any, optrs: Any, lens: Any, n: int, w: Any, wsum: Any, like: Any, n_threads: int
) -> bool:
    """``out[o] = sum_i w[o, i] x_i / wsum[o]`` per block of coordinates.

    A block of every row is widened into a float64 tile once; each output then adds the rows
    in index order as ``acc + w * x`` (the C++ core's order and rounding: the same bits).
    """
    block = _NET_BLOCK
    starts = _block_starts(lens, block)
    nb = starts[-1]
    nch = min(nb, n_threads)
    m = w.shape[0]
    zero = np.zeros(1, like.dtype)[0]
    bad = 0
    for c in prange(nch):
        tile = np.empty((n, block))
        acc = np.empty(block)
        s = 0
        for b in range(c * nb // nch, (c + 1) * nb // nch):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * block
            le = min(block, lens[s] - j0)
            probe = zero
            for i in range(n):
                x = _view(ptrs[s * n + i], j0, le, like)
                row = tile[i]
                for j in range(le):
                    row[j] = np.float64(x[j])
                    probe += x[j] * zero
            if probe != zero:
                bad += 1
            for o in range(m):
                for j in range(le):
                    acc[j] = 0.0
                for i in range(n):
                    wi = w[o, i]
                    row = tile[i]
                    for j in range(le):
                        acc[j] = acc[j] + wi * row[j]
                out = _view(optrs[s], o * lens[s] + j0, le, like)
                for j in range(le):
                    out[j] = acc[j] / wsum[o]
    return bad > 0


def mix_rows(
    segments: Sequence[Rows],
    weights: NDArray[np.float64],
    outs: Sequence[FloatArray],
    n_threads: int = 1,
) -> bool:
    """``outs[s][o] = sum_i weights[o, i] x_i / sum_i weights[o, i]`` for every segment ``s``.

    As :func:`hierfed._kernels_numpy.mix_rows`; returns True when an input is non-finite.
    """
    n, ptrs, lens, dtype = _input_addresses(segments)
    w = np.asarray(weights)
    if w.dtype != np.float64 or w.ndim != 2 or w.shape[1] != n or w.shape[0] < 1:
        raise ValueError(f"weights must be a float64 (m, {n}) array")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError("weights must be finite and >= 0")
    m = w.shape[0]
    wsum = np.zeros(m)
    for i in range(n):  # row order, as the C++ core
        wsum = wsum + w[:, i]
    if not (wsum > 0).all():
        raise ValueError("every row of weights needs a positive weight")
    if len(outs) != len(segments):
        raise ValueError("need one output per segment")
    optrs = np.empty(len(outs), np.int64)
    for s, out in enumerate(outs):
        if not isinstance(out, np.ndarray) or out.dtype != dtype:
            raise TypeError(f"outs[{s}] must be a {dtype} array")
        if out.shape != (m, lens[s]) or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"outs[{s}] must be a writeable C-contiguous ({m}, {lens[s]}) array")
        optrs[s] = out.ctypes.data
    used = _set_threads(n_threads, n * m, lens)
    return bool(_mix_kernel(ptrs, optrs, lens, n, np.ascontiguousarray(w), wsum, outs[0], used))


# ============================================================================================
# Privacy kernels (issue 4): ChaCha20 keystream, noise, exact discrete Gaussian, L2 norms and
# clipping; the same streams and transforms as cpp/include/hierfed/{chacha20,noise,
# clipping}.hpp and hierfed._kernels_numpy (the definitions), bit for bit. Work is split in
# super-blocks (noise), chunks (discrete Gaussian) or rows (norms), whose results do not
# depend on which thread computes them.

from hierfed import _kernels_numpy as _ref  # noqa: E402  (constants of the definitions)

_U32 = np.uint32
_U64 = np.uint64
_M32 = np.uint64(0xFFFFFFFF)
_LOG_C_REV = tuple(reversed(_ref.LOG_C[:9]))
_SIN_C_REV = tuple(reversed(_ref.SIN_C[:7]))
_COS_C_REV = tuple(reversed(_ref.COS_C[:8]))
_LOG_C_TOP, _SIN_C_TOP, _COS_C_TOP = _ref.LOG_C[9], _ref.SIN_C[7], _ref.COS_C[8]
_LN2, _SQRT_HALF, _ANGLE = _ref.LN2, _ref.SQRT_HALF, _ref.ANGLE
_TWO_M53, _TWO_M24 = _ref.TWO_M53, _ref.TWO_M24
_MANT53 = np.uint64(_ref.MANT53)
_DG_CAP = np.uint64(_ref.DG_CAP)
_SB_WORDS = 256


@_jit_inline
def _qround(x: Any, a: int, b: int, c: int, d: int) -> None:
    """One quarter round on the 16 lanes (blocks) of rows a, b, c, d of the state."""
    for j in range(16):
        xa = np.uint32(x[a, j] + x[b, j])
        v = xa ^ x[d, j]
        xd = np.uint32((v << _U32(16)) | (v >> _U32(16)))
        xc = np.uint32(x[c, j] + xd)
        v = x[b, j] ^ xc
        xb = np.uint32((v << _U32(12)) | (v >> _U32(20)))
        xa = np.uint32(xa + xb)
        v = xd ^ xa
        xd = np.uint32((v << _U32(8)) | (v >> _U32(24)))
        xc = np.uint32(xc + xd)
        v = xb ^ xc
        x[a, j] = xa
        x[b, j] = np.uint32((v << _U32(7)) | (v >> _U32(25)))
        x[c, j] = xc
        x[d, j] = xd


@_jit
def _superblock(key: Any, nonce: Any, counter: int, x: Any, init: Any) -> None:
    """The 16 blocks from ``counter`` (mod 2^32) into ``x``, word-major: x[w, j]."""
    for j in range(16):
        init[0, j] = 0x61707865
        init[1, j] = 0x3320646E
        init[2, j] = 0x79622D32
        init[3, j] = 0x6B206574
        for i in range(8):
            init[4 + i, j] = key[i]
        init[12, j] = np.uint32((counter + j) & 0xFFFFFFFF)
        for i in range(3):
            init[13 + i, j] = nonce[i]
    for w in range(16):
        for j in range(16):
            x[w, j] = init[w, j]
    for _ in range(10):
        _qround(x, 0, 4, 8, 12)
        _qround(x, 1, 5, 9, 13)
        _qround(x, 2, 6, 10, 14)
        _qround(x, 3, 7, 11, 15)
        _qround(x, 0, 5, 10, 15)
        _qround(x, 1, 6, 11, 12)
        _qround(x, 2, 7, 8, 13)
        _qround(x, 3, 4, 9, 14)
    for w in range(16):
        for j in range(16):
            x[w, j] = np.uint32(x[w, j] + init[w, j])


@_jit_parallel
def _keystream_kernel(key: Any, nonce: Any, counter: int, out: Any, n_threads: int) -> None:
    n = out.size
    sbs = (n + _SB_WORDS - 1) // _SB_WORDS
    nch = max(1, min(sbs, n_threads))
    for c in prange(nch):
        x = np.empty((16, 16), np.uint32)
        init = np.empty((16, 16), np.uint32)
        for sb in range(c * sbs // nch, (c + 1) * sbs // nch):
            _superblock(key, nonce, counter + 16 * sb, x, init)
            base = sb * _SB_WORDS
            for i in range(min(_SB_WORDS, n - base)):
                out[base + i] = x[i % 16, i // 16]


@_jit_inline
def _log_unit(m: float) -> float:
    """ln(m 2^-53) for integers m in [1, 2^53], as noise.hpp."""
    fr, e = math.frexp(m)
    if fr > _SQRT_HALF:
        f = fr
    else:
        f = fr + fr
        e -= 1
    k = float(e - 53)
    s = (f - 1.0) / (f + 1.0)
    z = s * s
    p = _LOG_C_TOP
    for c in _LOG_C_REV:
        p = p * z + c
    t = s + s
    return k * _LN2 + (t + t * (z * p))


@_jit_inline
def _slot(x: Any, k: int, j: int) -> Any:
    return _U64(x[2 * k, j]) | (_U64(x[2 * k + 1, j]) << _U64(32))


@_jit_inline
def _box_muller(a: Any, b: Any) -> tuple[float, float]:
    r = math.sqrt(-2.0 * _log_unit(float((a >> _U64(11)) + _U64(1))))
    q = b >> _U64(61)
    mt = (b >> _U64(8)) & _MANT53
    odd = (q & _U64(1)) != _U64(0)
    if odd:
        mt = (_U64(1) << _U64(53)) - mt
    x = float(mt) * _ANGLE
    z = x * x
    ps = _SIN_C_TOP
    for c in _SIN_C_REV:
        ps = ps * z + c
    sn = x + x * (z * ps)
    pc = _COS_C_TOP
    for c in _COS_C_REV:
        pc = pc * z + c
    cs = 1.0 + z * pc
    c0 = sn if odd else cs
    s0 = cs if odd else sn
    quadrant = q >> _U64(1)
    swap = (quadrant & _U64(1)) != _U64(0)
    c1 = s0 if swap else c0
    s1 = c0 if swap else s0
    if quadrant == _U64(1) or quadrant == _U64(2):
        c1 = -c1
    if quadrant >= _U64(2):
        s1 = -s1
    return r * c1, r * s1


@_jit_inline
def _laplace(a: Any) -> float:
    e = -_log_unit(float(((a & _U64(0x7FFFFFFFFFFFFFFF)) >> _U64(10)) + _U64(1)))
    return -e if (a >> _U64(63)) != _U64(0) else e


@_jit
def _draws(x: Any, kind: int, f32: bool, z: Any) -> None:
    """The draws of one super-block (x word-major) into z, in output order."""
    if kind == 0 and f32:
        for w in range(16):
            for j in range(16):
                z[16 * w + j] = float(x[w, j] >> _U32(8)) * _TWO_M24
        return
    for j in range(16):
        if kind == 1:
            for p in range(4):
                z0, z1 = _box_muller(_slot(x, 2 * p, j), _slot(x, 2 * p + 1, j))
                z[16 * (2 * p) + j] = z0
                z[16 * (2 * p + 1) + j] = z1
        else:
            for k in range(8):
                a = _slot(x, k, j)
                if kind == 2:
                    z[16 * k + j] = _laplace(a)
                else:
                    z[16 * k + j] = float(a >> _U64(11)) * _TWO_M53


@_jit_parallel
def _noise_kernel(
    key: Any,
    nonce: Any,
    counter: int,
    out: Any,
    kind: int,
    loc: float,
    scale: float,
    accumulate: bool,
    n_threads: int,
) -> None:
    n = out.size
    f32 = out.itemsize == 4
    per = 256 if (kind == 0 and f32) else 128
    sbs = (n + per - 1) // per
    nch = max(1, min(sbs, n_threads))
    for c in prange(nch):
        x = np.empty((16, 16), np.uint32)
        init = np.empty((16, 16), np.uint32)
        z = np.empty(_SB_WORDS, np.float64)
        for sb in range(c * sbs // nch, (c + 1) * sbs // nch):
            _superblock(key, nonce, counter + 16 * sb, x, init)
            _draws(x, kind, f32, z)
            base = sb * per
            m = min(per, n - base)
            if accumulate:
                for i in range(m):
                    out[base + i] = np.float64(out[base + i]) + scale * z[i]
            else:
                for i in range(m):
                    out[base + i] = loc + scale * z[i]


# ---- exact discrete Gaussian ----------------------------------------------------------------
# st = [position in the super-block, blocks used]; buf holds the super-block word-major.


@_jit
def _next_word(key: Any, nonce: Any, buf: Any, init: Any, st: Any) -> Any:
    if st[0] == _SB_WORDS:
        if st[1] > (1 << 32) - 16:
            raise RuntimeError("discrete_gaussian: a chunk exhausted its 2^32 blocks")
        _superblock(key, nonce, st[1], buf, init)
        st[1] += 16
        st[0] = 0
    q = st[0]
    st[0] += 1
    return _U64(buf[q % 16, q // 16])


@_jit
def _bits(key: Any, nonce: Any, buf: Any, init: Any, st: Any, b: int) -> Any:
    """b <= 16 bits from the 32-bit reservoir st[2] (st[3] bits left), low bits first."""
    if st[3] < b:
        st[2] = np.int64(_next_word(key, nonce, buf, init, st))
        st[3] = 32
    r = np.uint64(st[2])
    v = r & ((_U64(1) << _U64(b)) - _U64(1))
    st[2] = np.int64(r >> _U64(b))
    st[3] -= b
    return v


@_jit
def _bit_length(v: Any) -> int:
    bits = 0
    while v != _U64(0):
        v >>= _U64(1)
        bits += 1
    return bits


@_jit
def _uniform_below(key: Any, nonce: Any, buf: Any, init: Any, st: Any, m: Any) -> Any:
    if m == _U64(1):
        return _U64(0)
    bits = _bit_length(m - _U64(1))
    while True:
        if bits <= 16:
            r = _bits(key, nonce, buf, init, st, bits)
        elif bits <= 32:
            r = _next_word(key, nonce, buf, init, st) & ((_U64(1) << _U64(bits)) - _U64(1))
        else:
            hi = _next_word(key, nonce, buf, init, st) & ((_U64(1) << _U64(bits - 32)) - _U64(1))
            r = (hi << _U64(32)) | _next_word(key, nonce, buf, init, st)
        if r < m:
            return r


@_jit
def _bernoulli(key: Any, nonce: Any, buf: Any, init: Any, st: Any, num: Any, den: Any) -> bool:
    if num == _U64(0):
        return False
    if num >= den:
        return True
    if den <= (_U64(1) << _U64(32)):
        return bool(_uniform_below(key, nonce, buf, init, st, den) < num)
    mask_hi = (_U64(1) << _U64(_bit_length(den - _U64(1)) - 32)) - _U64(1)
    den_hi = den >> _U64(32)
    num_hi = num >> _U64(32)
    while True:
        hi = _next_word(key, nonce, buf, init, st) & mask_hi
        if hi > den_hi:
            continue
        if hi < num_hi:
            return True
        if hi > num_hi and hi < den_hi:
            return False
        v = (hi << _U64(32)) | _next_word(key, nonce, buf, init, st)
        if v >= den:
            continue
        return bool(v < num)


@_jit
def _bernoulli_exp_le1(
    key: Any, nonce: Any, buf: Any, init: Any, st: Any, num: Any, den: Any
) -> bool:
    k = _U64(1)
    while True:
        if _uniform_below(key, nonce, buf, init, st, k) != _U64(0):
            break
        if not _bernoulli(key, nonce, buf, init, st, num, den):
            break
        k += _U64(1)
    return bool((k & _U64(1)) == _U64(1))


@_jit
def _square_divmod(a: Any, d: Any) -> tuple[Any, Any]:
    """``(min(a*a // d, 2^62), a*a % d)`` for a < 2^63, 1 <= d <= 2^62 (128-bit by halves)."""
    a1 = a >> _U64(32)
    a0 = a & _M32
    lo0 = a0 * a0
    mid = a1 * a0
    lo = lo0 + (mid << _U64(33))
    carry = _U64(1) if lo < lo0 else _U64(0)
    hi = a1 * a1 + (mid >> _U64(31)) + carry
    rem = _U64(0)
    q = _U64(0)
    saturated = False
    for i in range(127, -1, -1):
        word = hi if i >= 64 else lo
        bit = (word >> _U64(i % 64)) & _U64(1)
        rem = (rem << _U64(1)) | bit
        qbit = _U64(0)
        if rem >= d:
            rem -= d
            qbit = _U64(1)
        if not saturated:
            q = (q << _U64(1)) | qbit
            if q > _DG_CAP:
                saturated = True
    return (_DG_CAP if saturated else q), rem


@_jit
def _dg_one(key: Any, nonce: Any, buf: Any, init: Any, st: Any, prm: Any) -> Any:
    t, alpha, beta, denom, ymax = prm[0], prm[1], prm[2], prm[3], prm[4]
    one = _U64(1)
    vmax = ymax // t
    while True:
        u = _uniform_below(key, nonce, buf, init, st, t)
        if not _bernoulli_exp_le1(key, nonce, buf, init, st, u, t):
            continue
        v = _U64(0)
        too_far = False
        while _bernoulli_exp_le1(key, nonce, buf, init, st, one, one):
            v += one
            if v > vmax:
                too_far = True
                break
        if too_far:
            continue
        x = u + t * v
        negative = _bits(key, nonce, buf, init, st, 1) == one
        if negative and x == _U64(0):
            continue
        if x > ymax:
            continue
        xa = x * alpha
        a = xa - beta if xa >= beta else beta - xa
        g, r = _square_divmod(a, denom)
        ok = True
        i = _U64(0)
        while i < g:
            if not _bernoulli_exp_le1(key, nonce, buf, init, st, one, one):
                ok = False
                break
            i += one
        if not ok:
            continue
        if not _bernoulli_exp_le1(key, nonce, buf, init, st, r, denom):
            continue
        return -np.int64(x) if negative else np.int64(x)


@_jit_parallel
def _dg_kernel(key: Any, out: Any, prm: Any, chunk: int, n_threads: int) -> None:
    n = out.size
    chunks = (n + chunk - 1) // chunk
    for c in prange(chunks):
        nonce = np.zeros(3, np.uint32)
        nonce[0] = np.uint32(c & 0xFFFFFFFF)
        nonce[1] = np.uint32(c >> 32)
        buf = np.empty((16, 16), np.uint32)
        init = np.empty((16, 16), np.uint32)
        st = np.zeros(4, np.int64)  # position, blocks used, reservoir, bits in it
        st[0] = _SB_WORDS
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            out[i] = _dg_one(key, nonce, buf, init, st, prm)


# ---- L2 norms and clipping --------------------------------------------------------------


@_jit_inline
def _block_sq(x: Any, acc: Any) -> float:
    le = x.size
    for lane in range(32):
        acc[lane] = 0.0
    full = le - le % 32
    for j in range(0, full, 32):
        for lane in range(32):
            v = np.float64(x[j + lane])
            acc[lane] += v * v
    for lane in range(le - full):
        v = np.float64(x[full + lane])
        acc[lane] += v * v
    h = 16
    while h >= 1:
        for lane in range(h):
            acc[lane] = acc[lane] + acc[lane + h]
        h //= 2
    return float(acc[0])


@_jit_parallel
def _clip_kernel(
    ptrs: Any,
    optrs: Any,
    lens: Any,
    n: int,
    write: bool,
    max_norm: float,
    margin: float,
    sq: Any,
    like: Any,
    n_threads: int,
) -> None:
    """Per row: canonical sum of squares, then (if ``write``) the scaled row."""
    nseg = lens.size
    nch = max(1, min(n, n_threads))
    for c in prange(nch):
        acc = np.empty(32, np.float64)
        for i in range(c * n // nch, (c + 1) * n // nch):
            total = 0.0
            for s in range(nseg):
                seg = 0.0
                for j in range(0, lens[s], _ref.NORM_BLOCK):
                    le = min(_ref.NORM_BLOCK, lens[s] - j)
                    seg += _block_sq(_view(ptrs[s * n + i], j, le, like), acc)
                total += seg
            sq[i] = total
            if not write or not (total >= _ref.TINY_SQUARES) or not math.isfinite(total):
                continue
            bound = math.sqrt(total) * (1.0 + margin)
            f = max_norm / bound if bound > max_norm else 1.0
            if f < _ref.TINY_FACTOR:
                continue
            for s in range(nseg):
                x = _view(ptrs[s * n + i], 0, lens[s], like)
                o = _view(optrs[s * n + i], 0, lens[s], like)
                for j in range(lens[s]):
                    o[j] = np.float64(x[j]) * f


def _rows_addresses(
    segments: Sequence[Rows], dtype: np.dtype[Any], writable: bool, what: str
) -> tuple[int, IntArray, IntArray]:
    """``n``, the addresses of every row (``[s * n + i]``) and the segment lengths, checked."""
    n = len(segments[0])
    ptrs = np.empty(len(segments) * n, np.int64)
    lens = np.empty(len(segments), np.int64)
    for s, rows in enumerate(segments):
        if len(rows) != n:
            raise ValueError(f"{what}[{s}] has {len(rows)} rows, {what}[0] has {n}")
        length = np.asarray(rows[0]).size
        lens[s] = length
        for i, row in enumerate(rows):
            if not isinstance(row, np.ndarray) or row.dtype != dtype:
                raise ValueError(f"{what}[{s}][{i}] must be a {dtype} numpy array")
            if writable and not row.flags.writeable:
                raise ValueError(f"{what}[{s}][{i}] must be writeable")
            ptrs[s * n + i] = _checked_address(row, dtype, length, f"{what}[{s}][{i}]")
    return n, ptrs, lens


def _check_words(arr: Any, count: int, what: str) -> None:
    if not (isinstance(arr, np.ndarray) and arr.dtype == np.uint32 and arr.shape == (count,)):
        raise ValueError(f"{what} must be a uint32 array of {count} words")


def _check_out(out: Any, dtypes: tuple[Any, ...]) -> None:
    if not (
        isinstance(out, np.ndarray)
        and out.dtype in dtypes
        and out.ndim == 1
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError(f"out must be a writeable 1-D contiguous array of {dtypes}")


def _check_blocks(counter: int, blocks: int) -> None:
    if not 0 <= counter < 1 << 32:
        raise ValueError("counter must be in [0, 2^32)")
    if counter + blocks > 1 << 32:
        raise ValueError("the request runs past block 2^32 - 1 of the keystream")


def _noise_threads(n_threads: int, work: int) -> int:
    used = max(1, min(int(n_threads), int(_config.NUMBA_NUM_THREADS)))
    if work < 1 << 15:
        used = 1
    numba.set_num_threads(used)
    return used


def chacha20_keystream(
    key: NDArray[np.uint32],
    nonce: NDArray[np.uint32],
    counter: int,
    out: NDArray[np.uint32],
    n_threads: int = 1,
) -> None:
    """Keystream words from block ``counter`` in RFC order into ``out``."""
    _check_words(key, 8, "key")
    _check_words(nonce, 3, "nonce")
    _check_out(out, (np.dtype(np.uint32),))
    _check_blocks(int(counter), -(-out.size // 16))
    if out.size:
        used = _noise_threads(n_threads, out.size)
        _keystream_kernel(key, nonce, int(counter), out, used)


def chacha20_noise(
    key: NDArray[np.uint32],
    nonce: NDArray[np.uint32],
    counter: int,
    out: FloatArray,
    kind: int,
    loc: float,
    scale: float,
    accumulate: bool,
    n_threads: int = 1,
) -> None:
    """Uniform (0), normal (1) or Laplace (2) draws: ``out = loc + scale * draw`` (or +=)."""
    _check_words(key, 8, "key")
    _check_words(nonce, 3, "nonce")
    _check_out(out, (np.dtype(np.float32), np.dtype(np.float64)))
    if kind not in (0, 1, 2):
        raise ValueError("kind must be 0 (uniform), 1 (normal) or 2 (Laplace)")
    per = 256 if (kind == 0 and out.dtype == np.float32) else 128
    _check_blocks(int(counter), 16 * -(-out.size // per))
    if out.size:
        used = _noise_threads(n_threads, out.size)
        _noise_kernel(
            key,
            nonce,
            int(counter),
            out,
            int(kind),
            float(loc),
            float(scale),
            bool(accumulate),
            used,
        )


def discrete_gaussian(
    key: NDArray[np.uint32],
    out: NDArray[np.int64],
    t: int,
    alpha: int,
    beta: int,
    denom: int,
    ymax: int,
    chunk: int,
    n_threads: int = 1,
) -> None:
    """Exact discrete Gaussian samples (CKS 2020); chunk ``c`` uses nonce ``c``."""
    _check_words(key, 8, "key")
    _check_out(out, (np.dtype(np.int64),))
    limit = 1 << 62
    if not (
        1 <= t <= 1 << 32
        and 1 <= alpha <= limit
        and 0 <= beta <= limit
        and 1 <= denom <= limit
        and 0 <= ymax <= limit
        and chunk >= 1
    ):
        raise ValueError("discrete_gaussian parameters out of range")
    if out.size:
        prm = np.array([t, alpha, beta, denom, ymax], np.uint64)
        chunks = -(-out.size // chunk)
        used = max(1, min(int(n_threads), int(_config.NUMBA_NUM_THREADS), chunks))
        numba.set_num_threads(used)
        _dg_kernel(key, out, prm, int(chunk), used)


def _clip(
    segments: Sequence[Rows],
    outs: Sequence[Sequence[FloatArray]] | None,
    max_norm: float,
    margin: float,
    sq: NDArray[np.float64],
    n_threads: int,
) -> None:
    dtype = np.dtype(np.asarray(segments[0][0]).dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"rows must be float32 or float64, got {dtype}")
    n, ptrs, lens = _rows_addresses(segments, dtype, False, "segments")
    if not (isinstance(sq, np.ndarray) and sq.dtype == np.float64 and sq.shape == (n,)):
        raise ValueError("sq must be a float64 array with one entry per update")
    optrs = ptrs
    if outs is not None:
        if len(outs) != len(segments):
            raise ValueError("outs must hold one list per segment")
        n_out, optrs, olens = _rows_addresses(outs, dtype, True, "outs")
        if n_out != n or not np.array_equal(olens, lens):
            raise ValueError("outs must match the shapes of the segments")
    used = max(1, min(int(n_threads), int(_config.NUMBA_NUM_THREADS), n))
    if n * int(lens.sum()) < _MIN_PARALLEL_WORK:
        used = 1
    numba.set_num_threads(used)
    like = np.empty(0, dtype)
    _clip_kernel(
        ptrs, optrs, lens, n, outs is not None, float(max_norm), float(margin), sq, like, used
    )


def l2_sq_norms(segments: Sequence[Rows], sq: NDArray[np.float64], n_threads: int = 1) -> None:
    """Canonical float64 sum of squares of every update into ``sq``."""
    _clip(segments, None, 0.0, 0.0, sq, n_threads)


def clip_by_l2(
    segments: Sequence[Rows],
    outs: Sequence[Sequence[FloatArray]],
    max_norm: float,
    margin: float,
    sq: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """Sums of squares into ``sq``; rows whose factor is known are scaled into ``outs``."""
    _clip(segments, outs, max_norm, margin, sq, n_threads)


# ---- secure-aggregation masks (cpp/include/hierfed/masks.hpp) --------------------------------

_MASK_NONCE = np.zeros(3, np.uint32)


@_jit_parallel
def _masks_kernel(keys: Any, negate: Any, out: Any, n_threads: int) -> None:
    n = out.size
    m = negate.size
    sbs = (n + _SB_WORDS - 1) // _SB_WORDS
    nch = max(1, min(sbs, n_threads))
    for c in prange(nch):
        x = np.empty((16, 16), np.uint32)
        init = np.empty((16, 16), np.uint32)
        acc = np.empty((16, 16), np.uint32)
        nonce = np.zeros(3, np.uint32)
        for sb in range(c * sbs // nch, (c + 1) * sbs // nch):
            acc[:, :] = 0
            for j in range(m):
                _superblock(keys[8 * j : 8 * j + 8], nonce, 16 * sb, x, init)
                if negate[j]:
                    for w in range(16):
                        for b in range(16):
                            acc[w, b] = np.uint32(acc[w, b] - x[w, b])
                else:
                    for w in range(16):
                        for b in range(16):
                            acc[w, b] = np.uint32(acc[w, b] + x[w, b])
            base = sb * _SB_WORDS
            for i in range(min(_SB_WORDS, n - base)):
                out[base + i] = np.uint32(out[base + i] + acc[i % 16, i // 16])


def apply_masks(
    keys: NDArray[np.uint32],
    negate: NDArray[np.uint8],
    out: NDArray[np.uint32],
    n_threads: int = 1,
) -> None:
    """``out += sum_j (-1)^negate[j] keystream_j`` mod 2^32 (see the numpy reference)."""
    if not (isinstance(negate, np.ndarray) and negate.dtype == np.uint8 and negate.ndim == 1):
        raise ValueError("negate must be a 1-D uint8 array")
    _check_words(keys, 8 * negate.size, "keys")
    _check_out(out, (np.dtype(np.uint32),))
    if -(-out.size // 16) > 1 << 32:
        raise ValueError("out is longer than one keystream (2^36 words)")
    if out.size and negate.size:
        used = _noise_threads(n_threads, out.size * negate.size)
        _masks_kernel(np.ascontiguousarray(keys), negate, out, used)
