"""Stubs of the compiled core (cpp/src): kernels over validated segments, see hierfed._kernels."""

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

def mix_rows(
    segments: list[_Rows],
    weights: NDArray[np.float64],
    outs: list[NDArray[np.floating]],
    n_threads: int,
) -> bool:
    """``outs[s][o] = sum_i weights[o, i] x_i / sum_i weights[o, i]``; True if non-finite."""

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

# ---- privacy kernels (cpp/src/bind_privacy.cpp; definitions in _kernels.numpy) ------------

def chacha20_keystream(
    key: NDArray[np.uint32],
    nonce: NDArray[np.uint32],
    counter: int,
    out: NDArray[np.uint32],
    n_threads: int,
) -> None:
    """RFC 8439 keystream words from block ``counter`` into ``out``."""

def chacha20_noise(
    key: NDArray[np.uint32],
    nonce: NDArray[np.uint32],
    counter: int,
    out: NDArray[np.floating],
    kind: int,
    loc: float,
    scale: float,
    accumulate: bool,
    n_threads: int,
) -> None:
    """Uniform (0), normal (1) or Laplace (2) draws into ``out`` (or added to it)."""

def discrete_gaussian(
    key: NDArray[np.uint32],
    out: NDArray[np.int64],
    t: int,
    alpha: int,
    beta: int,
    denom: int,
    ymax: int,
    chunk: int,
    n_threads: int,
) -> None:
    """Exact discrete Gaussian samples (Canonne, Kamath, Steinke 2020) into ``out``."""

def walsh_hadamard(x: NDArray[np.float64], n_threads: int) -> None:
    """The unnormalised Walsh-Hadamard transform of ``x`` (power-of-two length) in place."""

def l2_sq_norms(segments: list[_Rows], sq: NDArray[np.float64], n_threads: int) -> None:
    """Canonical float64 sum of squares of every update into ``sq``."""

def clip_by_l2(
    segments: list[_Rows],
    outs: list[_Rows],
    max_norm: float,
    margin: float,
    sq: NDArray[np.float64],
    n_threads: int,
) -> None:
    """Sums of squares into ``sq``; rows with a normal sum scaled into ``outs``."""

# ---- secure-aggregation masks (cpp/src/bind_secagg.cpp; definition in _kernels.numpy) -------

def apply_masks(
    keys: NDArray[np.uint32],
    negate: NDArray[np.uint8],
    out: NDArray[np.uint32],
    n_threads: int,
) -> None:
    """Add (negate 0) or subtract (negate 1) each key's ChaCha20 keystream into ``out``."""
