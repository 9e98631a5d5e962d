"""Numba twins of the distance kernels: pairwise squared distances, distances to a point.

Twins: ``cpp/include/hierfed/distances.hpp`` (bound in ``cpp/src/bind_distances.cpp``) and
:mod:`hierfed._kernels.numpy.distances` (the definitions, matched to rounding). The distances
serve the distance-based rules (Krum, Bulyan's selection). The C++ core follows the same
summation recipe, operation for operation, so the two agree bit for bit:

- a segment is cut into chunks of ``chunk`` coordinates (the last may be shorter), numbered
  segment-major; ``U = min(n_units, chunks)`` units take consecutive chunks,
  ``[u*K//U, (u+1)*K//U)``;
- a chunk's value for a pair is summed in 16 float64 lanes, coordinate ``c`` going to lane
  ``(c - chunk start) % 16``, each term ``d*d`` added by one fused multiply-add
  (``t = fma(d, d, t)``, one rounding): float64 rows add to their lane directly; float32 rows
  sum in float32 lanes over runs of 128 coordinates (``d`` rounded to float32) and add each
  run's lanes to the float64 lanes;
- the lanes fold as a tree (``A[l] += A[l + w]`` for ``w = 8, 4, 2, 1``), chunk values add
  up in order within a unit, and unit partials in unit order.

Within a lane the coordinates are always taken in order, so the code below may walk the
lanes in any order: it takes a run lane by lane, the eight steps of a lane in a row, which
LLVM vectorises across lanes with no reassociation. Pairs go in tiles of four rows against
four (sixteen float32 sums live per lane), as the C++ AVX-512 build does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numba.core import types
from numba.extending import intrinsic, overload
from numpy.typing import NDArray

from .._types import IntArray, Outs, Segments
from ..numpy import distances as _ref
from ._shared import (
    block_starts,
    checked_address,
    chunk,
    input_addresses,
    jit,
    jit_inline,
    jit_parallel,
    use_threads,
    view,
)
from .coordinatewise import mean

__all__ = ["monna_matrix", "pairwise_sq_distances", "sq_distances_to"]

_LANES = 16  # float64 lanes of a chunk sum
_RUN = 128  # coordinates per float32 run (8 steps of 16 lanes)
_TILE = 4  # rows per side of a tile of pairs
_CACHED_ROWS = 128  # second rows of a chunk kept in L2 (128 x 4 KiB), as the C++ kernel


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


@jit_inline
def _fold_lanes(lanes: Any) -> float:
    """The lanes' tree sum: ``A[l] += A[l + w]`` for ``w = 8, 4, 2, 1``, in registers (folding
    in place made each level wait on the stores of the one before: half the kernel's time)."""
    h0 = lanes[0] + lanes[8]
    h1 = lanes[1] + lanes[9]
    h2 = lanes[2] + lanes[10]
    h3 = lanes[3] + lanes[11]
    h4 = lanes[4] + lanes[12]
    h5 = lanes[5] + lanes[13]
    h6 = lanes[6] + lanes[14]
    h7 = lanes[7] + lanes[15]
    q0, q1, q2, q3 = h0 + h4, h1 + h5, h2 + h6, h3 + h7
    return float((q0 + q2) + (q1 + q3))


@jit_inline
def _fold_tile(acc: Any) -> None:
    """Each pair's lanes of a tile folded as :func:`_fold_lanes` into its first lane, one
    level of the tree for all sixteen pairs at a time (each level's loads then find the
    previous level's stores done: pair by pair, the fold waited on them)."""
    w = _LANES // 2
    while w > 0:
        for k in range(0, _TILE * _TILE * _LANES, _LANES):
            for q in range(w):
                acc[k + q] = acc[k + q] + acc[k + q + w]
        w //= 2


