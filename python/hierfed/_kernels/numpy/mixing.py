"""Numpy reference of the mixing kernel: many weighted means of the same rows.

Twins: ``cpp/include/hierfed/mixing.hpp`` (bound in ``cpp/src/bind_mixing.cpp``) and
:mod:`hierfed._kernels.numba.mixing`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._types import Outs, Segments
from ._rows import any_nonfinite, stack

__all__ = ["mix_rows"]


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
