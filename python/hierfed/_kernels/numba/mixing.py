"""Numba twin of the mixing kernel: many weighted means of the same rows in one pass.

Twins: ``cpp/include/hierfed/mixing.hpp`` (bound in ``cpp/src/bind_mixing.cpp``) and
:mod:`hierfed._kernels.numpy.mixing` (the definition).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._types import Outs, Segments
from ._shared import blocks, input_addresses, jit_parallel, locate, use_threads, view

__all__ = ["mix_rows"]

_BLOCK = 128  # coordinates per tile of every row, widened to float64 (as in mixing.hpp)


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
        s = 0
        for b in range(c * nb // nch, (c + 1) * nb // nch):
            s, j0, le = locate(b, s, starts, lens, block)
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
    if len(outs) != len(segments):
        raise ValueError("need one output per segment")
    optrs = np.empty(len(outs), np.int64)
    for s, out in enumerate(outs):
        if not isinstance(out, np.ndarray) or out.dtype != dtype:
            raise TypeError(f"outs[{s}] must be a {dtype} array")
        if out.shape != (m, lens[s]) or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"outs[{s}] must be a writeable C-contiguous ({m}, {lens[s]}) array")
        optrs[s] = out.ctypes.data
    used = use_threads(n_threads, n * m * int(lens.sum()))
    return bool(_mix_kernel(ptrs, optrs, lens, n, np.ascontiguousarray(w), wsum, outs[0], used))
