"""The numba backend: twins of the compiled C++ kernels, same algorithms and results, no compiler.

Used when the extension :mod:`hierfed._core` is missing. One module per kernel family of the
C++ core, named as its header (see :mod:`hierfed._kernels` for the map and the contract);
:mod:`._shared` holds the jit settings, row addresses and thread splits they share.
"""

from __future__ import annotations

from .chacha20 import chacha20_keystream
from .clipping import clip_by_l2, l2_sq_norms
from .coordinatewise import mean, mean_around_median, median, trimmed_mean
from .distances import pairwise_sq_distances, sq_distances_to
from .masks import apply_masks
from .mixing import mix_rows
from .noise import chacha20_noise, discrete_gaussian

__all__ = [
    "apply_masks",
    "chacha20_keystream",
    "chacha20_noise",
    "clip_by_l2",
    "discrete_gaussian",
    "l2_sq_norms",
    "mean",
    "mean_around_median",
    "median",
    "mix_rows",
    "pairwise_sq_distances",
    "sq_distances_to",
    "trimmed_mean",
]
