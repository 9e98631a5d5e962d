"""Numpy references of the L2 norm and clipping kernels: the canonical float64 sum of squares.

Twins: ``cpp/include/hierfed/clipping.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numba.clipping`, which takes its constants from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import FloatArray, Outs, Segments
from ._rows import plain_matrix

__all__ = [
    "NORM_BLOCK",
    "NORM_LANES",
    "TINY_FACTOR",
    "TINY_SQUARES",
    "arc_count",
    "arc_matrix",
    "arc_matrix_with",
    "block_sum_squares",
    "clip_by_l2",
    "clip_factor",
    "clip_margin",
    "clip_matrix",
    "clip_matrix_with",
    "clip_target",
    "l2_sq_norms",
    "row_sum_squares",
]

NORM_BLOCK = 8192  # values per block of the canonical sum of squares
NORM_LANES = 32  # lanes of the canonical sum of squares
TINY_SQUARES = 2.0**-900  # sums below this are redone with scaling by the caller
TINY_FACTOR = 2.0**-900  # clipping factors below this are applied by the caller


def block_sum_squares(x: FloatArray) -> float:
    """Canonical float64 sum of squares of one block (<= NORM_BLOCK values), see clipping.hpp."""
    v = np.zeros(-(-x.size // NORM_LANES) * NORM_LANES, np.float64)
    v[: x.size] = x
    with np.errstate(over="ignore", under="ignore"):  # the caller redoes such rows
        lanes = np.cumsum((v * v).reshape(-1, NORM_LANES), axis=0)[-1]  # in index order
    h = NORM_LANES // 2
    while h >= 1:
        lanes = lanes[:h] + lanes[h : 2 * h]
        h //= 2
    return float(lanes[0])


def row_sum_squares(parts: Outs) -> float:
    """Canonical sum of squares of one update given as its segments (blocks, then segments)."""
    total = 0.0
    for x in parts:
        seg = 0.0
        for j in range(0, x.size, NORM_BLOCK):
            seg += block_sum_squares(x[j : j + NORM_BLOCK])
        total += seg
    return total


def clip_factor(total: float, max_norm: float, margin: float) -> float:
    """Scale of a row from its sum of squares; 0.0 when the caller must decide."""
    if not (total >= TINY_SQUARES) or not math.isfinite(total):
        return 0.0
    bound = math.sqrt(total) * (1.0 + margin)
    f = max_norm / bound if bound > max_norm else 1.0
    return f if f >= TINY_FACTOR else 0.0


def clip_margin(blocks: int, segments: int, itemsize: int) -> float:
    """Relative slack of the clipping factor that makes every clipped row's exact norm at most
    the bound.

    It bounds the rounding of the sum of squares (at most 256 lane additions per block, the
    lane reduction, the ``blocks`` block and ``segments`` segment sums, the square root, the
    factor) plus the final rounding of each value to the output dtype (``itemsize`` bytes).
    """
    unit_out = 2.0**-24 if itemsize == 4 else 2.0**-53
    return unit_out + 2.0 * (NORM_BLOCK / 32 + 16 + blocks + segments) * 2.0**-53


def clip_target(bound: float, d: int, itemsize: int) -> float:
    """The norm clipped rows of ``d`` values are scaled to: ``bound`` less what subnormal
    results may add.

    The margin covers relative rounding; a result in the subnormal range is rounded by up to
    half the smallest subnormal of the output dtype instead, which over ``d`` values adds up
    to ``sqrt(d)`` times that to the norm. Without this, a tiny bound (say 5e-324) gave rows
    whose norm exceeded it. At 0 (a bound below that slack) clipped rows become zero.
    """
    smallest = 2.0**-149 if itemsize == 4 else 2.0**-1074
    return max(0.0, math.nextafter(bound - math.sqrt(d) * smallest, 0.0))


def clip_matrix_with(
    clip: Callable[..., None], x: Any, max_norm: Any, want_norms: bool, n_threads: int
) -> Any:
    """:func:`clip_matrix` on the backend kernel ``clip`` (a :func:`clip_by_l2`)."""
    if not (plain_matrix(x) and type(max_norm) is float and 0.0 < max_norm < math.inf):
        return None
    n, d = x.shape
    target = clip_target(max_norm, d, x.dtype.itemsize)
    margin = clip_margin(-(-d // NORM_BLOCK), 1, x.dtype.itemsize)
    out = np.empty_like(x)
    sq = np.empty(n, np.float64)
    clip([list(x)], [list(out)], target, margin, sq, n_threads)
    if any(clip_factor(total, target, margin) == 0.0 for total in sq.tolist()):
        return None  # a row left unwritten: the caller's general way handles it
    return (out, np.sqrt(sq)) if want_norms else out


def clip_matrix(x: Any, max_norm: Any, want_norms: bool, n_threads: int = 1) -> Any:
    """A plain ``(n, d)`` matrix clipped in one call, or None for the caller's general way.

    Plain: an exact ``numpy.ndarray``, 2-D, float32 or float64 (native order), C-contiguous
    and aligned, ``n, d >= 1``, and a finite float bound > 0; and every row one the kernel
    clips (no NaN/inf, over- or underflowing sums, tiny factors). The answer is the clipped
    copy (target and margin of :func:`clip_target` and :func:`clip_margin`), with the norms
    when ``want_norms``.
    """
    return clip_matrix_with(clip_by_l2, x, max_norm, want_norms, n_threads)


def arc_count(n: int, f: int) -> int:
    """ARC's number of updates clipped, ``floor(2 (f/n) (n - f))``."""
    return (2 * f * (n - f)) // n


