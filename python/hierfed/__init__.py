"""hierfed: hierarchical, Byzantine-robust, differentially private federated aggregation.

The kernels run on the compiled C++ core when it is built, else on its numba twin, else on
the numpy reference; :func:`backend` names the one in use. Differential privacy (noise,
clipping, calibration, accounting, mechanisms) is in :mod:`hierfed.privacy`.
"""

from . import privacy
from ._backend import backend, get_num_threads, set_num_threads
from .aggregator import (
    AggregationMethod,
    AggregationResult,
    aggregate,
    mean,
    median,
    trimmed_mean,
)
from .privacy import CentralDPMechanism, NoiseGenerator, clip_by_l2_norm, l2_norms

__version__ = "0.1.0"

__all__ = [
    "AggregationMethod",
    "AggregationResult",
    "CentralDPMechanism",
    "NoiseGenerator",
    "__version__",
    "aggregate",
    "backend",
    "clip_by_l2_norm",
    "get_num_threads",
    "l2_norms",
    "mean",
    "median",
    "privacy",
    "set_num_threads",
    "trimmed_mean",
]
