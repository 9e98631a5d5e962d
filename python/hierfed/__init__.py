"""hierfed: hierarchical, Byzantine-robust, differentially private federated aggregation.

The aggregators run on the compiled C++ core when it is built, else on its numba twin, else on
the numpy reference; :func:`backend` names the one in use.
"""

from ._backend import backend, get_num_threads, set_num_threads
from .aggregator import (
    AggregationMethod,
    AggregationResult,
    aggregate,
    mean,
    median,
    trimmed_mean,
)

__version__ = "0.1.0"

__all__ = [
    "AggregationMethod",
    "AggregationResult",
    "__version__",
    "aggregate",
    "backend",
    "get_num_threads",
    "mean",
    "median",
    "set_num_threads",
    "trimmed_mean",
]
