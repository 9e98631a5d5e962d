"""Numba twin of the Walsh-Hadamard transform.

Twins: ``cpp/include/hierfed/hadamard.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numpy.hadamard` (the definition), bit for bit: stage by stage, each
value one add or subtract of the previous stage's.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..numpy.hadamard import check_vector
from ._shared import jit

__all__ = ["walsh_hadamard"]


@jit
def _transform(x: NDArray[np.float64]) -> None:
    n = x.size
    h = 1
    while h < n:
        for i in range(0, n, 2 * h):
            for j in range(i, i + h):
                a = x[j]
                b = x[j + h]
                x[j] = a + b
                x[j + h] = a - b
        h *= 2


def walsh_hadamard(x: NDArray[np.float64], n_threads: int = 1) -> None:
    """``x <- H x``, the unnormalised Walsh-Hadamard transform (Sylvester order, ``H H = n I``)."""
    check_vector(x)
    _transform(x)