def _fma(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once (numba: LLVM's ``fma``, one instruction where the CPU has it)."""
    raise NotImplementedError("compiled only")


def _fused_typing(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """LLVM's ``fma`` of three floats of one type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


_fused: Any = intrinsic(_fused_typing)


def _fma_typing(a: Any, b: Any, c: Any) -> Any:
    """Numba's :func:`_fma`."""

    def fused(a: Any, b: Any, c: Any) -> Any:
        return _fused(a, b, c)

    return fused


overload(_fma, inline="always")(_fma_typing)


@jit
def _tile_runs(
    a0: Any, a1: Any, a2: Any, a3: Any, b0: Any, b1: Any, b2: Any, b3: Any, full: int, acc: Any
) -> None:
    """Add the squared differences of rows ``a0..a3`` against ``b0..b3`` to their lanes.

    The first ``full`` coordinates of the chunk, a multiple of 128 (the rest goes to
    :func:`_pair_tail`). ``acc`` holds the 16 float64 lanes of pair ``(ar, bq)`` at
    ``(4 * r + q) * 16`` (a 1-D array: LLVM does not vectorise the lane loop over a 2-D one).
    Per lane the coordinates go in order: a run of 128 is eight steps, each lane's steps in a
    row, lanes vectorised.
    """
    zero = np.zeros(1, a0.dtype)[0]
    for r in range(full // _RUN):  # not range(0, full, _RUN): LLVM then gathers the loads
        b = r * _RUN
        for q in range(_LANES):
            t00 = _run_start(acc[q], zero)
            t01 = _run_start(acc[16 + q], zero)
            t02 = _run_start(acc[32 + q], zero)
            t03 = _run_start(acc[48 + q], zero)
            t10 = _run_start(acc[64 + q], zero)
            t11 = _run_start(acc[80 + q], zero)
            t12 = _run_start(acc[96 + q], zero)
            t13 = _run_start(acc[112 + q], zero)
            t20 = _run_start(acc[128 + q], zero)
            t21 = _run_start(acc[144 + q], zero)
            t22 = _run_start(acc[160 + q], zero)
            t23 = _run_start(acc[176 + q], zero)
            t30 = _run_start(acc[192 + q], zero)
            t31 = _run_start(acc[208 + q], zero)
            t32 = _run_start(acc[224 + q], zero)
            t33 = _run_start(acc[240 + q], zero)
            for st in range(_RUN // _LANES):
                c = b + st * _LANES + q
                x0, x1, x2, x3 = a0[c], a1[c], a2[c], a3[c]
                # the 4 x 4 tile written out on purpose: numba keeps the sixteen sums in
                # registers only as named scalars (arrays or loops over them spill to memory)
                y = b0[c]
                t00 = _fma(x0 - y, x0 - y, t00)
                t10 = _fma(x1 - y, x1 - y, t10)
                t20 = _fma(x2 - y, x2 - y, t20)
                t30 = _fma(x3 - y, x3 - y, t30)
                y = b1[c]
                t01 = _fma(x0 - y, x0 - y, t01)
                t11 = _fma(x1 - y, x1 - y, t11)
                t21 = _fma(x2 - y, x2 - y, t21)
                t31 = _fma(x3 - y, x3 - y, t31)
                y = b2[c]
                t02 = _fma(x0 - y, x0 - y, t02)
                t12 = _fma(x1 - y, x1 - y, t12)
                t22 = _fma(x2 - y, x2 - y, t22)
                t32 = _fma(x3 - y, x3 - y, t32)
                y = b3[c]
                t03 = _fma(x0 - y, x0 - y, t03)
                t13 = _fma(x1 - y, x1 - y, t13)
                t23 = _fma(x2 - y, x2 - y, t23)
                t33 = _fma(x3 - y, x3 - y, t33)
            acc[q] = _run_end(acc[q], t00)
            acc[16 + q] = _run_end(acc[16 + q], t01)
            acc[32 + q] = _run_end(acc[32 + q], t02)
            acc[48 + q] = _run_end(acc[48 + q], t03)
            acc[64 + q] = _run_end(acc[64 + q], t10)
            acc[80 + q] = _run_end(acc[80 + q], t11)
            acc[96 + q] = _run_end(acc[96 + q], t12)
            acc[112 + q] = _run_end(acc[112 + q], t13)
            acc[128 + q] = _run_end(acc[128 + q], t20)
            acc[144 + q] = _run_end(acc[144 + q], t21)
            acc[160 + q] = _run_end(acc[160 + q], t22)
            acc[176 + q] = _run_end(acc[176 + q], t23)
            acc[192 + q] = _run_end(acc[192 + q], t30)
            acc[208 + q] = _run_end(acc[208 + q], t31)
            acc[224 + q] = _run_end(acc[224 + q], t32)
            acc[240 + q] = _run_end(acc[240 + q], t33)


@jit
def _pair_tail(xi: Any, xj: Any, le: int, lanes: Any) -> None:
    """One pair's last, shorter run (``le`` coordinates) into ``lanes``, each lane in order:
    the C++ kernel's zero-padded run, whose padding adds exactly nothing."""
    zero = np.zeros(1, xi.dtype)[0]
    for q in range(_LANES):
        t = _run_start(lanes[q], zero)
        for c in range(q, le, _LANES):
            d = xi[c] - xj[c]
            t = _fma(d, d, t)
        lanes[q] = _run_end(lanes[q], t)


@jit_inline
def _row(ptrs: Any, base: int, n: int, i: int, j0: int, le: int, like: Any) -> Any:
    """Row ``min(i, n - 1)``'s chunk: tiles past the last row read copies of it."""
    return view(ptrs[base + min(i, n - 1)], j0, le, like)


@jit
def _pairs_chunk(
    ptrs: Any,
    base: int,
    n: int,
    j0: int,
    le: int,
    i0: int,
    i1: int,
    acc: Any,
    part: Any,
    like: Any,
) -> None:
    """Add the values of one chunk (``le`` coordinates at ``j0``) of the pairs ``(i, j)``,
    ``i < j``, ``i0 <= i < i1``, to ``part`` (row-major over the upper triangle).

    Rows are ``ptrs[base:base + n]``. The second rows go in blocks of ``_CACHED_ROWS`` from
    ``i0`` (a block of the chunk stays in L2 while the group's first rows pass it); in a block,
    tiles of rows ``I..I+3`` against ``J..J+3`` at multiples of 4 from the block's start; pairs
    with ``j <= i``, past the block or past the last row are computed and dropped.
    """
    full = le // _RUN * _RUN
    last = min(i1, n)
    for block in range(i0, n, _CACHED_ROWS):
        end = min(n, block + _CACHED_ROWS)
        for big_i in range(i0, min(last, end), _TILE):
            a0 = _row(ptrs, base, n, big_i, j0, le, like)
            a1 = _row(ptrs, base, n, big_i + 1, j0, le, like)
            a2 = _row(ptrs, base, n, big_i + 2, j0, le, like)
            a3 = _row(ptrs, base, n, big_i + 3, j0, le, like)
            for big_j in range(block + max(0, big_i - block) // _TILE * _TILE, end, _TILE):
                b0 = _row(ptrs, base, n, big_j, j0, le, like)
                b1 = _row(ptrs, base, n, big_j + 1, j0, le, like)
                b2 = _row(ptrs, base, n, big_j + 2, j0, le, like)
                b3 = _row(ptrs, base, n, big_j + 3, j0, le, like)
                acc[:] = 0.0
                _tile_runs(a0, a1, a2, a3, b0, b1, b2, b3, full, acc)
                if full < le:
                    for r in range(_TILE):
                        tail_i = _row(ptrs, base, n, big_i + r, j0 + full, le - full, like)
                        for q in range(_TILE):
                            tail_j = _row(ptrs, base, n, big_j + q, j0 + full, le - full, like)
                            k = (_TILE * r + q) * _LANES
                            _pair_tail(tail_i, tail_j, le - full, acc[k : k + _LANES])
                _fold_tile(acc)
                for r in range(_TILE):
                    i = big_i + r
                    for q in range(_TILE):
                        j = big_j + q
                        if i < last and i < j < end:
                            p = i * n - i * (i + 1) // 2 + j - i - 1
                            part[p] = part[p] + acc[(_TILE * r + q) * _LANES]


@jit_parallel
def _pairwise_kernel(
    ptrs: Any,
    lens: Any,
    n: int,
    chunk: int,
    bounds: Any,
    partial: Any,
    out: Any,
    like: Any,
    n_threads: int,
) -> None:
    """Squared distances of every pair of rows, summed by the module's recipe, into ``out``.

    ``partial`` is a zeroed (units, n*(n-1)/2) array, ``units = min(n_units, chunks)`` (or
    one row when there is no chunk). Work items are (unit, row group ``bounds[g]`` to
    ``bounds[g + 1]``), run in parallel: each adds its unit's chunk values of its pairs in
    order (a chunk of every row stays in cache) into its unit's row of partials; the partials
    then add up in unit order, so the result does not depend on the number of threads.
    """
    starts = block_starts(lens, chunk)
    nk = starts[-1]
    units = min(partial.shape[0], nk)
    groups = bounds.size - 1
    for w in prange(units * groups):
        u = w // groups
        g = w % groups
        acc = np.empty(_TILE * _TILE * _LANES)
        part = partial[u]
        s = 0
        for b in range(u * nk // units, (u + 1) * nk // units):
            while b >= starts[s + 1]:
                s += 1
            j0 = (b - starts[s]) * chunk
            le = min(chunk, lens[s] - j0)
            _pairs_chunk(ptrs, s * n, n, j0, le, bounds[g], bounds[g + 1], acc, part, like)
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


@jit
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


@jit_parallel
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
        for i in chunk(c, n, nch):
            total = 0.0
            for s in range(lens.size):
                x = view(ptrs[s * n + i], 0, lens[s], like)
                y = view(pptrs[s], 0, lens[s], like)
                for q in range(_LANES):
                    acc[q] = 0.0
                _lanes_to(x, y, lens[s], acc)
                total = total + _fold_lanes(acc)
            out[i] = total


def _rows_and_out(
    segments: Segments, out: Any, square: bool
) -> tuple[int, IntArray, IntArray, np.dtype[Any]] | None:
    """The checked rows (as :func:`input_addresses`) once ``out`` is checked: a writeable
    C-contiguous float64 array of shape ``(n, n)`` (``square``) or ``(n,)``. None when there
    is nothing to sum (no segment: ``out`` zeroed; no row)."""
    found = input_addresses(segments) if segments else None
    n = 0 if found is None else found[0]
    shape = np.shape(out) if found is None else (n, n) if square else (n,)
    if not isinstance(out, np.ndarray) or out.dtype != np.float64:
        raise TypeError("out must be a float64 array")
    if out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous array of shape {shape}")
    if found is None:
        out[...] = 0.0
    return found if n else None


def pairwise_sq_distances(
    segments: Segments, out: NDArray[np.float64], chunk: int, n_units: int, n_threads: int = 1
) -> None:
    """``out[i, j] = sum_c (x_i[c] - x_j[c])**2`` over every segment, as the C++ kernel.

    The value is summed by the fixed recipe of this module's docstring (chunks of
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
    found = _rows_and_out(segments, out, square=True)
    if found is None:
        return
    n, ptrs, lens, dtype = found
    n_chunks = int(((lens + chunk - 1) // chunk).sum())
    units = max(1, min(n_units, n_chunks))
    partial = np.zeros((units, n * (n - 1) // 2))
    used = use_threads(n_threads, n * int(lens.sum()))
    bounds = row_groups(n, -(-4 * used // units))
    _pairwise_kernel(ptrs, lens, n, chunk, bounds, partial, out, np.empty(0, dtype), used)


def row_groups(n: int, groups: int) -> IntArray:
    """Bounds of about ``groups`` row groups (at multiples of the tile) of about equal pairs;
    how the pairs are grouped changes no bit of the result, only the threads' shares."""
    blocks = -(-n // _TILE)
    groups = max(1, min(groups, blocks))
    total = blocks * (blocks + 1) // 2
    bounds = [0]
    done = 0
    for b in range(blocks):
        done += blocks - b
        if done * groups >= total * len(bounds) and len(bounds) < groups and (b + 1) * _TILE < n:
            bounds.append((b + 1) * _TILE)
    bounds.append(n)
    return np.array(bounds, np.int64)


def sq_distances_to(
    segments: Segments, point: Outs, out: NDArray[np.float64], n_threads: int = 1
) -> None:
    """``out[i] = sum_c (x_i[c] - point[c])**2`` over every segment, as the C++ kernel.

    ``point[s]`` is segment ``s`` of the point, in the rows' dtype. Per row and segment the
    differences are taken in float64 and summed in 16 lanes folded as a tree, the segments
    in order; each row is summed by one thread, so the result does not depend on
    ``n_threads``.
    """
    if len(point) != len(segments):
        raise ValueError(f"{len(segments)} segments but {len(point)} point segments")
    found = _rows_and_out(segments, out, square=False)
    if found is None:
        return
    n, ptrs, lens, dtype = found
    pptrs = np.empty(len(point), np.int64)
    for s, part in enumerate(point):
        pptrs[s] = checked_address(part, dtype, int(lens[s]), f"point[{s}]")
    used = use_threads(n_threads, n * int(lens.sum()))
    _distances_to_kernel(ptrs, pptrs, lens, n, out, np.empty(0, dtype), used)


def monna_matrix(x: Any, f: Any, trusted: Any, n_threads: int = 1) -> Any:
    """The reference's ``monna_matrix`` on this backend's kernels."""
    return _ref.monna_matrix_with(sq_distances_to, mean, x, f, trusted, n_threads)
