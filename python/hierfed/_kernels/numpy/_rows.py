"""The rows of a segment as one float64 matrix, and the non-finite check, for the references."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._types import Rows, Segments

__all__ = ["any_nonfinite", "stack"]


def stack(rows: Rows) -> NDArray[np.float64]:
    """The rows as one ``(n, len)`` float64 array (a copy)."""
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows])


def any_nonfinite(segments: Segments) -> bool:
    """Whether any row of any segment holds a NaN or an infinity."""
    return any(not np.isfinite(r).all() for rows in segments for r in rows)
