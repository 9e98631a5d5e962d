"""The rows of a segment as one float64 matrix, the non-finite check, and the plain-matrix test
of the one-call entries, for the references."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import Rows, Segments

__all__ = ["any_nonfinite", "plain_array", "plain_matrix", "stack"]

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
