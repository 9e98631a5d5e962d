"""Numpy references of the distance kernels: pairwise squared distances, distances to a point.

Twins: ``cpp/include/hierfed/distances.hpp`` (bound in ``cpp/src/bind_distances.cpp``) and
:mod:`hierfed._kernels.numba.distances`. Those two follow a fixed summation recipe (see
``distances.hpp``) so that they agree bit for bit; the reference is the plain float64
definition, which they match to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import Outs, Segments
from ._rows import plain_array, stack
from .coordinatewise import mean

__all__ = ["monna_matrix", "monna_matrix_with", "pairwise_sq_distances", "sq_distances_to"]


def pairwise_sq_distances(
    segments: Segments,
    out: NDArray[np.float64],
    chunk: int = 0,
    n_units: int = 1,
    n_threads: int = 1,
) -> None:
    """``out[i, j] = sum_c (x_i[c] - x_j[c])**2`` over every segment, in float64.

    ``chunk`` and ``n_units`` fix the summation order of the fast kernels; the reference sums
    exactly in float64 (``math.fsum``-accurate pairwise sums suffice here) and ignores them.
    Non-finite input gives non-finite entries; the caller checks.
    """
    n = len(segments[0])
    out[...] = 0.0
    for rows in segments:
        x = stack(rows)
        for i in range(n):
            diff = x[i + 1 :] - x[i]
            sq = np.einsum("ij,ij->i", diff, diff) if diff.size else np.zeros(0)
            out[i, i + 1 :] += sq
    iu = np.triu_indices(n, 1)
    out[(iu[1], iu[0])] = out[iu]
    out[np.diag_indices(n)] = 0.0


def sq_distances_to(
    segments: Segments, point: Outs, out: NDArray[np.float64], n_threads: int = 1
) -> None:
    """``out[i] = sum_c (x_i[c] - point[c])**2`` over every segment, in float64.

    ``point[s]`` is segment ``s`` of the point, in the rows' dtype.
    """
    out[...] = 0.0
    for rows, p in zip(segments, point, strict=True):
        diff = stack(rows) - np.asarray(p, dtype=np.float64)
        out += np.einsum("ij,ij->i", diff, diff)


def monna_matrix_with(
    to_point: Callable[..., None],
    mean_of: Callable[..., bool],
    x: Any,
    f: Any,
    trusted: Any,
    n_threads: int,
) -> Any:
    """:func:`monna_matrix` on the backend kernels ``to_point`` and ``mean_of`` (a
    :func:`sq_distances_to` and a coordinate-wise ``mean``)."""
    plain = (
        plain_array(x, 2)
        and plain_array(trusted, 1)
        and type(f) is int
        and 0 <= f < x.shape[0]
        and trusted.shape[0] == x.shape[1]
        and trusted.dtype == x.dtype
    )
    if not plain:
        return None
    n = x.shape[0]
    dist = np.empty(n, np.float64)
    to_point([list(x)], [trusted], dist, n_threads)
    if not all(math.isfinite(v) for v in dist.tolist()):
        return None
    chosen = np.sort(np.argsort(dist, kind="stable")[: n - f])  # ties to the lower index
    out = np.empty(x.shape[1], x.dtype)
    with np.errstate(over="ignore"):
        mean_of([[x[i] for i in chosen.tolist()]], [out], None, n_threads)
    return out if np.isfinite(out).all() else None  # float64 sums can overflow


def monna_matrix(x: Any, f: Any, trusted: Any, n_threads: int = 1) -> Any:
    """MoNNA (Farhadkhani et al. 2023) of a plain ``(n, d)`` matrix in one call, or None for
    the caller's general way.

    Plain: ``x`` an exact ``numpy.ndarray``, 2-D, float32 or float64, C-contiguous and aligned,
    ``n, d >= 1``; ``f`` an exact int, ``0 <= f < n``; ``trusted`` a plain 1-D array of ``d``
    values of ``x``'s dtype. The answer is the mean of the ``n - f`` rows nearest ``trusted``
    (ties to the lower index), summed in index order; None also when a distance is not finite
    or the mean overflows float64.
    """
    return monna_matrix_with(sq_distances_to, mean, x, f, trusted, n_threads)
