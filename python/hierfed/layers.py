"""Two-layer aggregation (spec/layers.md): robust per basket, then secure and private across.

Layer 1 (:class:`Layer1Aggregator`) runs any :class:`~hierfed.AggregationMethod` over one
basket's updates and may add local Gaussian noise, calibrated to the rule's sensitivity
(:mod:`hierfed.sensitivity`) over updates clipped to ``local_clip_norm``; it yields a
:class:`BasketModel`. Layer 2 (:class:`Layer2Aggregator`) clips every basket model to
``clip_norm``, weights them (by size, uniformly or by confidence), sums them with secure
aggregation when asked and there are at least two, adds central DP noise and reports the
privacy spent over all rounds; it yields a :class:`GlobalMetaModel`.

Neighbouring relation of both layers' noise: one input (a client's update in Layer 1, a
basket's model in Layer 2) replaced by any other, the count and the weights public.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _checks, trust
from ._feasible import TAKES_WEIGHTS, dry_run, min_inputs
from ._inputs import as_updates, refuse_masked
from .aggregator import AggregationMethod, aggregate
from .coordinatewise import mean
from .preaggregation import as_steps
from .privacy import (
    DEFAULT_ORDERS,
    CentralDPMechanism,
    DPFedAvg,
    DPFedAvgConfig,
    GaussianMechanism,
    NoiseGenerator,
    RDPAccountant,
    analytic_gaussian_sigma,
    clip_by_l2_norm,
    compute_rdp,
    l2_norms,
    rdp_to_epsilon,
)
from .secagg import SecAggConfig, SecureAggregator
from .sensitivity import aggregate_sensitivity

__all__ = [
    "BasketModel",
    "CentralDPMechanism",
    "GlobalMetaModel",
    "Layer1Aggregator",
    "Layer1Config",
    "Layer2Aggregator",
    "Layer2Config",
    "SecureAggregator",
    "Weighting",
    "simple_average",
    "weighted_average",
]


_DEFAULT_TRIM = 0.1
# Rules whose parameter defaults to the basket's previous model (zeros at first).
_PREVIOUS_AS = {AggregationMethod.CENTERED_CLIPPING: "center", AggregationMethod.MONNA: "trusted"}


def method_of(value: Any, name: str) -> AggregationMethod:
    """``value`` (an :class:`~hierfed.AggregationMethod` or its value) as the enum."""
    try:
        return AggregationMethod(value)
    except ValueError:
        known = ", ".join(m.value for m in AggregationMethod)
        raise ValueError(f"{name} must be one of {known}; got {value!r}") from None


def _check_dp_fedavg(value: object, layer: str) -> None:
    if value is not None and not isinstance(value, DPFedAvgConfig):
        raise TypeError(
            f"{layer}: dp_fedavg must be a hierfed.privacy.DPFedAvgConfig or None, got "
            f"{type(value).__name__}"
        )


def _trim_share(ratio: object, alpha: object) -> float:
    """The trimmed share given as ``trim_ratio`` or its alias ``trim_alpha``."""
    ratio, alpha = _checks.real(ratio, "trim_ratio"), _checks.real(alpha, "trim_alpha")
    if ratio != alpha and _DEFAULT_TRIM not in (ratio, alpha):
        raise ValueError(
            f"trim_ratio={ratio} and its alias trim_alpha={alpha} disagree; give one of them"
        )
    share = alpha if ratio == _DEFAULT_TRIM else ratio
    if not 0 <= share < 0.5:
        raise ValueError(f"trim_ratio must be in [0, 0.5), got {share}")
    return share


@dataclass
class Layer1Config:
    """Settings of the robust aggregation inside a basket.

    Attributes
    ----------
    aggregation_method
        The rule: an :class:`~hierfed.AggregationMethod` or its value (``"bulyan"``); stored
        as the enum.
    trim_ratio, trim_alpha
        The trimmed mean's share cut at each end (default 0.1), as in
        :func:`~hierfed.trimmed_mean`; ``trim_alpha`` is the spec's name for it. Give either:
        both attributes then read the value (two different non-default values are refused).
    min_updates
        Updates a basket buffers before its aggregation triggers (at least the rule's own
        minimum, e.g. ``2f + 3`` for Krum, is needed to aggregate at all).
    apply_local_noise
        Clip updates to ``local_clip_norm`` and add Gaussian noise to the basket model.
    method_params
        Further parameters of the rule, e.g. ``{"f": 2}`` for Krum or Bulyan, ``{"tau": 1.0}``
        for centered clipping (whose ``center`` defaults to the basket's previous model, as
        MoNNA's ``trusted`` does).
    pre
        Pre-aggregation steps before the rule, a name or a tuple of names among ``"nnm"``,
        ``"bucketing"``, ``"arc"`` and ``"clip"`` (:mod:`hierfed.preaggregation`; their
        parameters, e.g. ``f`` or ``s``, go in ``method_params``).
    expected_contributors
        The count at which a basket model has confidence 1 (default ``min_updates``).
    local_clip_norm
        L2 norm every update is clipped to when local noise is on.
    local_epsilon, local_delta
        Per-release (epsilon, delta) of the local noise (analytic Gaussian calibration).
    local_noise_multiplier
        Noise standard deviation over sensitivity; overrides ``local_epsilon``/``local_delta``.
    dp_fedavg
        Client-level DP-FedAvg with adaptive clipping (:class:`~hierfed.privacy.DPFedAvg`,
        Andrew et al. 2021) as the basket's noise: each aggregation Poisson-samples the
        basket's buffered updates at ``dp_fedavg.sample_rate``, clips them to the basket's
        adaptive clip norm, noises their sum and divides it by ``q N`` (``N``: the basket's
        member count, or ``dp_fedavg.population``). Needs ``aggregation_method="mean"``, no
        ``pre`` and ``apply_local_noise=False``; update weights (staleness, trust) are not
        used. The epsilon then protects one client (its every update, add/remove-one).
    """

    aggregation_method: AggregationMethod | str = AggregationMethod.TRIMMED_MEAN
    trim_alpha: float = _DEFAULT_TRIM
    min_updates: int = 3
    apply_local_noise: bool = True
    method_params: dict[str, Any] = field(default_factory=dict)
    pre: str | tuple[str, ...] | None = None
    expected_contributors: int | None = None
    local_clip_norm: float = 1.0
    local_epsilon: float = 1.0
    local_delta: float = 1e-5
    local_noise_multiplier: float | None = None
    trim_ratio: float = _DEFAULT_TRIM
    dp_fedavg: DPFedAvgConfig | None = None

    def __post_init__(self) -> None:
        self.aggregation_method = method_of(self.aggregation_method, "aggregation_method")
        self.trim_ratio = self.trim_alpha = _trim_share(self.trim_ratio, self.trim_alpha)
        _checks.count(self.min_updates, "min_updates", 1)
        if not isinstance(self.apply_local_noise, bool):
            raise TypeError("apply_local_noise must be a bool")
        if not isinstance(self.method_params, Mapping):
            raise TypeError("method_params must be a dict of the rule's parameters")
        if self.pre is not None:
            steps = as_steps(self.pre)
            self.pre = self.pre if isinstance(self.pre, str) else steps
        if self.expected_contributors is not None:
            _checks.count(self.expected_contributors, "expected_contributors", 1)
        _checks.positive(self.local_clip_norm, "local_clip_norm")
        _checks.positive(self.local_epsilon, "local_epsilon")
        _checks.probability_open(self.local_delta, "local_delta")
        if self.local_noise_multiplier is not None:
            _checks.positive(self.local_noise_multiplier, "local_noise_multiplier")
        rule = AggregationMethod(self.aggregation_method)
        _check_dp_fedavg(self.dp_fedavg, "layer1")
        if self.dp_fedavg is not None and (
            rule is not AggregationMethod.MEAN or self.pre is not None or self.apply_local_noise
        ):
            raise ValueError(
                "dp_fedavg is the basket's noise over the mean of its clipped updates: it needs "
                f"aggregation_method='mean', pre=None and apply_local_noise=False; got "
                f"{rule.value!r}, {self.pre!r}, {self.apply_local_noise}"
            )
        n = max(self.min_updates, self.min_inputs())
        dry_run(rule, self.rule_params(), n, "layer1", self.pre)
        if self.apply_local_noise:
            aggregate_sensitivity(rule, n, self.local_clip_norm, pre=self.pre, **self.rule_params())

    def rule_params(self) -> dict[str, Any]:
        """The rule's parameters: ``method_params`` and, for the trimmed mean, ``trim_ratio``
        (unless ``n_trim`` is given)."""
        params = dict(self.method_params)
        if self.aggregation_method is AggregationMethod.TRIMMED_MEAN and "n_trim" not in params:
            params.setdefault("trim_ratio", self.trim_ratio)
        return params

    @property
    def noise_multiplier(self) -> float:
        """The local noise's standard deviation over the rule's sensitivity."""
        if self.local_noise_multiplier is not None:
            return float(self.local_noise_multiplier)
        return analytic_gaussian_sigma(self.local_epsilon, self.local_delta, 1.0)

    @property
    def release_noise(self) -> tuple[float, float] | None:
        """(noise multiplier, sample rate) each basket release is accounted with; ``None``
        when the releases are not noised."""
        if self.dp_fedavg is not None:
            return float(self.dp_fedavg.noise_multiplier), float(self.dp_fedavg.sample_rate)
        return (self.noise_multiplier, 1.0) if self.apply_local_noise else None

    def min_inputs(self) -> int:
        """The fewest updates the rule (with its ``f``) can aggregate."""
        return min_inputs(AggregationMethod(self.aggregation_method), self.rule_params(), self.pre)


@dataclass
class BasketModel:
    """A basket's aggregate for one round.

    ``confidence = min(1, n_contributors / expected_contributors)``.
    """

    basket_id: str
    aggregate: np.ndarray[Any, Any]
    n_contributors: int
    round_id: int
    timestamp: float
    confidence: float


class Layer1Aggregator:
    """Aggregates the updates of one basket at a time into a :class:`BasketModel`.

    Parameters
    ----------
    config
        A :class:`Layer1Config` (default settings when ``None``).
    generator
        Source of the local noise (default: a fresh secure
        :class:`~hierfed.privacy.NoiseGenerator`).
    clock
        Gives :attr:`BasketModel.timestamp` (default ``time.time``).

    Notes
    -----
    The local noise spent is accounted per basket (RDP, composed over that basket's
    releases: :meth:`privacy_spent`) and per client, over the releases the client's updates
    took part in, whatever basket they were in (:meth:`client_privacy_spent`,
    :meth:`max_client_privacy_spent`; give ``client_ids`` to :meth:`aggregate`). Every release
    has the same noise multiplier, so a client's count of releases fixes its privacy loss.
    ``last_stats`` holds the stats of the last call (basket, updates, rule, outliers removed,
    local noise).
    """

    def __init__(
        self,
        config: Layer1Config | None = None,
        *,
        generator: NoiseGenerator | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = Layer1Config() if config is None else config
        if not isinstance(self.config, Layer1Config):
            raise TypeError(f"config must be a Layer1Config, got {type(config).__name__}")
        self.generator = NoiseGenerator() if generator is None else generator
        self.clock = clock
        self.last_stats: dict[str, Any] = {}
        self._accountants: dict[str, RDPAccountant] = {}
        self._client_releases: dict[str, int] = {}
        self._previous: dict[str, np.ndarray[Any, Any]] = {}
        self._dp_fedavg: dict[str, DPFedAvg] = {}

    def savepoint(
        self, basket_ids: Sequence[str] | None = None, client_ids: Sequence[str] | None = None
    ) -> Callable[[], None]:
        """A function that puts the accountants (of ``basket_ids`` and ``client_ids``,
        default all), centers and stats back as they are now (for a caller whose operation
        fails after this layer's part succeeded; baskets and clients not named must not be
        aggregated meanwhile)."""
        ids = list(self._accountants) if basket_ids is None else basket_ids
        saved = {b: copy.deepcopy(self._accountants.get(b)) for b in ids}
        clients = list(self._client_releases) if client_ids is None else client_ids
        counts = {c: self._client_releases.get(c, 0) for c in clients}
        previous, stats = dict(self._previous), self.last_stats
        clips = {b: self._dp_fedavg[b].state() for b in ids if b in self._dp_fedavg}

        def rollback() -> None:
            for b in ids:
                if b in clips:
                    self._dp_fedavg[b].load_state(clips[b])
                else:
                    self._dp_fedavg.pop(b, None)
            for b, acc in saved.items():
                if acc is None:
                    self._accountants.pop(b, None)
                else:
                    self._accountants[b] = acc
            for c, k in counts.items():
                if k:
                    self._client_releases[c] = k
                else:
                    self._client_releases.pop(c, None)
            self._previous, self.last_stats = previous, stats

        return rollback

    def dp_fedavg(self, basket_id: str) -> DPFedAvg | None:
        """The basket's DP-FedAvg state (its adaptive clip norm), made at first use;
        ``None`` without ``dp_fedavg``."""
        cfg = self.config.dp_fedavg
        if cfg is None:
            return None
        if basket_id not in self._dp_fedavg:
            self._dp_fedavg[basket_id] = DPFedAvg(cfg, generator=self.generator, unit="client")
        return self._dp_fedavg[basket_id]

    @property
    def clip_norms(self) -> dict[str, float]:
        """Each basket's current DP-FedAvg clip norm (empty without ``dp_fedavg``)."""
        return {b: dp.clip_norm for b, dp in self._dp_fedavg.items()}

    def _params(self, weights: Any) -> dict[str, Any]:
        cfg = self.config
        params = cfg.rule_params()
        buckets = "bucketing" in as_steps(cfg.pre)  # the rule sees buckets, not updates
        if weights is not None and cfg.aggregation_method in TAKES_WEIGHTS and not buckets:
            params["weights"] = weights
        return params

    def aggregate(
        self,
        updates: Sequence[Any] | np.ndarray[Any, Any],
        weights: Sequence[float] | np.ndarray[Any, Any] | None = None,
        *,
        basket_id: str = "",
        round_id: int = 0,
        expected_contributors: int | None = None,
        client_ids: Sequence[str] | None = None,
    ) -> BasketModel | None:
        """The basket model of ``updates`` (``None`` when there are none).

        Parameters
        ----------
        updates
            An ``(n, d)`` array or a sequence of ``n`` arrays of one shape (read in place).
        weights
            Optional non-negative weight per update (e.g. staleness weights); rules without
            weights (Krum, centered clipping) and rules after bucketing ignore them
            (``last_stats["weights_used"]``).
        basket_id, round_id
            Recorded in the model.
        expected_contributors
            Overrides the config's for the confidence (e.g. the basket's member count).
        client_ids
            Whose each update is, for the per-client accounting of the local noise.
        """
        cfg = self.config
        if len(updates) == 0:
            self.last_stats = {"basket_id": basket_id, "n_updates": 0}
            return None
        if isinstance(updates, Sequence) and isinstance(updates[0], (list, tuple)):
            raise TypeError("Layer 1 takes flat updates (one array each); flatten per-layer models")
        rule = AggregationMethod(cfg.aggregation_method)
        n = len(updates)
        if client_ids is not None and len(client_ids) != n:
            raise ValueError(f"client_ids: need one per update ({n}), got {len(client_ids)}")
        if n < cfg.min_inputs():
            raise ValueError(
                f"{rule.value} with f={cfg.method_params.get('f')} needs at least "
                f"{cfg.min_inputs()} updates; basket {basket_id!r} has {n}"
            )
        if cfg.dp_fedavg is not None:
            return self._dp_fedavg_round(
                updates, basket_id, round_id, expected_contributors, client_ids
            )
        inputs: Any = updates
        if cfg.apply_local_noise:
            inputs = clip_by_l2_norm(updates, cfg.local_clip_norm)
        params = self._params(weights)
        point = _PREVIOUS_AS.get(rule)
        if point is not None and point not in params:
            upd = as_updates(updates)
            shape = upd.shapes[0]
            previous = self._previous.get(basket_id)
            ok = previous is not None and previous.shape == shape and previous.dtype == upd.dtype
            params[point] = previous if ok else np.zeros(shape, upd.dtype)
        result = aggregate(inputs, rule, cfg.pre, **params)
        agg = np.asarray(result.aggregate)
        timestamp = float(self.clock())
        sigma = sensitivity = 0.0
        if cfg.apply_local_noise:
            sensitivity = aggregate_sensitivity(rule, n, cfg.local_clip_norm, pre=cfg.pre, **params)
            z = cfg.noise_multiplier
            sigma = z * sensitivity
            GaussianMechanism(sigma, sensitivity, generator=self.generator).add_noise(
                agg, in_place=True
            )
        self.record_release(basket_id, agg, client_ids)
        expected = expected_contributors or cfg.expected_contributors or cfg.min_updates
        self.last_stats = {
            "basket_id": basket_id,
            "n_updates": n,
            "aggregation_method": rule.value,
            "outliers_removed": len(result.outliers_removed),
            "local_noise_added": cfg.apply_local_noise,
            "local_noise_sigma": sigma,
            "local_sensitivity": sensitivity,
            "weights_used": "weights" in params,
            "selected": result.selected,
        }
        return BasketModel(
            basket_id=basket_id,
            aggregate=agg,
            n_contributors=n,
            round_id=round_id,
            timestamp=timestamp,
            confidence=min(1.0, n / expected),
        )

    def _dp_fedavg_round(
        self,
        updates: Any,
        basket_id: str,
        round_id: int,
        expected_contributors: int | None,
        client_ids: Sequence[str] | None,
    ) -> BasketModel:
        """A DP-FedAvg round over the basket's updates (its candidates)."""
        cfg = self.config
        dp = self.dp_fedavg(basket_id)
        assert dp is not None and cfg.dp_fedavg is not None
        n = len(updates)
        population = cfg.dp_fedavg.population or max(expected_contributors or n, n)
        before = dp.state()
        try:
            rnd = dp.aggregate(updates, population=population)
            self.record_release(basket_id, rnd.aggregate, client_ids)
        except BaseException:
            dp.load_state(before)
            raise
        expected = expected_contributors or cfg.expected_contributors or cfg.min_updates
        self.last_stats = {
            "basket_id": basket_id,
            "n_updates": n,
            "aggregation_method": AggregationMethod.MEAN.value,
            "outliers_removed": 0,
            "local_noise_added": False,
            "local_noise_sigma": rnd.model_sigma / rnd.expected_count,
            "local_sensitivity": rnd.clip_norm / rnd.expected_count,
            "weights_used": False,
            "selected": None,
            "dp_fedavg": {k: v for k, v in rnd.stats().items() if k != "sampled"},
        }
        return BasketModel(
            basket_id=basket_id,
            aggregate=rnd.aggregate,
            n_contributors=n,
            round_id=round_id,
            timestamp=float(self.clock()),
            confidence=min(1.0, n / expected),
        )

    def record_release(
        self,
        basket_id: str,
        aggregate: np.ndarray[Any, Any],
        client_ids: Sequence[str] | None,
        next_clip_norm: float | None = None,
    ) -> None:
        """Account a basket model made (by :meth:`aggregate`, or replayed from a log): the
        noise spent by the basket and its clients (every candidate of a DP-FedAvg round,
        sampled or not), the basket's next center and, replayed, its next DP-FedAvg clip
        norm."""
        noise = self.config.release_noise
        if noise is not None:
            self._accountants.setdefault(basket_id, RDPAccountant()).step(*noise)
            for c in client_ids or ():
                self._client_releases[c] = self._client_releases.get(c, 0) + 1
        dp = self.dp_fedavg(basket_id)
        if dp is not None and next_clip_norm is not None:
            dp.load_state({"clip_norm": next_clip_norm, "rounds": dp.rounds + 1})
        self._previous[basket_id] = aggregate

    def privacy_spent(self, basket_id: str, delta: float | None = None) -> tuple[float, float]:
        """(epsilon, delta) of the local noise (or DP-FedAvg) of every release of
        ``basket_id`` so far."""
        target = self._delta() if delta is None else delta
        acc = self._accountants.get(basket_id)
        if acc is None:
            return 0.0, 0.0
        return acc.get_epsilon(target), float(target)

    def client_privacy_spent(
        self, client_id: str, delta: float | None = None
    ) -> tuple[float, float]:
        """(epsilon, delta) of the local noise of every release ``client_id``'s updates took
        part in, in any basket."""
        return self._spent(self._client_releases.get(client_id, 0), delta)

    def max_client_privacy_spent(self, delta: float | None = None) -> tuple[float, float]:
        """The largest :meth:`client_privacy_spent` over all clients."""
        return self._spent(max(self._client_releases.values(), default=0), delta)

    @property
    def unit(self) -> str:
        """What :meth:`client_privacy_spent` protects: ``"client"`` under DP-FedAvg (all of a
        client's updates), else ``"client update"`` (one update replaced, in its basket)."""
        return "client" if self.config.dp_fedavg is not None else "client update"

    def _delta(self) -> float:
        dp = self.config.dp_fedavg
        return self.config.local_delta if dp is None else dp.delta

    def _spent(self, releases: int, delta: float | None) -> tuple[float, float]:
        target = self._delta() if delta is None else delta
        noise = self.config.release_noise
        if releases == 0 or noise is None:
            return 0.0, 0.0
        rdp = compute_rdp(noise[0], noise[1], releases)
        return rdp_to_epsilon(DEFAULT_ORDERS, rdp, target)[0], float(target)


class Weighting(str, Enum):
    """How Layer 2 weights basket models."""

    SIZE = "size"
    UNIFORM = "uniform"
    CONFIDENCE = "confidence"
    TRUST = "trust"


@dataclass
class Layer2Config:
    """Settings of the aggregation across baskets.

    Attributes
    ----------
    use_secure_aggregation
        Sum the basket models with SecAgg+ (when at least two take part).
    central_dp_epsilon, central_dp_delta
        Per-round (epsilon, delta) of the central noise (analytic Gaussian); ``None`` for
        epsilon turns central DP off. ``central_dp_delta`` is also the delta at which
        ``privacy_spent`` is reported.
    clip_norm
        L2 norm every basket model is clipped to (bounds the sensitivity).
    min_baskets
        Basket models the global trigger waits for.
    weight_by_size
        Weight by ``n_contributors`` (else uniformly), unless ``weighting`` says otherwise.
    weighting
        ``"size"``, ``"uniform"``, ``"confidence"`` or ``"trust"`` (size times
        ``basket_trust`` times the reliability score, :mod:`hierfed.trust`); ``None`` follows
        ``weight_by_size``.
    basket_trust
        With ``"trust"``: the operator's trust in each basket by id (finite, >= 0; 1 for a
        basket not listed); a basket of trust 0 is left out of the round.
    reliability, reliability_decay
        With ``"trust"``: also weight each basket by its agreement with the robust consensus
        over past rounds (an exponential average with this decay); needs the basket models
        in the clear (no secure aggregation).
    central_dp_noise_multiplier
        Noise standard deviation over sensitivity per round; overrides ``central_dp_epsilon``
        (the form for many rounds; the accountant composes them).
    robust_method, robust_params
        A robust rule across the (clipped) basket models instead of their weighted mean, with
        its parameters (e.g. ``"median"``, or ``"trimmed_mean"`` with ``{"trim_ratio": 0.2}``):
        a basket taken over by attackers is then outvoted. It needs the basket models in the
        clear, so it excludes secure aggregation; central noise is calibrated to the rule's
        sensitivity (:mod:`hierfed.sensitivity`).
    dp_fedavg
        Basket-level DP-FedAvg with adaptive clipping (:class:`~hierfed.privacy.DPFedAvg`)
        instead of the central noise: each round Poisson-samples the basket models at
        ``dp_fedavg.sample_rate``, clips them to the adaptive clip norm, noises their sum and
        divides it by ``q N`` (``N``: ``dp_fedavg.population``, default the basket models
        offered). The sum is unweighted (``weight_by_size`` and ``clip_norm`` are not used);
        it needs
        ``central_dp_epsilon=None``, no ``central_dp_noise_multiplier``, no ``robust_method``,
        no ``weighting`` but ``"uniform"`` and ``use_secure_aggregation=False`` (the sampled
        models are summed in this process). The epsilon protects one basket.
    """

    use_secure_aggregation: bool = True
    central_dp_epsilon: float | None = 1.0
    central_dp_delta: float = 1e-5
    clip_norm: float = 1.0
    min_baskets: int = 2
    weight_by_size: bool = True
    weighting: Weighting | str | None = None
    central_dp_noise_multiplier: float | None = None
    robust_method: AggregationMethod | str | None = None
    robust_params: dict[str, Any] = field(default_factory=dict)
    basket_trust: dict[str, float] = field(default_factory=dict)
    reliability: bool = False
    reliability_decay: float = 0.5
    dp_fedavg: DPFedAvgConfig | None = None

    def __post_init__(self) -> None:
        trust.check_config(self)
        _check_dp_fedavg(self.dp_fedavg, "layer2")
        if self.dp_fedavg is not None:
            clash = {
                "central_dp_epsilon": self.central_dp_epsilon is not None,
                "central_dp_noise_multiplier": self.central_dp_noise_multiplier is not None,
                "robust_method": self.robust_method is not None,
                "weighting": self.weighting not in (None, Weighting.UNIFORM, "uniform"),
                "use_secure_aggregation": self.use_secure_aggregation is not False,
            }
            given = [k for k, v in clash.items() if v]
            if given:
                raise ValueError(
                    "layer2: dp_fedavg replaces the central noise with an unweighted sum of the "
                    f"sampled basket models made in this process; unset {', '.join(given)} "
                    "(central_dp_epsilon=None, use_secure_aggregation=False)"
                )
        if self.robust_method is not None:
            self.robust_method = method_of(self.robust_method, "robust_method")
            if self.use_secure_aggregation:
                raise ValueError(
                    "robust_method needs the basket models in the clear; secure aggregation "
                    "reveals only their sum: set use_secure_aggregation=False"
                )
        if not isinstance(self.robust_params, Mapping):
            raise TypeError("robust_params must be a dict of the rule's parameters")
        for name in ("use_secure_aggregation", "weight_by_size"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool")
        if self.central_dp_epsilon is not None:
            _checks.positive(self.central_dp_epsilon, "central_dp_epsilon")
        _checks.probability_open(self.central_dp_delta, "central_dp_delta")
        _checks.positive(self.clip_norm, "clip_norm")
        _checks.count(self.min_baskets, "min_baskets", 1)
        if self.weighting is not None:
            try:
                self.weighting = Weighting(self.weighting)
            except ValueError:
                known = ", ".join(w.value for w in Weighting)
                raise ValueError(
                    f"weighting must be one of {known}; got {self.weighting!r}"
                ) from None
        if self.central_dp_noise_multiplier is not None:
            _checks.positive(self.central_dp_noise_multiplier, "central_dp_noise_multiplier")
        if self.robust_method is not None:
            rule = AggregationMethod(self.robust_method)
            need = min_inputs(rule, self.robust_params)
            dry_run(rule, self.robust_params, max(need, self.min_baskets), "layer2")
            if self.min_baskets < need:
                raise ValueError(
                    f"layer2: robust_method {rule.value} with {dict(self.robust_params)} needs "
                    f"at least {need} basket models, but the global trigger fires at "
                    f"min_baskets={self.min_baskets}: raise min_baskets to {need}"
                )

    @property
    def scheme(self) -> Weighting:
        """The weighting in force."""
        if self.weighting is not None:
            return Weighting(self.weighting)
        return Weighting.SIZE if self.weight_by_size else Weighting.UNIFORM

    @property
    def central_dp(self) -> bool:
        """Whether central noise is added."""
        return self.central_dp_epsilon is not None or self.central_dp_noise_multiplier is not None


@dataclass
class GlobalMetaModel:
    """The global aggregate of one Layer 2 round.

    ``privacy_spent`` is the central DP (epsilon, delta) over all rounds so far.
    """

    aggregate: np.ndarray[Any, Any]
    n_baskets: int
    n_clients_total: int
    round_id: int
    timestamp: float
    privacy_spent: tuple[float, float]


def _raw_weights(models: list[BasketModel], scheme: Weighting) -> NDArray[np.float64]:
    if scheme in (Weighting.SIZE, Weighting.TRUST):
        raw = [float(m.n_contributors) for m in models]
    elif scheme is Weighting.CONFIDENCE:
        raw = [float(m.confidence) for m in models]
    else:
        raw = [1.0] * len(models)
    w = np.asarray(raw, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"basket weights ({scheme.value}) must be finite and >= 0, got {raw}")
    if w.sum() <= 0:
        raise ValueError(f"every basket model has weight zero ({scheme.value})")
    normalised: NDArray[np.float64] = w / w.sum()
    return normalised


def _check_models(basket_models: Any) -> list[BasketModel]:
    if isinstance(basket_models, (str, bytes)) or not isinstance(basket_models, Sequence):
        raise TypeError("basket_models must be a sequence of BasketModel (or None)")
    models = []
    for i, m in enumerate(basket_models):
        if m is None:
            continue
        if not isinstance(m, BasketModel):
            raise TypeError(f"basket_models[{i}] must be a BasketModel or None")
        refuse_masked(m.aggregate, f"basket_models[{i}].aggregate")
        if m.n_contributors > 0:
            models.append(m)
    if not models:
        raise ValueError("no basket model to aggregate (all None or empty)")
    first = np.asarray(models[0].aggregate)
    for m in models:
        a = np.asarray(m.aggregate)
        if a.shape != first.shape or a.dtype != first.dtype:
            raise ValueError(
                f"basket {m.basket_id!r}: aggregate {a.shape} {a.dtype} differs from "
                f"{models[0].basket_id!r}'s {first.shape} {first.dtype}"
            )
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"basket {m.basket_id!r}: aggregates must be float32 or float64")
    return models


class Layer2Aggregator:
    """Combines basket models into a :class:`GlobalMetaModel`, round after round.

    Each round: basket models that are ``None`` or empty are skipped; the rest are clipped to
    ``clip_norm`` (L2) and weighted (normalised weights ``w``, public); their weighted sum is
    computed with SecAgg+ when ``use_secure_aggregation`` and at least two take part (each
    basket submits ``w_i x_i``; a basket dropping out of the protocol leaves the survivors'
    weights renormalised); then central Gaussian noise of standard deviation
    ``z * 2 clip_norm max(w)`` (the replace-one sensitivity of the weighted sum) is added, and
    the accountant records the round.

    Everything here runs in one process, which holds every basket model: the SecAgg+ round is
    a simulation of the protocol (``last_stats["secure_agg_simulated"]``), not a protection
    (``last_stats["secure_agg_used"]`` is ``False``), and the central noise is added by this
    process, trusted with the exact sum (which it does not keep: the coordinator's
    ``last_result`` is cleared). :mod:`hierfed.deploy` runs the roles as separate parties,
    with SecAgg+ among the basket aggregators and distributed noise the server never sees
    removed.

    Parameters
    ----------
    config
        A :class:`Layer2Config`.
    generator
        Noise source (default: a fresh secure :class:`~hierfed.privacy.NoiseGenerator`).
    accountant
        Accountant of the central noise (default :class:`~hierfed.privacy.RDPAccountant`).
    clock
        Gives :attr:`GlobalMetaModel.timestamp` (default ``time.time``).
    """

    def __init__(
        self,
        config: Layer2Config | None = None,
        *,
        generator: NoiseGenerator | None = None,
        accountant: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = Layer2Config() if config is None else config
        if not isinstance(self.config, Layer2Config):
            raise TypeError(f"config must be a Layer2Config, got {type(config).__name__}")
        cfg = self.config
        self.mechanism: CentralDPMechanism | None = None
        if cfg.central_dp_noise_multiplier is not None:
            self.mechanism = CentralDPMechanism.from_noise_multiplier(
                cfg.central_dp_noise_multiplier,
                cfg.central_dp_delta,
                generator=generator,
                accountant=accountant,
            )
        elif cfg.central_dp_epsilon is not None:
            self.mechanism = CentralDPMechanism(
                cfg.central_dp_epsilon,
                cfg.central_dp_delta,
                1.0,
                generator=generator,
                accountant=accountant,
            )
        self.dp_fedavg: DPFedAvg | None = None
        if cfg.dp_fedavg is not None:
            self.dp_fedavg = DPFedAvg(cfg.dp_fedavg, generator=generator, unit="basket")
        self.clock = clock
        self.rounds = 0
        self.last_stats: dict[str, Any] = {}
        self.reliability = trust.ReliabilityTracker(cfg.reliability_decay)

    def savepoint(self) -> Callable[[], None]:
        """A function that puts the round count, the accountant, the stats and the
        reliability scores back as they are now (for a caller whose operation fails after
        this layer's part succeeded)."""
        rounds, stats, mechanism = self.rounds, self.last_stats, self.mechanism
        scores = dict(self.reliability.scores)
        saved = None
        if mechanism is not None:
            saved = (mechanism.rounds, copy.deepcopy(mechanism.accountant))
        dp_state = None if self.dp_fedavg is None else self.dp_fedavg.state()

        def rollback() -> None:
            if self.dp_fedavg is not None and dp_state is not None:
                self.dp_fedavg.load_state(dp_state)
            self.rounds, self.last_stats = rounds, stats
            self.reliability.scores = scores
            if mechanism is not None and saved is not None:
                mechanism.rounds, mechanism.accountant = saved

        return rollback

    def record_round(self, next_clip_norm: float | None = None) -> None:
        """Account a round made elsewhere (replayed from a log): its central noise, or its
        DP-FedAvg round and the clip norm it moved to."""
        if self.dp_fedavg is not None:
            dp = self.dp_fedavg
            clip = dp.clip_norm if next_clip_norm is None else next_clip_norm
            dp.load_state({"clip_norm": clip, "rounds": dp.rounds + 1})
        if self.mechanism is not None:
            self.mechanism.accountant.step(
                self.mechanism.noise_multiplier, self.mechanism.sample_rate
            )
            self.mechanism.rounds += 1
        self.rounds += 1

    def privacy_spent(self) -> tuple[float, float]:
        """Central (epsilon, delta) over every round so far, of one basket (:attr:`unit`);
        (0, 0) without central DP or DP-FedAvg."""
        if self.dp_fedavg is not None:
            return (0.0, 0.0) if self.dp_fedavg.rounds == 0 else self.dp_fedavg.privacy_spent()
        return (0.0, 0.0) if self.mechanism is None else self.mechanism.privacy_spent()

    @property
    def unit(self) -> str:
        """What :meth:`privacy_spent` protects: one ``"basket"`` (its model, replaced under
        central DP, added or removed under DP-FedAvg)."""
        return "basket"

    def aggregate(
        self,
        basket_models: Sequence[BasketModel | None],
        secure_agg_coordinator: SecureAggregator | None = None,
    ) -> GlobalMetaModel:
        """The global model of ``basket_models``.

        Parameters
        ----------
        basket_models
            This round's basket models; ``None`` and empty ones are skipped.
        secure_agg_coordinator
            The :class:`SecureAggregator` to run the sum (default: one made from the config,
            clipping coordinates to ``clip_norm``, which clipped models never exceed).
        """
        cfg = self.config
        models = _check_models(basket_models)
        if cfg.scheme is Weighting.TRUST:
            models = [m for m in models if cfg.basket_trust.get(m.basket_id, 1.0) > 0]
            if not models:
                raise ValueError("every basket model has weight zero (basket_trust)")
        w = _raw_weights(models, cfg.scheme)
        if cfg.scheme is Weighting.TRUST:
            w = trust.trust_weights(models, w, cfg.basket_trust, self.reliability)
        arrays = [np.asarray(m.aggregate) for m in models]
        norms = l2_norms(arrays)
        clipped = clip_by_l2_norm(arrays, cfg.clip_norm)
        secure = cfg.use_secure_aggregation and len(models) >= 2
        survivors = list(range(len(models)))
        dp_stats = None
        if self.dp_fedavg is not None:
            rnd = self.dp_fedavg.aggregate(arrays)
            agg, sensitivity = rnd.aggregate, rnd.clip_norm / rnd.expected_count
            w = np.full(len(models), 1.0 / rnd.expected_count)
            dp_stats = {k: v for k, v in rnd.stats().items() if k != "sampled"}
        elif secure:
            coordinator = secure_agg_coordinator or SecureAggregator(
                SecAggConfig(clip=cfg.clip_norm)
            )
            for i, x in enumerate(clipped):
                coordinator.submit_share(i, (x * w[i]).astype(x.dtype, copy=False))
            total = np.asarray(coordinator.finalize())
            assert coordinator.last_result is not None
            alive = set(coordinator.last_result.survivors)
            coordinator.last_result = None  # the un-noised sum is not kept (noise comes next)
            survivors = [i for i in survivors if i in alive]
            agg = (total / w[survivors].sum()).astype(arrays[0].dtype)
            sensitivity = 2.0 * cfg.clip_norm * float(w[survivors].max() / w[survivors].sum())
        elif cfg.robust_method is not None:
            rule = AggregationMethod(cfg.robust_method)
            params = dict(cfg.robust_params)
            if rule in TAKES_WEIGHTS:
                params["weights"] = w
            agg = np.asarray(aggregate(clipped, rule, **params).aggregate)
            sensitivity = aggregate_sensitivity(rule, len(models), cfg.clip_norm, **params)
        else:
            agg = weighted_average(clipped, w)
            sensitivity = 2.0 * cfg.clip_norm * float(w.max())
        if cfg.reliability:
            self.reliability.observe([m.basket_id for m in models], clipped)
        sigma = 0.0
        timestamp = float(self.clock())
        if self.mechanism is not None:
            agg = self.mechanism.add_noise(agg, in_place=True, sensitivity=sensitivity)
            sigma = self.mechanism.noise_multiplier * sensitivity
        if dp_stats is not None:
            sigma = dp_stats["model_sigma"] / dp_stats["expected_count"]
        spent = self.privacy_spent()
        kept = [models[i] for i in survivors]
        round_id = self.rounds
        self.rounds += 1
        n_clients = sum(m.n_contributors for m in kept)
        self.last_stats = {
            "n_baskets": len(kept),
            "n_clients_total": n_clients,
            # in process, SecAgg+ runs over basket models this process already holds: it is
            # simulated and protects nothing (hierfed.deploy runs it between real parties)
            "secure_agg_used": False,
            "secure_agg_simulated": secure,
            "privacy": "dp_fedavg"
            if dp_stats is not None
            else ("central" if self.mechanism is not None else "none"),
            "privacy_unit": self.unit,
            "robust_method": None
            if cfg.robust_method is None
            else AggregationMethod(cfg.robust_method).value,
            "central_dp_epsilon": cfg.central_dp_epsilon if self.mechanism else None,
            "round_id": round_id,
            "privacy_spent": spent,
            "noise_sigma": sigma,
            "sensitivity": sensitivity,
            "basket_ids": [m.basket_id for m in models],
            "weights": [float(x) for x in w],
            # under DP-FedAvg the count within the clip norm is released only noised
            "baskets_clipped": None if dp_stats else int(np.sum(norms > cfg.clip_norm)),
            "baskets_dropped": [
                models[i].basket_id for i in range(len(models)) if i not in survivors
            ],
            "reliability": dict(self.reliability.scores),
            "dp_fedavg": dp_stats,
        }
        return GlobalMetaModel(
            aggregate=agg,
            n_baskets=len(kept),
            n_clients_total=n_clients,
            round_id=round_id,
            timestamp=timestamp,
            privacy_spent=spent,
        )


def _aggregates(basket_models: Sequence[BasketModel | np.ndarray[Any, Any]]) -> list[Any]:
    return [m.aggregate if isinstance(m, BasketModel) else m for m in basket_models]


def weighted_average(
    basket_models: Sequence[BasketModel | np.ndarray[Any, Any]], weights: ArrayLike
) -> np.ndarray[Any, Any]:
    """sum w_i x_i / sum w_i over basket models (or arrays); no clipping, no noise."""
    return np.asarray(mean(_aggregates(basket_models), weights=weights))


def simple_average(
    basket_models: Sequence[BasketModel | np.ndarray[Any, Any]],
) -> np.ndarray[Any, Any]:
    """The unweighted mean of basket models (or arrays); no clipping, no noise."""
    return np.asarray(mean(_aggregates(basket_models)))
