"""Numba twins of the mixing kernels: many weighted means of the same rows in one pass, and
bucket means (each row read once).

Twins: ``cpp/include/hierfed/mixing.hpp`` (bound in ``cpp/src/bind_mixing.cpp``) and
:mod:`hierfed._kernels.numpy.mixing` (the definition).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._types import IntArray, Outs, Segments
from ..numpy import mixing as _ref
from ._shared import blocks, chunk, input_addresses, jit_parallel, locate, use_threads, view

__all__ = ["bucket_matrix", "bucket_means", "mix_rows"]

_BLOCK = 128  # coordinates per tile of every row, widened to float64 (as in mixing.hpp)
_BUCKET_BLOCK = 1024  # coordinates per tile of float64 bucket sums (as bucket_range)


@jit_parallel
def _mix_kernel(
    ptrs: Any, optrs: Any, lens: Any, n: int, w: Any, wsum: Any, like: Any, n_threads: int
) -> bool:
    """``out[o] = sum_i w[o, i] x_i / wsum[o]`` per block of coordinates.

    A block of every row is widened into a float64 tile once; each output then adds the rows
    in index order as ``acc + w * x`` (the C++ core's order and rounding: the same bits).
    """
    block = _BLOCK
    starts, nb, nch = blocks(lens, block, n_threads)
    m = w.shape[0]
    zero = np.zeros(1, like.dtype)[0]
    bad = 0
    for c in prange(nch):
        tile = np.empty((n, block))
        acc = np.empty(block)
        for b in chunk(c, nb, nch):
            s, j0, le = locate(b, starts, lens, block)
            probe = zero
            for i in range(n):
                x = view(ptrs[s * n + i], j0, le, like)
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
                out = view(optrs[s], o * lens[s] + j0, le, like)
                for j in range(le):
                    out[j] = acc[j] / wsum[o]
    return bad > 0


def _output_addresses(
    outs: Outs, segments: Segments, m: int, lens: IntArray, dtype: np.dtype[Any]
) -> IntArray:
    """The address of each segment's output, a writeable C-contiguous ``(m, length)`` array
    of the inputs' dtype."""
    if len(outs) != len(segments):
        raise ValueError("need one output per segment")
    optrs = np.empty(len(outs), np.int64)
    for s, out in enumerate(outs):
        if not isinstance(out, np.ndarray) or out.dtype != dtype:
            raise TypeError(f"outs[{s}] must be a {dtype} array")
        if out.shape != (m, lens[s]) or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"outs[{s}] must be a writeable C-contiguous ({m}, {lens[s]}) array")
        optrs[s] = out.ctypes.data
    return optrs


def mix_rows(
    segments: Segments, weights: NDArray[np.float64], outs: Outs, n_threads: int = 1
) -> bool:
    """``outs[s][o] = sum_i weights[o, i] x_i / sum_i weights[o, i]`` for every segment ``s``.

    As :func:`hierfed._kernels.numpy.mixing.mix_rows`; returns True when an input is non-finite.
    """
    n, ptrs, lens, dtype = input_addresses(segments)
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
    optrs = _output_addresses(outs, segments, m, lens, dtype)
    used = use_threads(n_threads, n * m * int(lens.sum()))
    return bool(_mix_kernel(ptrs, optrs, lens, n, np.ascontiguousarray(w), wsum, outs[0], used))


@jit_parallel
def _bucket_kernel(
    ptrs: Any, optrs: Any, lens: Any, n: int, order: Any, s: int, like: Any, n_threads: int
) -> bool:
    """Per block of coordinates, every bucket's rows added in ``order`` to float64 sums from
    0, divided by their count (``bucket_range`` of mixing.hpp: the same bits)."""
    block = _BUCKET_BLOCK
    starts, nb, nch = blocks(lens, block, n_threads)
    m = (n + s - 1) // s
    bad = 0
    for c in prange(nch):
        acc = np.empty(block)
        for blk in chunk(c, nb, nch):
            g, j0, le = locate(blk, starts, lens, block)
            for b in range(m):
                p = b * s
                e = min(n, p + s)
                for j in range(le):
                    acc[j] = 0.0
                for q in range(p, e):
                    x = view(ptrs[g * n + order[q]], j0, le, like)
                    for j in range(le):
                        acc[j] = acc[j] + np.float64(x[j])
                count = np.float64(e - p)
                out = view(optrs[g], b * lens[g] + j0, le, like)
                flag = False
                for j in range(le):
                    flag |= (acc[j] - acc[j]) != 0.0  # NaN for NaN and inf
                    out[j] = acc[j] / count
                bad += flag
    return bad > 0


def bucket_means(
    segments: Segments, order: IntArray, s: int, outs: Outs, n_threads: int = 1
) -> bool:
    """``outs[g][b]`` = the mean of rows ``order[b*s : b*s + s]`` of segment ``g``.

    As :func:`hierfed._kernels.numpy.mixing.bucket_means`; returns True when a sum is NaN or
    infinite.
    """
    n, ptrs, lens, dtype = input_addresses(segments)
    idx = np.asarray(order)
    if idx.dtype != np.int64 or idx.shape != (n,):
        raise ValueError(f"order must be an int64 array of length n = {n}")
    seen = np.zeros(n, np.bool_)
    seen[idx[(idx >= 0) & (idx < n)]] = True
    if not seen.all():
        raise ValueError("order must be a permutation of 0 .. n-1")
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ValueError("s must be an int >= 1")
    m = -(-n // int(s))
    optrs = _output_addresses(outs, segments, m, lens, dtype)
    used = use_threads(n_threads, n * int(lens.sum()))
    return bool(
        _bucket_kernel(ptrs, optrs, lens, n, np.ascontiguousarray(idx), int(s), outs[0], used)
    )


def bucket_matrix(x: Any, perm: IntArray, s: int, n_threads: int = 1) -> Any:
    """The reference's ``bucket_matrix`` on this backend's :func:`bucket_means`."""
    return _ref.bucket_matrix_with(bucket_means, x, perm, s, n_threads)
