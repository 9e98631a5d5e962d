"""Numba twins of the distance kernels: pairwise squared distances, distances to a point.

Twins: ``cpp/include/hierfed/distances.hpp`` (bound in ``cpp/src/bind_distances.cpp``) and
:mod:`hierfed._kernels.numpy.distances` (the definitions, matched to rounding). The distances
serve the distance-based rules (Krum, Bulyan's selection). The C++ core follows the same
summation recipe, operation for operation, so the two agree bit for bit:

- a segment is cut into chunks of ``chunk`` coordinates (the last may be shorter), numbered
  segment-major; ``U = min(n_units, chunks)`` units take consecutive chunks,
  ``[u*K//U, (u+1)*K//U)``;
- a chunk's value for a pair is summed in 16 float64 lanes, coordinate ``c`` going to lane
  ``(c - chunk start) % 16``: float64 rows add ``d*d`` to their lane directly; float32 rows
  sum ``d*d`` in float32 lanes over runs of 128 coordinates (``d`` and ``d*d`` rounded to
  float32, no fused multiply-add) and add each run's lanes to the float64 lanes;
- the lanes fold as a tree (``A[l] += A[l + w]`` for ``w = 8, 4, 2, 1``), chunk values add
  up in order within a unit, and unit partials in unit order.

Within a lane the coordinates are always taken in order, so the code below may walk the
lanes in any order: it takes a run lane by lane, the eight steps of a lane in a row, which
LLVM vectorises across lanes with no reassociation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numba.core import types
from numba.extending import overload
from numpy.typing import NDArray

from .._types import IntArray, Outs, Segments
from ._shared import (
    block_starts,
    checked_address,
    input_addresses,
    jit,
    jit_inline,
    jit_parallel,
    use_threads,
    view,
)

__all__ = ["pairwise_sq_distances", "sq_distances_to"]

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


@jit_inline
def _fold_lanes(lanes: Any) -> float:
    """The lanes' tree sum: ``lanes[l] += lanes[l + w]`` for ``w = 8, 4, 2, 1`` (in place)."""
    w = _LANES // 2
    while w > 0:
        for q in range(w):
            lanes[q] = lanes[q] + lanes[q + w]
        w //= 2
    return float(lanes[0])


@jit
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


@jit
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


@jit
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
        xi = view(ptrs[base + i], j0, le, like)
        j = i + 1
        while j + _PAIR_BLOCK <= n:
            x0 = view(ptrs[base + j], j0, le, like)
            x1 = view(ptrs[base + j + 1], j0, le, like)
            x2 = view(ptrs[base + j + 2], j0, le, like)
            x3 = view(ptrs[base + j + 3], j0, le, like)
            for q in range(_PAIR_BLOCK * _LANES):
                acc[q] = 0.0
            _pair_lanes4(xi, x0, x1, x2, x3, full, acc)
            for q in range(_PAIR_BLOCK):
                lanes = acc[q * _LANES : (q + 1) * _LANES]
                if full < le:  # the last, shorter run (full is a multiple of 16: same lanes)
                    tail_i = view(ptrs[base + i], j0 + full, le - full, like)
                    tail_q = view(ptrs[base + j + q], j0 + full, le - full, like)
                    _pair_lanes1(tail_i, tail_q, le - full, lanes)
                part[p + q] = part[p + q] + _fold_lanes(lanes)
            p += _PAIR_BLOCK
            j += _PAIR_BLOCK
        while j < n:
            xj = view(ptrs[base + j], j0, le, like)
            lanes = acc[:_LANES]
            for q in range(_LANES):
                lanes[q] = 0.0
            _pair_lanes1(xi, xj, le, lanes)
            part[p] = part[p] + _fold_lanes(lanes)
            p += 1
            j += 1


@jit_parallel
def _pairwise_kernel(
    ptrs: Any, lens: Any, n: int, chunk: int, partial: Any, out: Any, like: Any, n_threads: int
) -> None:
    """Squared distances of every pair of rows, summed by the module's recipe, into ``out``.

    ``partial`` is a zeroed (units, n*(n-1)/2) array, ``units = min(n_units, chunks)`` (or
    one row when there is no chunk). Units run in parallel, each over its chunks with all
    pairs per chunk (a chunk of every row stays in cache), into its row of partials; the
    partials then add up in unit order, so the result does not depend on the number of
    threads.
    """
    starts = block_starts(lens, chunk)
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
        for i in range(c * n // nch, (c + 1) * n // nch):
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
    partial = np.zeros((max(1, min(n_units, n_chunks)), n * (n - 1) // 2))
    used = use_threads(n_threads, n * int(lens.sum()))
    _pairwise_kernel(ptrs, lens, n, chunk, partial, out, np.empty(0, dtype), used)


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
