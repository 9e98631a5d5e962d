"""The kernels' Python twins, one module per kernel family of the C++ core.

Every family has three twins, found by its name: the C++ header
``cpp/include/hierfed/<family>.hpp`` (bound in ``cpp/src/bind_*.cpp`` into
:mod:`hierfed._core`), the numba twin ``hierfed/_kernels/numba/<family>.py`` and the numpy
reference ``hierfed/_kernels/numpy/<family>.py``. The families are ``coordinatewise``
(mean, trimmed mean, median, mean around the median), ``distances``, ``mixing`` (weighted
means of the rows, bucket means), ``chacha20``, ``noise`` (and the discrete Gaussian),
``clipping`` (L2 norms), ``masks`` (secure aggregation) and ``hadamard`` (the distributed
discrete Gaussian's rotation). :mod:`hierfed._kernels.numba` and :mod:`hierfed._kernels.numpy`
gather their families' kernels under the names of :mod:`hierfed._core`; :mod:`hierfed._backend`
picks one of the three.

Every backend exposes the same kernel contract, used by :mod:`hierfed.aggregator` through
:mod:`hierfed._backend`:

``kernel(segments, outs, ..., weights, n_threads) -> bool``

- ``segments[s][i]`` is update ``i``'s part ``s``: a 1-D C-contiguous float32 or float64 array
  (one dtype throughout) of length ``outs[s].size``. A 2-D input is one segment; a per-layer
  model input has one segment per layer.
- ``outs[s]`` is a 1-D C-contiguous array of that dtype, written in place.
- ``weights`` is ``None`` or a validated float64 array of length ``n`` (finite, >= 0, sum > 0).
- The return value is ``True`` when a non-finite input value was seen; the outputs are then
  unspecified and the caller raises.

Weighted order statistics break ties by row index (a stable sort): among equal values the
update with the lower index counts as the smaller.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["FAMILIES", "gather"]

# Each family's kernels, under the names of hierfed._core: the numba and numpy backends hold
# them in their module <family>.py, the C++ core in cpp/include/hierfed/<family>.hpp.
FAMILIES: dict[str, tuple[str, ...]] = {
    "coordinatewise": (
        "mean",
        "trimmed_mean",
        "median",
        "mean_around_median",
        "mean_matrix",
        "trimmed_mean_matrix",
        "median_matrix",
    ),
    "distances": ("pairwise_sq_distances", "sq_distances_to", "monna_matrix"),
    "mixing": ("mix_rows", "bucket_means", "bucket_matrix"),
    "chacha20": ("chacha20_keystream",),
    "noise": ("chacha20_noise", "discrete_gaussian"),
    "clipping": ("l2_sq_norms", "clip_by_l2", "clip_matrix", "arc_matrix"),
    "masks": ("apply_masks",),
    "hadamard": ("walsh_hadamard",),
}


def gather(backend: str) -> dict[str, Any]:
    """Every kernel of the backend package ``backend`` by name, its family modules imported."""
    return {
        name: getattr(importlib.import_module(f"{backend}.{family}"), name)
        for family, names in FAMILIES.items()
        for name in names
    }
