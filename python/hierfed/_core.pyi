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

def mean_around_median(
    segments: list[_Rows],
    outs: list[NDArray[np.floating]],
    n_keep: int,
    weights: NDArray[np.float64] | None,
    n_threads: int,
) -> bool:
    """Per coordinate the (weighted) mean of the ``n_keep`` values closest to the median."""

def pairwise_sq_distances(
    segments: list[_Rows], out: NDArray[np.float64], chunk: int, n_units: int, n_threads: int
) -> None:
    """Exact squared distances between all rows into the ``(n, n)`` float64 ``out``."""

def sq_distances_to(
    segments: list[_Rows],
    point: list[NDArray[np.floating]],
    out: NDArray[np.float64],
    n_threads: int,
) -> None:
    """Squared distance of every row to ``point`` (one array per segment) into ``out``."""
