"""Numba twins of the L2 norm and clipping kernels: the canonical float64 sum of squares.

Twins: ``cpp/include/hierfed/clipping.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numpy.clipping` (the definitions, whose constants these use), bit for
bit. Rows are split over the threads, each summed by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._types import IntArray, Outs, Segments
from ..numpy import clipping as _ref
from ._shared import checked_address, chunk, jit_inline, jit_parallel, use_threads, view

__all__ = ["arc_matrix", "clip_by_l2", "clip_matrix", "l2_sq_norms"]


# The reference's scalar function itself, compiled (iminuit's way): one definition of the factor.
_clip_factor = jit_inline(_ref.clip_factor)


@jit_inline
def _block_sq(x: Any, acc: Any) -> float:
    """The canonical sum of squares of one block: value ``j`` into lane ``j % 32``, halving."""
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


@jit_parallel
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
        for i in chunk(c, n, nch):
            total = 0.0
            for s in range(nseg):
                seg = 0.0
                for j in range(0, lens[s], _ref.NORM_BLOCK):
                    le = min(_ref.NORM_BLOCK, lens[s] - j)
                    seg += _block_sq(view(ptrs[s * n + i], j, le, like), acc)
                total += seg
            sq[i] = total
            f = _clip_factor(total, max_norm, margin)
            if not write or f == 0.0:
                continue
            for s in range(nseg):
                x = view(ptrs[s * n + i], 0, lens[s], like)
                o = view(optrs[s * n + i], 0, lens[s], like)
                for j in range(lens[s]):
                    o[j] = np.float64(x[j]) * f


def _rows_addresses(
    segments: Segments, dtype: np.dtype[Any], writable: bool, what: str
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
            ptrs[s * n + i] = checked_address(row, dtype, length, f"{what}[{s}][{i}]")
    return n, ptrs, lens


def clip_by_l2(
    segments: Segments,
    outs: Sequence[Outs] | None,
    max_norm: float,
    margin: float,
    sq: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """Sums of squares into ``sq``; rows whose factor is known are scaled into ``outs`` (with
    ``outs=None`` the sums only: :func:`l2_sq_norms`)."""
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
    used = use_threads(n_threads, n * int(lens.sum()), units=n)
    like = np.empty(0, dtype)
    _clip_kernel(
        ptrs, optrs, lens, n, outs is not None, float(max_norm), float(margin), sq, like, used
    )


def l2_sq_norms(segments: Segments, sq: NDArray[np.float64], n_threads: int = 1) -> None:
    """:func:`clip_by_l2` without outputs: the sums of squares only."""
    clip_by_l2(segments, None, 0.0, 0.0, sq, n_threads)


def clip_matrix(x: Any, max_norm: Any, want_norms: bool, n_threads: int = 1) -> Any:
    """The reference's ``clip_matrix`` on this backend's :func:`clip_by_l2`."""
    return _ref.clip_matrix_with(clip_by_l2, x, max_norm, want_norms, n_threads)


def arc_matrix(x: Any, f: Any, n_threads: int = 1) -> Any:
    """The reference's ``arc_matrix`` on this backend's kernels."""
    return _ref.arc_matrix_with(l2_sq_norms, clip_by_l2, x, f, n_threads)
