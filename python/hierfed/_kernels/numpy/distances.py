"""Numpy references of the distance kernels: pairwise squared distances, distances to a point.

Twins: ``cpp/include/hierfed/distances.hpp`` (bound in ``cpp/src/bind_distances.cpp``) and
:mod:`hierfed._kernels.numba.distances`. Those two follow a fixed summation recipe (see
``distances.hpp``) so that they agree bit for bit; the reference is the plain float64
definition, which they match to rounding.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._types import Outs, Segments
from ._rows import stack

__all__ = ["pairwise_sq_distances", "sq_distances_to"]


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
