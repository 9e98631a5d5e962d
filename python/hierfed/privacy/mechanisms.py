"""Noise mechanisms: Gaussian, Laplace, and the central DP mechanism of Layer 2.

Every mechanism releases ``f(D) + noise`` for a quantity ``f`` whose sensitivity the caller
guarantees: the most ``f`` can change between two neighbouring datasets (L2 norm for the
Gaussian mechanisms, L1 norm for Laplace). The privacy guarantee holds for whichever
neighbouring relation that bound was measured under: e.g. with each client's update clipped to
L2 norm C (:func:`~hierfed.privacy.clip_by_l2_norm`), the *sum* of updates has sensitivity C
when one client is added or removed and 2C when one is replaced; a mean over a fixed count n
has C/n (add/remove does not keep n fixed: account for the sum instead).

The noise is float noise from a :class:`NoiseGenerator` (secure by default); float noise leaks
through its low bits (Mironov 2012), ``NoiseGenerator.discrete_gaussian`` is the exact
alternative for integer data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _checks
from .._interop import tensor_io
from .accountant import PLDAccountant, RDPAccountant
from .calibration import analytic_gaussian_sigma, gaussian_delta, laplace_scale
from .noise import _add
from .rng import _LAPLACE, _NORMAL, NoiseGenerator

__all__ = ["CentralDPMechanism", "GaussianMechanism", "LaplaceMechanism"]

Accountant = RDPAccountant | PLDAccountant


def _noised_copy(x: Any, kind: int, scale: float, generator: NoiseGenerator, in_place: bool) -> Any:
    """``x`` plus noise: a copy (arrays keep their shapes, lists stay lists) or ``x`` itself."""
    if in_place:
        return _add(x, kind, scale, generator)
    if isinstance(x, (list, tuple)):
        copy: Any = [np.array(a, copy=True) for a in _arrays_readable(x)]
    else:
        copy = np.array(_arrays_readable([x])[0], copy=True)
    return _add(copy, kind, scale, generator)


def _arrays_readable(x: Any) -> list[np.ndarray[Any, Any]]:
    parts = list(x)
    if not parts:
        raise ValueError("x must hold at least one array")
    out = []
    for i, a in enumerate(parts):
        arr = np.asarray(a)
        if arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"x[{i}] has dtype {arr.dtype}; noise goes into float32 or float64")
        out.append(arr)
    return out


def _generator(generator: NoiseGenerator | None) -> NoiseGenerator:
    if generator is None:
        return NoiseGenerator()
    if not isinstance(generator, NoiseGenerator):
        raise TypeError(f"generator must be a NoiseGenerator, got {type(generator).__name__}")
    return generator


class GaussianMechanism:
    """Adds N(0, sigma^2) to every coordinate of a quantity of L2 sensitivity ``sensitivity``.

    (epsilon, delta)-DP for every pair with ``delta >= gaussian_delta(sigma, epsilon,
    sensitivity)`` (Balle & Wang 2018, Theorem 8; exact, not a bound).

    Parameters
    ----------
    sigma
        Noise standard deviation (>= 0).
    sensitivity
        L2 sensitivity of the quantity under the neighbouring relation of interest (> 0).
    generator
        Noise source; default a fresh secure :class:`NoiseGenerator`.
    """

    def __init__(
        self, sigma: float, sensitivity: float = 1.0, *, generator: NoiseGenerator | None = None
    ) -> None:
        self.sigma = _checks.non_negative(sigma, "sigma")
        self.sensitivity = _checks.positive(sensitivity, "sensitivity")
        self.generator = _generator(generator)

    @classmethod
    def calibrated(
        cls,
        epsilon: float,
        delta: float,
        sensitivity: float = 1.0,
        *,
        generator: NoiseGenerator | None = None,
    ) -> GaussianMechanism:
        """The mechanism with the smallest sigma that is (epsilon, delta)-DP (analytic)."""
        sigma = analytic_gaussian_sigma(epsilon, delta, sensitivity)
        return cls(sigma, sensitivity, generator=generator)

    @property
    def noise_multiplier(self) -> float:
        """sigma / sensitivity, what accountants take."""
        return self.sigma / self.sensitivity

    def delta(self, epsilon: float) -> float:
        """The exact delta of one release at ``epsilon``."""
        if self.sigma == 0:
            return 1.0
        return gaussian_delta(self.sigma, epsilon, self.sensitivity)

    def epsilon(self, delta: float) -> float:
        """The smallest epsilon of one release at ``delta`` (bisection on Theorem 8)."""
        dlt = _checks.probability_open(delta, "delta")
        if self.sigma == 0:
            return math.inf
        if self.delta(0.0) <= dlt:
            return 0.0
        lo, hi = 0.0, 1.0
        while self.delta(hi) > dlt:
            lo, hi = hi, 2 * hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if mid in (lo, hi):
                break
            if self.delta(mid) > dlt:
                lo = mid
            else:
                hi = mid
        return hi

    @tensor_io("x")
    def add_noise(self, x: Any, *, in_place: bool = False) -> Any:
        """``x`` + N(0, sigma^2) noise: an array (or list of arrays, a per-layer model).

        A copy unless ``in_place``; the sum is formed in float64 and rounded once.
        """
        return _noised_copy(x, _NORMAL, self.sigma, self.generator, in_place)


class LaplaceMechanism:
    """Adds Laplace(0, scale) to every coordinate of a quantity of L1 sensitivity
    ``sensitivity``: epsilon-DP with ``epsilon = sensitivity / scale``.

    Parameters
    ----------
    scale
        Laplace scale b (>= 0).
    sensitivity
        L1 sensitivity under the neighbouring relation of interest (> 0).
    generator
        Noise source; default a fresh secure :class:`NoiseGenerator`.
    """

    def __init__(
        self, scale: float, sensitivity: float = 1.0, *, generator: NoiseGenerator | None = None
    ) -> None:
        self.scale = _checks.non_negative(scale, "scale")
        self.sensitivity = _checks.positive(sensitivity, "sensitivity")
        self.generator = _generator(generator)

    @classmethod
    def calibrated(
        cls, epsilon: float, sensitivity: float = 1.0, *, generator: NoiseGenerator | None = None
    ) -> LaplaceMechanism:
        """The epsilon-DP mechanism: ``scale = sensitivity / epsilon``."""
        return cls(laplace_scale(epsilon, sensitivity), sensitivity, generator=generator)

    @property
    def epsilon(self) -> float:
        """sensitivity / scale (inf without noise)."""
        return math.inf if self.scale == 0 else self.sensitivity / self.scale

    @tensor_io("x")
    def add_noise(self, x: Any, *, in_place: bool = False) -> Any:
        """``x`` + Laplace noise (a copy unless ``in_place``)."""
        return _noised_copy(x, _LAPLACE, self.scale, self.generator, in_place)


class CentralDPMechanism:
    """Central DP of Layer 2: Gaussian noise on the global aggregate, accounted over rounds.

    ``CentralDPMechanism(epsilon, delta, sensitivity)`` calibrates sigma with the analytic
    Gaussian mechanism so that each round is (epsilon, delta)-DP;
    :meth:`from_noise_multiplier` fixes sigma = noise_multiplier * sensitivity instead, the
    form for many rounds (optionally over Poisson-sampled clients, ``sample_rate``). Every
    :meth:`add_noise` records one round in the accountant, and :meth:`privacy_spent` reports
    the total (epsilon, delta): the RDP bound over all rounds, or ``k`` epsilon at ``k``
    delta (basic composition) when that is smaller.

    ``sensitivity`` is the L2 sensitivity of the aggregate under the neighbouring relation
    of interest (see the module's notes: clip basket models and noise their sum).

    Attributes
    ----------
    epsilon, delta
        The per-round target (``epsilon`` is NaN in the noise-multiplier form, where
        ``delta`` is only the target of :meth:`privacy_spent`).
    sigma, sensitivity, sample_rate, rounds, accountant, generator
        The noise, its scale, the sampling rate, the rounds so far and their bookkeeping.
    """

    def __init__(
        self,
        epsilon: float = 1.0,
        delta: float = 1e-5,
        sensitivity: float = 1.0,
        *,
        generator: NoiseGenerator | None = None,
        accountant: Accountant | None = None,
    ) -> None:
        self.epsilon = _checks.positive(epsilon, "epsilon")
        self.delta = _checks.probability_open(delta, "delta")
        self.sensitivity = _checks.positive(sensitivity, "sensitivity")
        self.sigma = analytic_gaussian_sigma(self.epsilon, self.delta, self.sensitivity)
        self.sample_rate = 1.0
        self.generator = _generator(generator)
        self.accountant: Accountant = RDPAccountant() if accountant is None else accountant
        self.rounds = 0
        self._per_round: tuple[float, float] | None = (self.epsilon, self.delta)

    @classmethod
    def from_noise_multiplier(
        cls,
        noise_multiplier: float,
        delta: float = 1e-5,
        sensitivity: float = 1.0,
        *,
        sample_rate: float = 1.0,
        generator: NoiseGenerator | None = None,
        accountant: Accountant | None = None,
    ) -> CentralDPMechanism:
        """sigma = noise_multiplier * sensitivity; ``delta`` is the target of
        :meth:`privacy_spent`; ``sample_rate`` the Poisson sampling rate of the contributors."""
        z = _checks.positive(noise_multiplier, "noise_multiplier")
        q = _checks.real(sample_rate, "sample_rate")
        if not 0 < q <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {q}")
        mech = cls.__new__(cls)
        mech.delta = _checks.probability_open(delta, "delta")
        mech.sensitivity = _checks.positive(sensitivity, "sensitivity")
        mech.sigma = z * mech.sensitivity
        mech.sample_rate = q
        mech.generator = _generator(generator)
        mech.accountant = RDPAccountant() if accountant is None else accountant
        mech.rounds = 0
        mech._per_round = None
        mech.epsilon = math.nan
        return mech

    @property
    def noise_multiplier(self) -> float:
        """sigma / sensitivity."""
        return self.sigma / self.sensitivity

    @tensor_io("x")
    def add_noise(self, x: Any, *, in_place: bool = False, sensitivity: float | None = None) -> Any:
        """The aggregate ``x`` plus N(0, sigma^2) noise; records one round.

        ``sensitivity`` overrides the mechanism's for this release only: the noise becomes
        ``noise_multiplier * sensitivity``, the same privacy per release (it depends on the
        ratio alone), for aggregates whose sensitivity changes from round to round.
        """
        scale = (
            self.sigma
            if sensitivity is None
            else self.noise_multiplier * _checks.positive(sensitivity, "sensitivity")
        )
        out = _noised_copy(x, _NORMAL, scale, self.generator, in_place)
        self.accountant.step(self.noise_multiplier, self.sample_rate)
        self.rounds += 1
        return out

    def privacy_spent(self, delta: float | None = None) -> tuple[float, float]:
        """(epsilon, delta) spent over all rounds so far, at ``delta`` (default: the
        mechanism's)."""
        target = self.delta if delta is None else _checks.probability_open(delta, "delta")
        if self.rounds == 0:
            return 0.0, 0.0
        eps = self.accountant.get_epsilon(target)
        if self._per_round is not None:
            eps0, delta0 = self._per_round
            if self.rounds * delta0 <= target:
                eps = min(eps, self.rounds * eps0)
        return float(eps), float(target)
