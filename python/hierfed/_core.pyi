"""Stubs of the compiled core (cpp/src): kernels over validated segments, see _kernels_numpy."""


import numpy as np
from numpy.typing import NDArray

_Rows = list[NDArray[np.floating]]

def simd() -> str:
    """The instruction-set build in use: ``avx512``, ``avx2`` or ``baseline``."""

def mean(
    segments: list[_Rows],
    outs: list[NDArray[np.floating]],
    weights: NDArray[np.float64] | None,
    n_threads: int,
) -> bool:
    """Weighted mean per coordinate into ``outs``; True if a non-finite value was seen."""

def trimmed_mean(
    segments: list[_Rows],
    outs: list[NDArray[np.floating]],
    n_trim: int,
    weights: NDArray[np.float64] | None,
    n_threads: int,
) -> bool:
    """Trimmed mean per coordinate into ``outs``; True if a non-finite value was seen."""

def median(
    segments: list[_Rows],
    outs: list[NDArray[np.floating]],
    weights: NDArray[np.float64] | None,
    n_threads: int,
) -> bool:
    """(Weighted) median per coordinate into ``outs``; True if a non-finite value was seen."""