def arc_matrix_with(
    sq_norms: Callable[..., None], clip: Callable[..., None], x: Any, f: Any, n_threads: int
) -> Any:
    """:func:`arc_matrix` on the backend kernels ``sq_norms`` and ``clip`` (an
    :func:`l2_sq_norms` and a :func:`clip_by_l2`)."""
    if not (plain_matrix(x) and type(f) is int and 0 <= f < x.shape[0]):
        return None
    n, d = x.shape
    sq = np.empty(n, np.float64)
    sq_norms([list(x)], sq, n_threads)
    if not all(TINY_SQUARES <= v < math.inf for v in sq.tolist()):
        return None  # (even at k = 0: the general way raises on NaN/inf)
    k = arc_count(n, f)
    if k == 0:
        return x.copy()
    norms = np.sqrt(sq)
    order = np.argsort(-norms, kind="stable")  # largest first, ties to the lower index
    top = order[:k].tolist()
    target = clip_target(float(norms[order[k]]), d, x.dtype.itemsize)
    margin = clip_margin(-(-d // NORM_BLOCK), 1, x.dtype.itemsize)
    if any(clip_factor(float(sq[i]), target, margin) == 0.0 for i in top):
        return None
    out = x.copy()
    clip([[x[i] for i in top]], [[out[i] for i in top]], target, margin, sq[:k].copy(), n_threads)
    return out


def arc_matrix(x: Any, f: Any, n_threads: int = 1) -> Any:
    """ARC (Allouah et al. 2024) of a plain ``(n, d)`` matrix in one call, or None for the
    caller's general way.

    Plain as for :func:`clip_matrix`, with an exact int ``0 <= f < n``; the ``k =``
    :func:`arc_count` rows of largest norm (ties to the lower index) are clipped to the
    ``(k+1)``-th largest norm, the others copied. None also when a sum of squares or a
    clipping factor is one the kernel leaves to the caller.
    """
    return arc_matrix_with(l2_sq_norms, clip_by_l2, x, f, n_threads)


def l2_sq_norms(segments: Segments, sq: NDArray[np.float64], n_threads: int = 1) -> None:
    """Canonical float64 sum of squares of every update into ``sq``."""
    for i in range(sq.size):
        sq[i] = row_sum_squares([rows[i] for rows in segments])


def clip_by_l2(
    segments: Segments,
    outs: Sequence[Outs],
    max_norm: float,
    margin: float,
    sq: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """Sums of squares into ``sq``; rows whose factor is known are scaled into ``outs``."""
    l2_sq_norms(segments, sq)
    for i in range(sq.size):
        f = clip_factor(float(sq[i]), max_norm, margin)
        if f == 0.0:
            continue
        for rows, out_rows in zip(segments, outs, strict=True):
            out_rows[i][...] = rows[i].astype(np.float64) * f
