"""Differential privacy: ChaCha20 noise, clipping, calibration, accounting, mechanisms.

- :class:`NoiseGenerator`: cryptographically secure noise (ChaCha20 keyed from the OS),
  reproducible on request; the same stream on every backend and thread count.
- :func:`l2_norms`, :func:`clip_by_l2_norm`: per-update norms and clipping, every input form.
- :func:`add_gaussian_noise`, :func:`add_laplace_noise`: noise added in place.
- :func:`analytic_gaussian_sigma` (Balle & Wang 2018), :func:`classic_gaussian_sigma`,
  :func:`laplace_scale`: calibration.
- :class:`RDPAccountant` (Gaussian and Poisson-subsampled Gaussian, integer and fractional
  orders), :class:`PLDAccountant` (through dp_accounting, extra ``dp``).
- :class:`GaussianMechanism`, :class:`LaplaceMechanism`, :class:`CentralDPMechanism`.
- :class:`DistributedDiscreteGaussian` (Kairouz, Liu & Steinke 2021): each party's noise
  share added before secure aggregation, and its accounting (``hierfed.privacy.distributed``);
  :class:`DistributedDPConfig`: its settings, and the granularity that fits them.
- :class:`DPFedAvg` (Andrew et al. 2021): DP-FedAvg with Poisson sampling of clients (or
  baskets) and adaptive clipping, accounted per unit (``hierfed.privacy.dp_fedavg``).
"""

from .accountant import DEFAULT_ORDERS, PLDAccountant, RDPAccountant, compute_rdp, rdp_to_epsilon
from .calibration import (
    analytic_gaussian_sigma,
    classic_gaussian_sigma,
    gaussian_delta,
    laplace_scale,
)
from .clipping import clip_by_l2_norm, l2_norms
from .distributed import DistributedDiscreteGaussian
from .distributed_config import DistributedDPConfig
from .dp_fedavg import DPFedAvg, DPFedAvgConfig, DPFedAvgRound
from .mechanisms import CentralDPMechanism, GaussianMechanism, LaplaceMechanism
from .noise import add_gaussian_noise, add_laplace_noise
from .rng import NoiseGenerator, chacha20_keystream, discrete_gaussian_parameters

__all__ = [
    "DEFAULT_ORDERS",
    "CentralDPMechanism",
    "DPFedAvg",
    "DPFedAvgConfig",
    "DPFedAvgRound",
    "DistributedDPConfig",
    "DistributedDiscreteGaussian",
    "GaussianMechanism",
    "LaplaceMechanism",
    "NoiseGenerator",
    "PLDAccountant",
    "RDPAccountant",
    "add_gaussian_noise",
    "add_laplace_noise",
    "analytic_gaussian_sigma",
    "chacha20_keystream",
    "classic_gaussian_sigma",
    "clip_by_l2_norm",
    "compute_rdp",
    "discrete_gaussian_parameters",
    "gaussian_delta",
    "l2_norms",
    "laplace_scale",
    "rdp_to_epsilon",
]
