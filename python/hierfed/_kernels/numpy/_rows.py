"""The rows of a segment as one float64 matrix, the non-finite check, and the plain-matrix test
of the one-call entries, for the references."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import Rows, Segments

__all__ = [
    "any_nonfinite",
    "plain_array",
    "plain_matrix",
    "plain_weights",
    "scale_weights",
    "stack",
]

_PLAIN_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def stack(rows: Rows) -> NDArray[np.float64]:
    """The rows as one ``(n, len)`` float64 array (a copy)."""
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows])


def any_nonfinite(segments: Segments) -> bool:
    """Whether any row of any segment holds a NaN or an infinity."""
    return any(not np.isfinite(r).all() for rows in segments for r in rows)


def plain_array(x: Any, ndim: int) -> bool:
    """Whether ``x`` is an array the one-call entries (``clip_matrix``, ``arc_matrix``,
    ``monna_matrix``) answer: an exact ``numpy.ndarray`` of ``ndim`` dimensions, none empty,
    float32 or float64 (native order), C-contiguous and aligned."""
    return (
        type(x) is np.ndarray
        and x.ndim == ndim
        and all(x.shape)
        and x.dtype in _PLAIN_DTYPES
        and x.flags.c_contiguous
        and x.flags.aligned
    )


def plain_matrix(x: Any) -> bool:
    """:func:`plain_array` with two dimensions."""
    return plain_array(x, 2)


def scale_weights(weights: NDArray[np.float64], top: float) -> NDArray[np.float64]:
    """``weights`` scaled by a power of two (exact) so that their largest, ``top`` > 0, lies in
    ``[0.5, 1)``: no weighted sum can overflow, and every result is what the unscaled weights
    give. A fresh array."""
    scaled: NDArray[np.float64] = np.ldexp(weights, -math.frexp(top)[1])
    return scaled


def plain_weights(weights: Any, n: int) -> tuple[bool, NDArray[np.float64] | None]:
    """Whether the one-call entries take ``weights`` as they are, and then the kernels' weights.

    ``(True, None)`` for None; ``(True, scaled)`` for an exact float64 ndarray of ``n``
    entries (C-contiguous, aligned), finite, >= 0, not all zero (:func:`scale_weights`);
    ``(False, None)`` for anything else, which the caller's general way checks.
    """
    if weights is None:
        return True, None
    if not (plain_array(weights, 1) and weights.dtype == np.float64 and weights.shape[0] == n):
        return False, None
    low, top = float(weights.min()), float(weights.max())  # NaN fails the test below
    if not (low >= 0.0 and 0.0 < top < math.inf):
        return False, None
    return True, scale_weights(weights, top)
