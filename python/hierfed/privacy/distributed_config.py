"""Settings of the distributed discrete Gaussian, and the granularity that fits them.

:class:`DistributedDPConfig` is what an operator writes down (noise multiplier, the fewest
survivors a round releases with, how many parties may collude with the server, the word
size); :meth:`DistributedDPConfig.mechanism` turns it, for one clip norm, vector length and
largest party count, into the :class:`~hierfed.privacy.DistributedDiscreteGaussian` every
party and the server build alike: the finest granularity ``gamma`` (smallest rounding error,
so the smallest sensitivity inflation) at which the sum of ``n_max`` encodings wraps with
probability at most :data:`WRAP_TARGET`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import _checks
from .distributed import DistributedDiscreteGaussian, conditional_rounding_bound

__all__ = ["WRAP_TARGET", "DistributedDPConfig"]

WRAP_TARGET = 2.0**-40
"""Bound on the probability that any coordinate of a round's sum wraps (modular clipping)."""

_SAMPLER_MAX = 2.0**30  # the exact sampler's largest sigma, in integer steps


@dataclass(frozen=True)
class DistributedDPConfig:
    """Distributed DP across parties: each adds a share of discrete Gaussian noise.

    Attributes
    ----------
    noise_multiplier
        Standard deviation of the noise no coalition of the server and ``colluders`` parties
        can remove, over the clip norm (``sigma = noise_multiplier * clip``).
    min_survivors
        The fewest parties whose inputs a released sum may hold; ``None``: the caller's
        default (Layer 2 uses ``min_baskets``). Noise shares are sized for it: a sum of fewer
        is never released (the round aborts), a sum of more holds more noise.
    colluders
        The most parties that may collude with the server (their shares protect nobody).
    bits
        Word size of the encoding, ``2^bits`` the modulus (2 to 32).
    beta
        Conditional rounding's parameter (Kairouz et al. 2021; see
        :class:`~hierfed.privacy.DistributedDiscreteGaussian`).
    rotate
        Randomized Walsh-Hadamard rotation before rounding.
    """

    noise_multiplier: float
    min_survivors: int | None = None
    colluders: int = 0
    bits: int = 32
    beta: float = math.exp(-0.5)
    rotate: bool = True

    def __post_init__(self) -> None:
        _checks.positive(self.noise_multiplier, "noise_multiplier")
        if self.min_survivors is not None:
            _checks.count(self.min_survivors, "min_survivors", minimum=1)
        colluders = _checks.count(self.colluders, "colluders")
        if self.min_survivors is not None and colluders >= self.min_survivors:
            raise ValueError(
                f"colluders ({colluders}) must be < min_survivors ({self.min_survivors}): "
                f"some noise must stay unknown to the server"
            )
        if _checks.count(self.bits, "bits") not in range(2, 33):
            raise ValueError(f"bits must be in [2, 32], got {self.bits}")
        conditional_rounding_bound(1.0, 1, self.beta)  # checks beta
        if not isinstance(self.rotate, bool):
            raise TypeError(f"rotate must be a bool, got {type(self.rotate).__name__}")

    def mechanism(
        self, clip: float, dim: int, n_max: int, min_survivors: int | None = None
    ) -> DistributedDiscreteGaussian:
        """The mechanism for vectors of length ``dim`` clipped to ``clip``, summed over at most
        ``n_max`` parties, released only from at least ``min_survivors`` (default
        :attr:`min_survivors`): the smallest ``gamma`` whose wrap probability at ``n_max`` is
        at most :data:`WRAP_TARGET` (bisection on ``log gamma``; the probability only falls
        as ``gamma`` grows)."""
        n_min = self.min_survivors if min_survivors is None else min_survivors
        if n_min is None:
            raise ValueError("min_survivors is required (in the config or the call)")
        n_min = _checks.count(n_min, "min_survivors", minimum=1)
        n_max = _checks.count(n_max, "n_max", minimum=1)
        if n_max < n_min:
            raise ValueError(f"n_max ({n_max}) must be >= min_survivors ({n_min})")
        clip = _checks.positive(clip, "clip")
        sigma = self.noise_multiplier * clip
        if self.colluders >= n_min:
            raise ValueError(f"colluders ({self.colluders}) must be < min_survivors ({n_min})")
        honest = math.sqrt(n_min - self.colluders)

        def build(gamma: float) -> DistributedDiscreteGaussian:
            return DistributedDiscreteGaussian(
                clip=clip,
                gamma=gamma,
                sigma=sigma,
                n_min=n_min,
                dim=dim,
                bits=self.bits,
                beta=self.beta,
                rotate=self.rotate,
                colluders=self.colluders,
            )

        half = 2.0 ** (self.bits - 1)
        # gamma's range: one clipped vector fits the centred range, the share is within the
        # sampler's reach (<= 2^30 steps) and at least 1/2 step (Kairouz et al. Theorem 3)
        low = max(clip / (half - 2), sigma / (_SAMPLER_MAX * honest)) * (1 + 1e-9)
        high = sigma / (0.5 * honest)
        if low > high or build(high).wrap_probability(n_max) > WRAP_TARGET:
            raise ValueError(
                f"bits={self.bits} is too few for {n_max} parties at noise_multiplier="
                f"{self.noise_multiplier:g}: the sum would wrap; use more bits"
            )
        if build(low).wrap_probability(n_max) <= WRAP_TARGET:
            return build(low)
        lo, hi = math.log(low), math.log(high)
        for _ in range(60):
            mid = (lo + hi) / 2
            if build(math.exp(mid)).wrap_probability(n_max) <= WRAP_TARGET:
                hi = mid
            else:
                lo = mid
        return build(math.exp(hi))
