"""The Walsh-Hadamard transform, the definition: stage by stage, as the stacked butterflies.

Twins: ``cpp/include/hierfed/hadamard.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numba.hadamard`, bit for bit (each value of a stage is one add or
subtract of the previous stage's values).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["check_vector", "walsh_hadamard"]


def check_vector(x: object) -> None:
    """``x`` must be a writeable 1-D contiguous float64 array of power-of-two length."""
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == np.float64
        and x.ndim == 1
        and x.flags.c_contiguous
        and x.flags.writeable
    ):
        raise ValueError("x must be a writeable 1-D contiguous float64 array")
    if x.size == 0 or x.size & (x.size - 1):
        raise ValueError("x must have a power-of-two length")


def walsh_hadamard(x: NDArray[np.float64], n_threads: int = 1) -> None:
    """``x <- H x``, the unnormalised Walsh-Hadamard transform (Sylvester order, ``H H = n I``)."""
    check_vector(x)
    out = x
    h = 1
    while h < x.size:
        pairs = out.reshape(-1, 2, h)
        out = np.stack((pairs[:, 0] + pairs[:, 1], pairs[:, 0] - pairs[:, 1]), axis=1)
        h *= 2
    x[:] = out.reshape(-1)
