"""Numpy references of the mixing kernels: many weighted means of the same rows, bucket means.

Twins: ``cpp/include/hierfed/mixing.hpp`` (bound in ``cpp/src/bind_mixing.cpp``) and
:mod:`hierfed._kernels.numba.mixing`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import IntArray, Outs, Segments
from ._rows import any_nonfinite, plain_matrix, stack

__all__ = ["bucket_matrix", "bucket_matrix_with", "bucket_means", "mix_rows", "sorted_buckets"]


def mix_rows(
    segments: Segments, weights: NDArray[np.float64], outs: Outs, n_threads: int = 1
) -> bool:
    """``outs[s][o] = sum_i weights[o, i] x_i / sum_i weights[o, i]`` for every segment.

    ``weights`` is ``(m, n)``, non-negative, each row with a positive sum; ``outs[s]`` is
    ``(m, len_s)``. Many weighted means of the same rows (nearest-neighbour mixing).
    """
    if any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        out[...] = weights @ stack(rows) / weights.sum(axis=1)[:, None]
    return False


def bucket_means(
    segments: Segments, order: IntArray, s: int, outs: Outs, n_threads: int = 1
) -> bool:
    """``outs[g][b]`` = the mean of rows ``order[b*s : b*s + s]`` of segment ``g``.

    ``order`` is a permutation of ``0 .. n-1``; ``outs[g]`` is ``(ceil(n / s), len_g)``. Each
    bucket's rows are added in the order given to a float64 sum starting at 0, which is then
    divided by their count (and rounded to the rows' dtype). Returns True when a sum is NaN
    or infinite: a non-finite input, or float64 input whose sum overflows.
    """
    bad = False
    for rows, out in zip(segments, outs, strict=True):
        acc = np.zeros(out.shape)
        count = np.zeros(out.shape[0])
        with np.errstate(invalid="ignore", over="ignore"):  # reported by the return value
            for q in range(min(s, len(order))):  # the q-th row of every bucket that has one
                members = order[q::s]
                acc[: members.size] = acc[: members.size] + stack([rows[i] for i in members])
                count[: members.size] += 1.0
            out[...] = acc / count[:, None]
        bad |= not np.isfinite(acc).all()
    return bad


def sorted_buckets(perm: IntArray, s: int) -> IntArray:
    """The permutation ``perm`` with each bucket of ``s`` consecutive positions (the last the
    ``n mod s`` rest) in ascending index: the same buckets, their sums in index order."""
    order = np.array(perm, np.int64)
    full = order.size - order.size % s
    order[:full].reshape(-1, s).sort(axis=1)
    order[full:].sort()
    return order


def bucket_matrix_with(
    means: Callable[..., bool], x: Any, perm: IntArray, s: int, n_threads: int
) -> Any:
    """:func:`bucket_matrix` on the backend kernel ``means`` (a :func:`bucket_means`)."""
    if not plain_matrix(x):
        return None
    out = np.empty((-(-x.shape[0] // s), x.shape[1]), x.dtype)
    if means([list(x)], sorted_buckets(perm, s), s, [out], n_threads):
        return None
    return out


def bucket_matrix(x: Any, perm: IntArray, s: int, n_threads: int = 1) -> Any:
    """The ``(ceil(n / s), d)`` bucket means of a plain ``(n, d)`` matrix in one call, or None
    for the caller's general way.

    ``perm`` is a permutation of ``0 .. n-1`` drawn by the caller (int64) and ``s >= 1``; the
    buckets are those of :func:`sorted_buckets`. Plain: an exact ``numpy.ndarray``, 2-D,
    float32 or float64, C-contiguous and aligned, ``n, d >= 1``. None also when a sum is not
    finite (the general way, given the same ``perm``, raises or answers).
    """
    return bucket_matrix_with(bucket_means, x, perm, s, n_threads)
