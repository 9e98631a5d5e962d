"""DP-FedAvg with Poisson sampling and adaptive clipping (Andrew, Thakkar, McMahan & Ramaswamy
2021, "Differentially Private Learning with Adaptive Clipping", Algorithm 1).

Each round every unit of the population (a client in its basket, or a basket in Layer 2)
takes part independently with probability ``q`` (Poisson sampling). With clip norm ``C_t``
each sampled unit's update ``Delta_i`` is clipped to ``C_t`` and reports the bit
``b_i = 1[||Delta_i|| <= C_t]``. The server releases

- the model: ``(sum_i clip(Delta_i, C_t) + N(0, (z_Delta C_t)^2)) / m``,
- the unclipped fraction: ``b~ = (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2``,

with the fixed denominator ``m = q N`` (the expected count, ``N`` the population), and moves
the clip norm geometrically: ``C_{t+1} = C_t exp(-eta_C (b~ - gamma))``, so that ``C``
tracks the ``gamma``-quantile of the update norms. The bits are centred (``b_i - 1/2``, as
the paper's section 3 and TensorFlow Privacy's ``QuantileEstimatorQuery`` do) so that adding
or removing a unit moves their sum by 1/2: the two releases are then one Gaussian mechanism
of noise multiplier ``z`` when ``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``, and the RDP
accountant composes ``T`` rounds of the Poisson-subsampled Gaussian of ``z`` at rate ``q``.
The unit of privacy is whatever one unit is: one client (Layer 1), one basket (Layer 2).

Conventions against Flower's ``DifferentialPrivacyServerSideAdaptiveClipping``: the same
noise split (``compute_adaptive_noise_params``) and the same default ``sigma_b = m / 20``;
Flower counts the *clipped* updates (``norm > C``), divides by the number that answered and
uses the count uncentred, then moves ``C`` with the paper's sign, so that its clip norm moves
by the same factor as the paper's but the other way (see the tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _checks
from .accountant import RDPAccountant
from .clipping import clip_by_l2_norm
from .noise import add_gaussian_noise
from .rng import NoiseGenerator

__all__ = [
    "DPFedAvg",
    "DPFedAvgConfig",
    "DPFedAvgRound",
    "model_noise_multiplier",
    "next_clip_norm",
    "poisson_sample",
]

UNITS = ("client", "basket", "record")


def model_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """``z_Delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)``: the model sum's noise multiplier that,
    with the count noise ``sigma_b`` on the centred bits (sensitivity 1/2), makes the pair
    one Gaussian mechanism of multiplier ``z`` (0 when ``z`` is 0).

    Raises ValueError when ``count_stddev <= noise_multiplier / 2``: the count noise alone
    would already have to spend more than the whole budget ``z``.
    """
    z = _checks.non_negative(noise_multiplier, "noise_multiplier")
    sigma_b = _checks.non_negative(count_stddev, "count_stddev")
    if z == 0:
        return 0.0
    if 2 * sigma_b <= z:
        raise ValueError(
            f"count_stddev must be > noise_multiplier / 2 = {z / 2:g} (the count's noise "
            f"multiplier 2 count_stddev must exceed z), got {sigma_b:g}: raise count_stddev "
            "or lower noise_multiplier"
        )
    return float((z**-2 - (2 * sigma_b) ** -2) ** -0.5)


def next_clip_norm(
    clip_norm: float, unclipped_fraction: float, target_quantile: float, learning_rate: float
) -> float:
    """The geometric update ``C exp(-eta_C (b~ - gamma))`` of Algorithm 1."""
    c = _checks.positive(clip_norm, "clip_norm")
    b = _checks.real(unclipped_fraction, "unclipped_fraction")
    gamma = _checks.probability_open(target_quantile, "target_quantile")
    eta = _checks.positive(learning_rate, "learning_rate")
    return c * math.exp(-eta * (b - gamma))


def poisson_sample(n: int, sample_rate: float, generator: NoiseGenerator) -> NDArray[np.bool_]:
    """Which of ``n`` units take part: each independently with probability ``sample_rate``
    (uniforms from ``generator``, so a seeded generator repeats the draw)."""
    count = _checks.count(n, "n")
    q = _sample_rate(sample_rate)
    if count == 0:
        return np.zeros(0, bool)
    chosen: NDArray[np.bool_] = generator.uniform(size=count) < q
    return chosen


def _sample_rate(value: Any) -> float:
    q = _checks.real(value, "sample_rate")
    if not 0 < q <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {q}")
    return q


def _candidates(updates: Any) -> list[NDArray[Any]]:
    """The round's candidate updates, checked whole before any is sampled: float arrays of
    one shape and dtype, finite (an update left out by the sampling is checked too)."""
    rows = [np.asarray(u) for u in updates]
    if not rows:
        raise ValueError("updates must hold at least one update (the round's candidates)")
    first = rows[0]
    for i, r in enumerate(rows):
        if r.dtype not in (np.float32, np.float64):
            raise TypeError(f"updates[{i}] must be float32 or float64, got {r.dtype}")
        if r.shape != first.shape or r.dtype != first.dtype:
            raise ValueError(
                f"updates[{i}] is {r.shape} {r.dtype}, updates[0] {first.shape} {first.dtype}"
            )
        if not np.isfinite(r).all():
            raise ValueError(f"updates[{i}] holds NaN or infinity")
    return rows


@dataclass(frozen=True)
class DPFedAvgConfig:
    """Settings of DP-FedAvg with Poisson sampling and adaptive clipping.

    Attributes
    ----------
    noise_multiplier
        ``z``: the noise multiplier of the round as one Gaussian mechanism (model sum and
        count together), >= 0; the accountant composes it. 0 turns the noise off (no
        privacy: epsilon is infinite).
    sample_rate
        ``q`` in (0, 1]: each unit's probability of taking part in a round.
    initial_clip_norm
        ``C_0`` (> 0; the paper's and Flower's default 0.1).
    target_quantile
        ``gamma`` in (0, 1): the share of updates the clip norm should leave unclipped.
    clip_learning_rate
        ``eta_C`` > 0 (default 0.2, the paper's).
    count_stddev
        ``sigma_b``, the count's noise standard deviation; default ``m / 20`` with ``m`` the
        expected count (the paper's advice, Flower's default). Must exceed ``z / 2``.
    adaptive
        ``False`` keeps the clip norm at ``initial_clip_norm`` (fixed clipping: no count is
        released and the model noise multiplier is ``z`` itself).
    population
        ``N``: the units a round samples from, public and fixed, giving the denominator
        ``m = q N``; ``None`` takes the number of candidate updates each round (then that
        count is treated as public, as Flower's ``num_sampled_clients`` is).
    delta
        The delta at which :meth:`DPFedAvg.privacy_spent` reports epsilon.
    """

    noise_multiplier: float
    sample_rate: float = 1.0
    initial_clip_norm: float = 0.1
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    count_stddev: float | None = None
    adaptive: bool = True
    population: int | None = None
    delta: float = 1e-5

    def __post_init__(self) -> None:
        _checks.non_negative(self.noise_multiplier, "noise_multiplier")
        _sample_rate(self.sample_rate)
        _checks.positive(self.initial_clip_norm, "initial_clip_norm")
        _checks.probability_open(self.target_quantile, "target_quantile")
        _checks.positive(self.clip_learning_rate, "clip_learning_rate")
        if not isinstance(self.adaptive, bool):
            raise TypeError("adaptive must be a bool")
        if self.population is not None:
            _checks.count(self.population, "population", 1)
        _checks.probability_open(self.delta, "delta")
        if self.count_stddev is not None:
            _checks.non_negative(self.count_stddev, "count_stddev")
            if self.adaptive:
                model_noise_multiplier(self.noise_multiplier, self.count_stddev)
        elif self.adaptive and self.population is not None:
            model_noise_multiplier(self.noise_multiplier, self.expected_count(self.population) / 20)

    def expected_count(self, population: int) -> float:
        """``m = q N``."""
        return self.sample_rate * population

    def noise_split(self, population: int) -> tuple[float, float]:
        """(``z_Delta``, ``sigma_b``) for a population of ``population`` units."""
        if not self.adaptive:
            return float(self.noise_multiplier), 0.0
        sigma_b = self.count_stddev
        if sigma_b is None:
            sigma_b = self.expected_count(population) / 20
        return model_noise_multiplier(self.noise_multiplier, sigma_b), float(sigma_b)


@dataclass(frozen=True)
class DPFedAvgRound:
    """One round of :class:`DPFedAvg`.

    Attributes
    ----------
    aggregate
        The noised sum of the sampled clipped updates over ``m`` (the model's update).
    sampled
        Indices of the sampled updates.
    clip_norm, next_clip_norm
        ``C_t`` used and ``C_{t+1}`` it moved to.
    unclipped_fraction
        ``b~``: the noised share of updates within ``C_t`` (NaN with fixed clipping).
    expected_count
        ``m = q N``.
    model_sigma, count_sigma
        The standard deviations of the noise on the model sum and the count.
    """

    aggregate: NDArray[Any]
    sampled: NDArray[np.intp]
    clip_norm: float
    next_clip_norm: float
    unclipped_fraction: float
    expected_count: float
    model_sigma: float
    count_sigma: float

    def stats(self) -> dict[str, Any]:
        """The round's figures as plain numbers (no update), ready for JSON."""
        return {
            "sampled": len(self.sampled),
            "clip_norm": self.clip_norm,
            "next_clip_norm": self.next_clip_norm,
            # None with fixed clipping (JSON has no NaN)
            "unclipped_fraction": None
            if math.isnan(self.unclipped_fraction)
            else self.unclipped_fraction,
            "expected_count": self.expected_count,
            "model_sigma": self.model_sigma,
            "count_sigma": self.count_sigma,
        }


class DPFedAvg:
    """DP-FedAvg rounds over one population, with its clip norm and its accountant.

    Parameters
    ----------
    config
        A :class:`DPFedAvgConfig`.
    generator
        Source of the sampling and the noise (default: a fresh secure
        :class:`~hierfed.privacy.NoiseGenerator`).
    unit
        What one unit of the population is ("client", "basket"): the unit the epsilon of
        :meth:`privacy_spent` protects.

    Attributes
    ----------
    clip_norm
        The current ``C_t``.
    rounds
        Rounds accounted so far.
    accountant
        The :class:`~hierfed.privacy.RDPAccountant` of the rounds (``z`` at rate ``q`` each).
    """

    def __init__(
        self,
        config: DPFedAvgConfig,
        *,
        generator: NoiseGenerator | None = None,
        unit: str = "client",
    ) -> None:
        if not isinstance(config, DPFedAvgConfig):
            raise TypeError(f"config must be a DPFedAvgConfig, got {type(config).__name__}")
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(UNITS)}; got {unit!r}")
        self.config = config
        self.generator = NoiseGenerator() if generator is None else generator
        self.unit = unit
        self.clip_norm = float(config.initial_clip_norm)
        self.rounds = 0
        self.accountant = RDPAccountant()

    def aggregate(self, updates: Any, *, population: int | None = None) -> DPFedAvgRound:
        """One round over the candidate ``updates`` (an ``(n, d)`` array or ``n`` arrays of
        one shape): sample, clip, noise, move the clip norm, account.

        ``population`` overrides the config's ``N`` (e.g. a basket's member count); it must
        be at least the number of candidates. Nothing changes when the call fails.
        """
        cfg = self.config
        rows = _candidates(updates)
        n = len(rows)
        size = cfg.population if population is None else population
        size = n if size is None else _checks.count(size, "population", 1)
        if size < n:
            raise ValueError(f"population ({size}) must be >= the number of updates ({n})")
        m = cfg.expected_count(size)
        z_model, sigma_b = cfg.noise_split(size)
        chosen = np.flatnonzero(poisson_sample(n, cfg.sample_rate, self.generator))
        c = self.clip_norm
        total = np.zeros(rows[0].shape, np.float64)
        unclipped = 0
        if chosen.size:
            clipped, norms = clip_by_l2_norm([rows[i] for i in chosen], c, return_norms=True)
            total = np.sum(np.stack(clipped).astype(np.float64, copy=False), axis=0)
            unclipped = int(np.sum(norms <= c))
        add_gaussian_noise(total, z_model * c, self.generator)
        fraction, moved = math.nan, c
        if cfg.adaptive:
            count = unclipped - chosen.size / 2 + sigma_b * self.generator.standard_normal()
            fraction = count / m + 0.5
            moved = next_clip_norm(c, fraction, cfg.target_quantile, cfg.clip_learning_rate)
        aggregate = (total / m).astype(rows[0].dtype, copy=False)
        self.accountant.step(cfg.noise_multiplier, cfg.sample_rate)
        self.clip_norm, self.rounds = moved, self.rounds + 1
        return DPFedAvgRound(
            aggregate=aggregate,
            sampled=chosen,
            clip_norm=c,
            next_clip_norm=moved,
            unclipped_fraction=float(fraction),
            expected_count=m,
            model_sigma=z_model * c,
            count_sigma=sigma_b if cfg.adaptive else 0.0,
        )

    def privacy_spent(self, delta: float | None = None) -> tuple[float, float]:
        """(epsilon, delta) over every round so far, for one ``unit``."""
        target = self.config.delta if delta is None else delta
        if self.rounds == 0:
            return 0.0, float(target)
        return self.accountant.get_epsilon(target), float(target)

    def state(self) -> dict[str, float | int]:
        """The adaptive state (clip norm, rounds) as plain numbers, for checkpoints."""
        return {"clip_norm": self.clip_norm, "rounds": self.rounds}

    def load_state(self, state: Any) -> None:
        """Put back a :meth:`state` (checked first: nothing changes on a bad one)."""
        if not isinstance(state, dict) or set(state) != {"clip_norm", "rounds"}:
            raise ValueError("dp_fedavg state must be a dict of clip_norm and rounds")
        clip = _checks.positive(state["clip_norm"], "dp_fedavg state clip_norm")
        rounds = _checks.count(state["rounds"], "dp_fedavg state rounds")
        accountant = RDPAccountant()
        if rounds:
            accountant.step(self.config.noise_multiplier, self.config.sample_rate, rounds)
        self.clip_norm, self.rounds, self.accountant = clip, rounds, accountant
