"""Differential privacy: ChaCha20 noise, clipping, calibration, accounting, mechanisms.

- :class:`NoiseGenerator`: cryptographically secure noise (ChaCha20 keyed from the OS),
  reproducible on request; the same stream on every backend.
- :func:`l2_norms`, :func:`clip_by_l2_norm`: per-update norms and clipping, every input form.
- :func:`add_gaussian_noise`, :func:`add_laplace_noise`: noise added in place.
- :func:`analytic_gaussian_sigma` (Balle & Wang 2018), :func:`classic_gaussian_sigma`,
  :func:`laplace_scale`: calibration.
- :class:`RDPAccountant` (Gaussian and Poisson-subsampled Gaussian, integer and fractional
  orders), :class:`PLDAccountant` (through dp_accounting, extra ``dp``).
- :class:`GaussianMechanism`, :class:`LaplaceMechanism`, :class:`CentralDPMechanism`.
"""

from .clipping import clip_by_l2_norm, l2_norms
from .noise import add_gaussian_noise, add_laplace_noise
from .rng import NoiseGenerator, chacha20_keystream

__all__ = [
    "NoiseGenerator",
    "add_gaussian_noise",
    "add_laplace_noise",
    "chacha20_keystream",
    "clip_by_l2_norm",
    "l2_norms",
]
