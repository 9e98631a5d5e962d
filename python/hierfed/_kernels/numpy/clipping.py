"""Numpy references of the L2 norm and clipping kernels: the canonical float64 sum of squares.

Twins: ``cpp/include/hierfed/clipping.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numba.clipping`, which takes its constants from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .._types import FloatArray, Outs, Segments

__all__ = [
    "NORM_BLOCK",
    "NORM_LANES",
    "TINY_FACTOR",
    "TINY_SQUARES",
    "block_sum_squares",
    "clip_by_l2",
    "clip_factor",
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
