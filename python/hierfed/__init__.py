"""hierfed: hierarchical, Byzantine-robust, differentially private federated aggregation.

The kernels run on the compiled C++ core when it is built, else on its numba twin, else on
the numpy reference; :func:`backend` names the one in use. Differential privacy (noise,
clipping, calibration, accounting, mechanisms) is in :mod:`hierfed.privacy`; secure
aggregation (SecAgg+) in :mod:`hierfed.secagg`. Baskets (:mod:`hierfed.basket`), the two
aggregation layers (:mod:`hierfed.layers`) and the federation that drives them
(:mod:`hierfed.federation`) sit on top.
"""

from . import privacy, secagg
from ._backend import backend, get_num_threads, set_num_threads
from .aggregator import AggregationMethod, AggregationResult, aggregate
from .basket import BasketConfig, BasketInfo, BasketManager, BasketStatus, ClientInfo
from .center import centered_clipping, geometric_median
from .coordinatewise import mean, median, trimmed_mean
from .distances import pairwise_sq_distances
from .federation import FederationConfig, HierarchicalFederation
from .gossip import GossipProtocol
from .layers import (
    BasketModel,
    GlobalMetaModel,
    Layer1Aggregator,
    Layer1Config,
    Layer2Aggregator,
    Layer2Config,
)
from .mda import mda
from .meamed import meamed
from .mixing import nearest_neighbor_mixing
from .monna import monna
from .preaggregation import adaptive_robust_clipping, bucketing
from .privacy import CentralDPMechanism, NoiseGenerator, clip_by_l2_norm, l2_norms
from .secagg import SecureAggregator, secure_sum
from .selection import bulyan, krum, krum_select, multi_krum

__version__ = "0.1.0"

__all__ = [
    "AggregationMethod",
    "AggregationResult",
    "BasketConfig",
    "BasketInfo",
    "BasketManager",
    "BasketModel",
    "BasketStatus",
    "CentralDPMechanism",
    "ClientInfo",
    "FederationConfig",
    "GlobalMetaModel",
    "GossipProtocol",
    "HierarchicalFederation",
    "Layer1Aggregator",
    "Layer1Config",
    "Layer2Aggregator",
    "Layer2Config",
    "NoiseGenerator",
    "SecureAggregator",
    "__version__",
    "adaptive_robust_clipping",
    "aggregate",
    "backend",
    "bucketing",
    "bulyan",
    "centered_clipping",
    "clip_by_l2_norm",
    "geometric_median",
    "get_num_threads",
    "krum",
    "krum_select",
    "l2_norms",
    "mda",
    "meamed",
    "mean",
    "median",
    "monna",
    "multi_krum",
    "nearest_neighbor_mixing",
    "pairwise_sq_distances",
    "privacy",
    "secagg",
    "secure_sum",
    "set_num_threads",
    "trimmed_mean",
]
