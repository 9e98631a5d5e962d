"""One simulated federation run: a setup, an attack, rounds of local SGD and aggregation.

Setups (same clients, data, attackers and seed for all of them):

- ``fedavg``: flat; the server takes the plain mean of every client's update.
- ``flat``: flat; the server runs the robust rule over every client's update, with ``f``
  times the number of baskets as its ``f`` (the same total tolerance as the hierarchy), at
  most what the number of clients allows.
- ``hierarchical``: a :class:`~hierfed.HierarchicalFederation`: the rule in every basket
  (Layer 1), basket models clipped to ``clip_norm`` and averaged by size (Layer 2), with the
  config's DP and secure aggregation options.
- ``hierarchical_dp``: the same plus secure aggregation and record-level DP: every client
  trains with DP-SGD (:mod:`~hierfed.simulation.dpsgd`) at the config's record epsilon or
  noise multiplier (``DEFAULT_RECORD_EPSILON`` when neither is given); the run reports the
  largest per-client epsilon, which is each record's.
- ``hierarchical_dpfedavg``: client-level DP instead: every basket runs DP-FedAvg with
  adaptive clipping over its clients (Andrew et al. 2021; :class:`~hierfed.privacy.DPFedAvg`:
  Poisson sampling at ``client_sample_rate``, the mean of clipped updates, noise on the sum)
  at the config's client epsilon or noise multiplier (``DEFAULT_CLIENT_EPSILON``), then
  secure aggregation across baskets; the run reports the largest per-client epsilon.

A round: every client starts from the global model of this round; honest clients run
:func:`~hierfed.simulation.models.local_sgd`; stragglers deliver their update one round late
(weighted by the staleness function); Byzantine clients never straggle and send the attack's
update, which ALIE, IPM, their optimal variants and Mimic compute from the honest updates
delivered in the same aggregation group (the attacker's basket in hierarchical setups, all
clients in flat ones); the optimal variants search their factor against that group's rule
with its parameters (:meth:`Simulation._attackers_rule`). Updates holding NaN or infinity
(``inf``) are refused: by the federation on submission, by the flat server before its rule,
and counted in ``details["rejected"]``. Then the
updates are aggregated, the global model moves, and the test accuracy is measured.

Determinism: every random draw comes from a generator seeded by the config's seed and the
draw's role, round and client, so two runs of one config give the same numbers; secure
aggregation's fixed-point encoding rounds stochastically from the operating system's
randomness (by design it takes no seed), which perturbs results by about
``clip_norm * 2**-28`` per coordinate and round.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..aggregator import AggregationMethod, aggregate
from ..basket import BasketConfig, BasketManager
from ..federation import FederationConfig, HierarchicalFederation
from ..layers import Layer1Config, Layer2Config
from ..optimizers import ServerOptimizer
from ..privacy import DPFedAvgConfig, NoiseGenerator
from ..staleness import staleness_function
from . import attacks
from .config import DEFAULT_CLIENT_EPSILON, DEFAULT_RECORD_EPSILON, SimulationConfig
from .datasets import FederatedData
from .dpsgd import dp_sgd, epsilon_spent, noise_multiplier_for_epsilon, steps_per_epoch
from .models import Model, accuracy, local_sgd, make_model

__all__ = ["RoundMetrics", "RunResult", "Simulation"]

FloatArray = NDArray[np.float64]
Progress = Callable[[], None]
# A group's aggregation as the attackers evaluate it: (group name, (n, d) updates) -> aggregate.
GroupRule = Callable[[str, FloatArray], FloatArray]
# Rounds Mimic spends learning whom to copy (Karimireddy et al. 2022's heuristic).
MIMIC_LEARNING_ROUNDS = 5

_TAG_INIT, _TAG_SGD, _TAG_STRAGGLE, _TAG_ATTACK, _TAG_BYZ, _TAG_BUCKETS = 11, 12, 13, 14, 15, 16
_TAKES_WEIGHTS = {
    "mean",
    "trimmed_mean",
    "median",
    "multi_krum",
    "bulyan",
    "geometric_median",
    "mda",
    "meamed",
    "monna",
}
# Rules given the previous aggregate (zeros at first) as this parameter.
_PREVIOUS_AS = {"centered_clipping": "center", "monna": "trusted"}


def _mean_rows(v: FloatArray) -> FloatArray:
    out: FloatArray = v.mean(axis=0)
    return out


@dataclass
class RoundMetrics:
    """What one round gives: test accuracy and loss, central, local and record-level epsilon
    so far, time."""

    round: int
    accuracy: float
    loss: float
    epsilon: float
    local_epsilon: float
    seconds: float
    record_epsilon: float = 0.0
    client_epsilon: float = 0.0


@dataclass
class RunResult:
    """One setup under one attack."""

    setup: str
    label: str
    attack: str
    rounds: list[RoundMetrics]
    privacy_spent: tuple[float, float]
    local_privacy_spent: tuple[float, float]
    details: dict[str, Any] = field(default_factory=dict)
    short_label: str = ""
    record_privacy_spent: tuple[float, float] = (0.0, 0.0)
    client_privacy_spent: tuple[float, float] = (0.0, 0.0)

    @property
    def final_accuracy(self) -> float:
        """Test accuracy after the last round."""
        return self.rounds[-1].accuracy

    @property
    def best_accuracy(self) -> float:
        """Best test accuracy over the rounds."""
        return max(r.accuracy for r in self.rounds)

    def rounds_to(self, target: float) -> int | None:
        """First round (1-based) reaching ``target`` accuracy, or ``None``."""
        return next((r.round for r in self.rounds if r.accuracy >= target), None)

    @property
    def seconds_per_round(self) -> float:
        """Mean wall time of a round."""
        return float(np.mean([r.seconds for r in self.rounds]))

    def to_dict(self, target: float) -> dict[str, Any]:
        """A JSON-ready summary with the per-round metrics."""
        return {
            "setup": self.setup,
            "label": self.label,
            "short_label": self.short_label,
            "attack": self.attack,
            "final_accuracy": self.final_accuracy,
            "best_accuracy": self.best_accuracy,
            "rounds_to_target": self.rounds_to(target),
            "seconds_per_round": self.seconds_per_round,
            "privacy_spent": {"epsilon": self.privacy_spent[0], "delta": self.privacy_spent[1]},
            "local_privacy_spent": {
                "epsilon": self.local_privacy_spent[0],
                "delta": self.local_privacy_spent[1],
            },
            "record_privacy_spent": {
                "epsilon": self.record_privacy_spent[0],
                "delta": self.record_privacy_spent[1],
            },
            "client_privacy_spent": {
                "epsilon": self.client_privacy_spent[0],
                "delta": self.client_privacy_spent[1],
            },
            "details": self.details,
            "rounds": [vars(r) for r in self.rounds],
        }


class Simulation:
    """The clients, their baskets and the attackers of one config and dataset.

    Parameters
    ----------
    config
        The settings.
    data
        The federated split (:func:`~hierfed.simulation.datasets.make_federated`).

    Raises
    ------
    ValueError
        A basket too small for the rule with its ``f``.
    """

    def __init__(self, config: SimulationConfig, data: FederatedData) -> None:
        self.config = config
        self.data = data
        self.model: Model = make_model(config.model, data.n_features, data.n_classes, config.hidden)
        self.ids = [f"client_{i}" for i in range(data.n_clients)]
        self.baskets = self._plan_baskets()
        sizes = [len(m) for m in self.baskets.values()]
        self.f = config.f_for(min(sizes))
        need = config.min_inputs(self.f)
        if min(sizes) < need:
            raise ValueError(
                f"{config.rule} with f={self.f} needs at least {need} clients per basket; the "
                f"smallest basket has {min(sizes)} (clients per domain "
                f"{self._domain_sizes()}, clients_per_basket={config.clients_per_basket})"
            )
        n = data.n_clients
        self.flat_f: int | None = None
        if self.f is not None:
            self.flat_f = min(self.f * len(self.baskets), self._flat_cap(n))
        self._check_rule(min(sizes))
        self.byzantine = self._place_byzantine(config.n_byzantine)
        self.basket_of = {c: b for b, members in self.baskets.items() for c in members}
        self._bucket_rng = np.random.default_rng([config.seed, _TAG_BUCKETS])
        self._record_z: float | None = None  # DP-SGD's noise multiplier in the current run
        self._record_runs: dict[int, int] = {}  # DP-SGD trainings per client in the run
        self._momentum: dict[int, FloatArray] = {}  # worker momentum per client in the run
        self._mimic: dict[str, attacks.MimicTarget] = {}
        self._rejected = 0

    def _check_rule(self, n: int) -> None:
        """Run the rule once on ``n`` dummy updates so bad parameters fail before any round."""
        cfg = self.config
        params = cfg.rule_kwargs()
        if self.f is not None:
            params["f"] = self.f
        if cfg.rule in _PREVIOUS_AS:
            params[_PREVIOUS_AS[cfg.rule]] = np.zeros(2)
        try:
            aggregate(np.zeros((n, 2)), cfg.rule, cfg.pre, **params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rule {cfg.rule} with {sorted(params)}: {exc}") from None

    def tolerated(self, n: int) -> int | None:
        """Byzantine updates the rule withstands among ``n`` (``None``: no such bound)."""
        cfg = self.config
        if cfg.rule == "mean":
            return 0
        if cfg.rule == "trimmed_mean":
            return int(cfg.rule_kwargs()["trim_ratio"] * n)
        if cfg.rule in ("median", "geometric_median"):
            return (n - 1) // 2
        return self.f

    def warnings(self) -> list[str]:
        """What makes the attack win before any round runs: a Byzantine majority, or a basket
        holding more attackers than its rule withstands."""
        n, byz = self.data.n_clients, len(self.byzantine)
        out = []
        if 2 * byz > n:
            out.append(
                f"a Byzantine majority ({byz} of {n} clients): no robust rule withstands one; "
                "expect every setup to fail under the attack"
            )
        worst = max(self.baskets.items(), key=lambda b: sum(c in self.byzantine for c in b[1]))
        inside = sum(c in self.byzantine for c in worst[1])
        tolerated = self.tolerated(len(worst[1]))
        if tolerated is not None and inside > tolerated:
            out.append(
                f"basket {worst[0]} holds {inside} Byzantine clients of {len(worst[1])}; "
                f"{self.config.rule} withstands {tolerated} there"
            )
        return out

    # ---- layout --------------------------------------------------------------------------

    def _domain_sizes(self) -> list[int]:
        counts = np.bincount(self.data.client_domain, minlength=len(self.data.domain_names))
        return [int(k) for k in counts]

    def _flat_cap(self, n: int) -> int:
        return self.config.f_most(n)

    def _manager_config(self) -> BasketConfig:
        return BasketConfig(min_clients=1, max_clients=self.config.clients_per_basket)

    def _register(self, register: Callable[[str, str], str]) -> dict[str, list[int]]:
        baskets: dict[str, list[int]] = {}
        for i, cid in enumerate(self.ids):
            domain = self.data.domain_names[int(self.data.client_domain[i])]
            baskets.setdefault(register(cid, domain), []).append(i)
        return baskets

    def _plan_baskets(self) -> dict[str, list[int]]:
        """Basket id -> member client indices, as the basket manager assigns them."""
        manager = BasketManager(self._manager_config(), clock=lambda: 0.0, seed=self.config.seed)
        return self._register(lambda cid, dom: manager.add_client(cid, dom))

    def _place_byzantine(self, count: int) -> frozenset[int]:
        """``count`` Byzantine clients: spread over baskets in proportion to their sizes
        (largest remainders, ties to the earlier basket), or filling the baskets of the first
        domains first; inside a basket, drawn at random."""
        if count == 0:
            return frozenset()
        rng = np.random.default_rng([self.config.seed, _TAG_BYZ])
        members = list(self.baskets.values())
        sizes = np.array([len(m) for m in members], dtype=np.float64)
        if self.config.placement == "spread":
            quota = sizes * count / sizes.sum()
            take = np.floor(quota).astype(int)
            for j in np.argsort(-(quota - take), kind="stable")[: count - int(take.sum())]:
                take[j] += 1
        else:
            take = np.zeros(len(members), dtype=int)
            left = count
            for j in sorted(
                range(len(members)), key=lambda j: min(self.data.client_domain[members[j]])
            ):
                take[j] = min(left, len(members[j]))
                left -= int(take[j])
        chosen: list[int] = []
        for m, k in zip(members, take, strict=True):
            chosen.extend(int(c) for c in rng.choice(m, size=int(k), replace=False))
        return frozenset(chosen)

    # ---- one client ------------------------------------------------------------------------

    def client_update(self, theta: FloatArray, c: int, t: int, *, flip: bool = False) -> FloatArray:
        """Client ``c``'s honest update from ``theta`` in round ``t`` (labels flipped when
        ``flip``): :func:`~hierfed.simulation.models.local_sgd`, or
        :func:`~hierfed.simulation.dpsgd.dp_sgd` in a run with record-level DP (its delta
        clipped to ``clip_norm`` too), with a generator seeded by the seed, ``t`` and
        ``c``."""
        cfg = self.config
        y = self.data.client_y[c]
        if flip:
            y = attacks.flip_labels(y, self.data.n_classes)
        if self._record_z is not None:
            self._record_runs[c] = self._record_runs.get(c, 0) + 1
            delta = dp_sgd(
                self.model,
                theta,
                self.data.client_x[c],
                y,
                steps=cfg.local_epochs * steps_per_epoch(cfg.record_sample_rate),
                sample_rate=cfg.record_sample_rate,
                learning_rate=cfg.learning_rate,
                record_clip_norm=cfg.record_clip_norm,
                noise_multiplier=self._record_z,
                rng=np.random.default_rng([cfg.seed, _TAG_SGD, t, c]),
            )
            norm = float(np.linalg.norm(delta))
            return delta * (cfg.clip_norm / norm) if norm > cfg.clip_norm else delta
        return local_sgd(
            self.model,
            theta,
            self.data.client_x[c],
            y,
            epochs=cfg.local_epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            clip_norm=cfg.clip_norm,
            rng=np.random.default_rng([cfg.seed, _TAG_SGD, t, c]),
        )

    def byzantine_updates(
        self,
        theta: FloatArray,
        t: int,
        attack: str,
        byzantine: list[int],
        delivered: dict[int, tuple[FloatArray, int]],
        groups: dict[str, list[int]],
        rule: GroupRule | None = None,
    ) -> dict[int, FloatArray]:
        """The updates the ``byzantine`` clients send in round ``t``.

        Parameters
        ----------
        theta
            The round's global model.
        t
            The round.
        attack
            The attack (see :mod:`hierfed.simulation.attacks`).
        byzantine
            The attackers sending this round.
        delivered
            The honest updates of the round (client -> (update, base version)).
        groups
            The aggregation groups (name -> clients): ALIE, IPM, their optimal variants and
            Mimic use the honest updates delivered in the attacker's group (all honest updates
            when it has fewer than two) and the group's counts.
        rule
            The aggregation of a group as the attackers see it (group name, ``(n, d)`` updates
            -> aggregate), for the optimal attacks' line search; default the mean.
        """
        given = self.config.attack_strength if attack == self.config.attack else None
        strength = given if given is not None else attacks.DEFAULT_STRENGTH[attack]
        out: dict[int, FloatArray] = {}
        if attack in ("sign_flip", "label_flip"):
            for c in byzantine:
                g = self.client_update(theta, c, t, flip=attack == "label_flip")
                out[c] = (
                    attacks.sign_flip(g, float(strength or 0.0)) if attack == "sign_flip" else g
                )
            return out
        if attack == "gaussian":
            for c in byzantine:
                rng = np.random.default_rng([self.config.seed, _TAG_ATTACK, t, c])
                out[c] = attacks.gaussian(self.model.n_params, float(strength or 0.0), rng)
            return out
        if attack == "inf":
            return {c: attacks.inf(self.model.n_params) for c in byzantine}
        everyone = [u for c, (u, _) in delivered.items() if c not in self.byzantine]
        for name, members in groups.items():
            byz = [c for c in members if c in byzantine]
            if not byz:
                continue
            honest = [
                delivered[c][0] for c in members if c in delivered and c not in self.byzantine
            ]
            ref = np.array(honest if len(honest) >= 2 else everyone)
            n = len(honest) + len(byz)
            vec = self._group_attack(attack, name, ref, n, len(byz), rule, given, strength)
            for c in byz:
                out[c] = vec
        return out

    def _group_attack(
        self,
        attack: str,
        group: str,
        ref: FloatArray,
        n: int,
        f: int,
        rule: GroupRule | None,
        given: float | None,
        strength: float | None,
    ) -> FloatArray:
        """The one update every attacker of ``group`` sends (``ref``: honest updates)."""
        if attack == "alie":
            return attacks.alie(ref, n, f, given)
        if attack == "ipm":
            return attacks.ipm(ref, float(strength or 0.0))
        if attack == "mimic":
            seed = [self.config.seed, _TAG_ATTACK, len(self._mimic)]
            target = self._mimic.setdefault(
                group, attacks.MimicTarget(MIMIC_LEARNING_ROUNDS, np.random.default_rng(seed))
            )
            return attacks.mimic(ref, target(ref))

        def aggregate_group(v: FloatArray) -> FloatArray:
            return _mean_rows(v) if rule is None else rule(group, v)

        if attack == "optimal_ipm":
            return attacks.optimal_ipm(ref, f, aggregate_group)
        if attack == "optimal_alie":
            return attacks.optimal_alie(ref, f, aggregate_group)
        raise ValueError(f"unknown attack {attack!r}")  # pragma: no cover - config checks

    def _attackers_rule(
        self, setup: str, fed: HierarchicalFederation | None, center: FloatArray | None
    ) -> GroupRule:
        """A group's aggregation as the colluding attackers evaluate it: the rule in use with
        its parameters (the flat server's, or the basket's Layer 1 with the basket's previous
        model as centre), stalenesses and the server's bucket order unknown to them (their
        own shuffle)."""
        rng = np.random.default_rng([self.config.seed, _TAG_ATTACK, _TAG_BUCKETS])

        def flat(group: str, v: FloatArray) -> FloatArray:
            rule, pre, params = self._flat_rule(setup, len(v), center, v.shape[1])
            if pre and "bucketing" in pre:
                params["seed"] = rng
            return np.asarray(aggregate(v, rule, pre, **params).aggregate, np.float64)

        def basket(group: str, v: FloatArray) -> FloatArray:
            assert fed is not None
            cfg = fed.layer1.config
            rule = AggregationMethod(cfg.aggregation_method)
            params = cfg.rule_params()
            if "seed" in params:
                params["seed"] = rng
            point = _PREVIOUS_AS.get(rule.value)
            if point is not None and point not in params:
                previous = fed.layer1._previous.get(group)
                params[point] = np.zeros(v.shape[1]) if previous is None else previous
            return np.asarray(aggregate(v, rule, cfg.pre, **params).aggregate, np.float64)

        return flat if fed is None else basket

    # ---- a run ---------------------------------------------------------------------------

    def protections(self, setup: str) -> tuple[str, ...]:
        """What ``setup`` adds to its rule: ``"DP-SGD"`` (record-level), ``"DP-FedAvg"``
        (client-level), ``"DP"`` (central), ``"local DP"``, ``"SecAgg"``."""
        cfg = self.config
        if setup == "hierarchical_dpfedavg":
            return ("DP-FedAvg", "SecAgg")
        if setup not in ("hierarchical", "hierarchical_dp"):
            return ()
        dp = setup == "hierarchical_dp"
        record = dp or cfg.uses_record_dp
        central = cfg.central_epsilon is not None or cfg.central_noise_multiplier is not None
        local = cfg.local_epsilon is not None or cfg.local_noise_multiplier is not None
        secure = dp or cfg.secure_aggregation
        reliable = cfg.reliability and not secure
        flags = (
            ("DP-SGD", record),
            ("DP", central),
            ("local DP", local),
            ("SecAgg", secure),
            ("reliability", reliable),
        )
        return tuple(name for name, on in flags if on)

    def record_noise_multiplier(self, setup: str) -> float | None:
        """DP-SGD's noise multiplier in ``setup`` (``None``: no record-level DP): the
        config's, or calibrated to its record epsilon (``DEFAULT_RECORD_EPSILON`` in
        ``hierarchical_dp`` when neither is given) over the run's local steps."""
        cfg = self.config
        if "DP-SGD" not in self.protections(setup):
            return None
        if cfg.record_noise_multiplier is not None:
            return cfg.record_noise_multiplier
        epsilon = DEFAULT_RECORD_EPSILON if cfg.record_epsilon is None else cfg.record_epsilon
        steps = cfg.rounds * cfg.local_epochs * steps_per_epoch(cfg.record_sample_rate)
        return noise_multiplier_for_epsilon(
            epsilon, cfg.record_delta, steps, cfg.record_sample_rate
        )

    def client_noise_multiplier(self, setup: str) -> float | None:
        """DP-FedAvg's noise multiplier in ``setup`` (``None``: no client-level DP): the
        config's, or calibrated to its client epsilon over the run's rounds at its client
        sampling rate."""
        cfg = self.config
        if "DP-FedAvg" not in self.protections(setup):
            return None
        if cfg.client_noise_multiplier is not None:
            return cfg.client_noise_multiplier
        epsilon = DEFAULT_CLIENT_EPSILON if cfg.client_epsilon is None else cfg.client_epsilon
        return noise_multiplier_for_epsilon(
            epsilon, cfg.client_delta, cfg.rounds, cfg.client_sample_rate
        )

    def _dp_fedavg(self, setup: str) -> DPFedAvgConfig | None:
        """Each basket's DP-FedAvg: clip norm from ``clip_norm``, target the median norm,
        count noise the paper's ``m / 20`` but at least ``z`` (the model's noise then grows
        by at most ``1 / sqrt(3/4)``: baskets are small)."""
        z = self.client_noise_multiplier(setup)
        if z is None:
            return None
        cfg = self.config
        m = cfg.client_sample_rate * min(len(b) for b in self.baskets.values())
        return DPFedAvgConfig(
            z,
            sample_rate=cfg.client_sample_rate,
            initial_clip_norm=cfg.clip_norm,
            count_stddev=max(m / 20, z),
            delta=cfg.client_delta,
        )

    def record_epsilon(self) -> float:
        """The record-level epsilon spent so far in the current run: the largest over the
        clients (each trained a number of times at one noise and sample rate)."""
        runs = max(self._record_runs.values(), default=0)
        if self._record_z is None or runs == 0:
            return 0.0
        cfg = self.config
        steps = cfg.local_epochs * steps_per_epoch(cfg.record_sample_rate) * runs
        return epsilon_spent(self._record_z, cfg.record_sample_rate, steps, cfg.record_delta)

    def label(self, setup: str, *, short: bool = False) -> str:
        """A human name of ``setup`` saying what the run had: its rule, central DP, local DP
        and secure aggregation (``"hierarchical trimmed_mean + DP + SecAgg"``). ``short``
        leaves the rule out and abbreviates (``"hier. +DP +SecAgg"``)."""
        if setup == "fedavg":
            return "FedAvg"
        rule = "mean" if setup == "hierarchical_dpfedavg" else self.config.rule
        added = self.protections(setup)
        if short:
            base = "flat" if setup == "flat" else "hier."
            marks = {
                "DP-SGD": "+DPSGD",
                "DP-FedAvg": "+DPFedAvg",
                "DP": "+DP",
                "local DP": "+LDP",
                "SecAgg": "+SecAgg",
                "reliability": "+rel",
            }
            return " ".join([base, *(marks[p] for p in added)])
        base = f"flat {rule}" if setup == "flat" else f"hierarchical {rule}"
        return " + ".join([base, *added])

    def _federation(self, setup: str) -> tuple[HierarchicalFederation, dict[str, Any]]:
        cfg = self.config
        dp = setup == "hierarchical_dp"
        z_central = cfg.central_noise_multiplier
        if cfg.central_epsilon is not None:
            z_central = noise_multiplier_for_epsilon(
                cfg.central_epsilon, cfg.central_delta, cfg.rounds
            )
        z_local = cfg.local_noise_multiplier
        if cfg.local_epsilon is not None:
            z_local = noise_multiplier_for_epsilon(cfg.local_epsilon, cfg.local_delta, cfg.rounds)
        params = cfg.rule_kwargs()
        if self.f is not None:
            params["f"] = self.f
        if "bucketing" in cfg.pre:
            params["seed"] = np.random.default_rng([cfg.seed, _TAG_BUCKETS])
        secure = dp or cfg.secure_aggregation
        dp_fedavg = self._dp_fedavg(setup)
        layer1 = Layer1Config(
            aggregation_method=cfg.rule,
            min_updates=cfg.clients_per_basket,
            apply_local_noise=z_local is not None,
            method_params=params,
            pre=tuple(cfg.pre) or None,
            local_clip_norm=cfg.clip_norm,
            local_delta=cfg.local_delta,
            local_noise_multiplier=z_local,
        )
        if dp_fedavg is not None:  # the mean of the sampled clipped updates, noised
            secure, z_central = True, None
            layer1 = Layer1Config(
                aggregation_method="mean",
                min_updates=cfg.clients_per_basket,
                apply_local_noise=False,
                dp_fedavg=dp_fedavg,
            )
        fed_cfg = FederationConfig(
            basket=self._manager_config(),
            layer1=layer1,
            layer2=Layer2Config(
                use_secure_aggregation=secure,
                central_dp_epsilon=None,
                central_dp_delta=cfg.central_delta,
                clip_norm=cfg.clip_norm,
                min_baskets=len(self.baskets),
                central_dp_noise_multiplier=z_central,
                weighting="trust" if "reliability" in self.protections(setup) else None,
                reliability="reliability" in self.protections(setup),
            ),
            staleness=cfg.staleness,
            auto_aggregate=False,
            server_learning_rate=cfg.server_learning_rate,
            server_optimizer=cfg.server_optimizer,
        )
        self._clock = 0.0
        fed = HierarchicalFederation(
            fed_cfg,
            initial_model=self._init(),
            clock=lambda: self._clock,
            generator=NoiseGenerator(seed=cfg.seed, secure=False),
            seed=cfg.seed,
        )
        got = self._register(fed.register_client)
        if got != self.baskets:  # pragma: no cover - the manager is deterministic
            raise RuntimeError("the federation assigned baskets differently from the plan")
        info = {
            "secure_aggregation": secure,
            "central_noise_multiplier": z_central,
            "local_noise_multiplier": z_local,
            "client_noise_multiplier": None if dp_fedavg is None else dp_fedavg.noise_multiplier,
            "f": self.f,
        }
        return fed, info

    def _init(self) -> FloatArray:
        return self.model.init(np.random.default_rng([self.config.seed, _TAG_INIT]))

    def _collect(
        self,
        t: int,
        model: FloatArray,
        version: int,
        attack: str,
        byz: list[int],
        groups: dict[str, list[int]],
        in_flight: dict[int, tuple[FloatArray, int]],
        fed: HierarchicalFederation | None,
        rule: GroupRule | None = None,
    ) -> tuple[dict[int, tuple[FloatArray, int]], dict[int, tuple[FloatArray, int]]]:
        """Round ``t``'s deliveries (client -> (update, base version)) and the stragglers'
        updates left for the next round.

        Last round's stragglers deliver first; an honest client that is idle trains on
        ``model`` and delivers now or, with probability ``stragglers``, next round; a client
        whose update still waits in a basket's buffer sits the round out; the attackers
        send last, knowing the honest deliveries.
        """
        cfg = self.config
        delivered, late_next = dict(in_flight), {}
        draws = np.random.default_rng([cfg.seed, _TAG_STRAGGLE, t]).random(self.data.n_clients)

        def waiting(c: int) -> bool:
            return fed is not None and self.ids[c] in fed.buffer

        for c in range(self.data.n_clients):
            if c in delivered or c in byz or waiting(c):
                continue
            update = self.client_update(model, c, t)
            if cfg.worker_momentum > 0:
                beta, previous = cfg.worker_momentum, self._momentum.get(c)
                update = update if previous is None else beta * previous + (1 - beta) * update
                self._momentum[c] = update
            if draws[c] < cfg.stragglers:
                late_next[c] = (update, version)
            else:
                delivered[c] = (update, version)
        senders = [c for c in byz if not waiting(c)]
        sent = self.byzantine_updates(model, t, attack, senders, delivered, groups, rule)
        for c, u in sent.items():
            delivered[c] = (u, version)
        return delivered, late_next

    def _flat_rule(
        self, setup: str, n: int, center: FloatArray | None, d: int
    ) -> tuple[str, list[str] | None, dict[str, Any]]:
        """The flat server's rule, pre-steps and parameters over ``n`` updates of size ``d``."""
        cfg = self.config
        if setup == "fedavg":
            return "mean", None, {}
        params = cfg.rule_kwargs()
        if self.flat_f is not None and setup == "flat":
            params["f"] = min(self.flat_f, self._flat_cap(n))
        if cfg.rule in _PREVIOUS_AS:
            params[_PREVIOUS_AS[cfg.rule]] = np.zeros(d) if center is None else center
        return cfg.rule, cfg.pre, params

    def _flat_step(
        self,
        setup: str,
        theta: FloatArray,
        delivered: dict[int, tuple[FloatArray, int]],
        version: int,
        center: FloatArray | None,
    ) -> FloatArray:
        """The flat server's aggregate of ``delivered`` (stale ones weighted); updates holding
        NaN or infinity are dropped first, as the federation refuses them (counted in
        ``rejected``)."""
        weight = staleness_function(self.config.staleness)
        order = [c for c in sorted(delivered) if np.isfinite(delivered[c][0]).all()]
        self._rejected += len(delivered) - len(order)
        ups = np.array([delivered[c][0] for c in order])
        w = np.array([weight(version - delivered[c][1]) for c in order])
        rule, pre, params = self._flat_rule(setup, len(order), center, theta.size)
        if pre and "bucketing" in pre:
            params["seed"] = self._bucket_rng
        if rule in _TAKES_WEIGHTS and not np.all(w == 1.0) and "bucketing" not in (pre or ()):
            params["weights"] = w
        return np.asarray(aggregate(ups, rule, pre, **params).aggregate, dtype=np.float64)

    def run(
        self, setup: str, attack: str | None = None, progress: Progress | None = None
    ) -> RunResult:
        """Run ``setup`` for ``config.rounds`` rounds under ``attack`` (default: the config's;
        ``"none"``: every client honest).

        ``progress`` is called after every round.
        """
        cfg = self.config
        attack = cfg.attack if attack is None else attack
        byz = sorted(self.byzantine) if attack != "none" else []
        fed: HierarchicalFederation | None = None
        self._record_z, self._record_runs = self.record_noise_multiplier(setup), {}
        self._momentum = {}
        optimizer = ServerOptimizer(cfg.server_optimizer, cfg.server_learning_rate)
        layer2_weights: list[dict[str, float]] = []
        if setup.startswith("hierarchical"):
            fed, details = self._federation(setup)
            groups = {b: list(m) for b, m in self.baskets.items()}
        else:
            groups = {"all": list(range(self.data.n_clients))}
            details = {"f": self.flat_f if setup == "flat" else None}
        theta = self._init()
        self._bucket_rng = np.random.default_rng([cfg.seed, _TAG_BUCKETS])
        self._mimic = {}
        self._rejected = 0
        center: FloatArray | None = None
        in_flight: dict[int, tuple[FloatArray, int]] = {}
        history: list[RoundMetrics] = []
        for t in range(cfg.rounds):
            start = time.perf_counter()
            version = t if fed is None else fed.version
            rule = self._attackers_rule(setup, fed, center) if attack in attacks.OPTIMAL else None
            delivered, in_flight = self._collect(
                t, theta, version, attack, byz, groups, in_flight, fed, rule
            )
            if fed is not None:
                self._clock = float(t)
                for c in sorted(delivered):
                    update, base = delivered[c]
                    if not np.isfinite(update).all():
                        with contextlib.suppress(ValueError):  # refused, counted in "rejected"
                            fed.submit_update(self.ids[c], update, base)
                        continue
                    fed.submit_update(self.ids[c], update, base)
                fed.flush()
                assert fed.model is not None
                theta = fed.model
                last = fed.layer2.last_stats
                layer2_weights.append(dict(zip(last["basket_ids"], last["weights"], strict=True)))
            else:
                center = self._flat_step(setup, theta, delivered, version, center)
                theta = optimizer.step(theta, center)
            acc, loss = accuracy(self.model, theta, self.data.x_test, self.data.y_test)
            eps = 0.0 if fed is None else fed.privacy_spent()[0]
            seconds = time.perf_counter() - start
            history.append(
                RoundMetrics(
                    t + 1,
                    acc,
                    loss,
                    eps,
                    self._local_epsilon(fed),
                    seconds,
                    self.record_epsilon(),
                    _client_epsilon(fed),
                )
            )
            if progress is not None:
                progress()
        local = self._local_epsilon(fed)
        if fed is not None:
            stats = fed.get_stats()
            details.update(
                global_rounds=stats["global_rounds"],
                basket_aggregations=stats["basket_aggregations"],
                rejected=stats["rejected"],
            )
        else:
            details["rejected"] = {"non_finite": self._rejected} if self._rejected else {}
        details["byzantine_clients"] = len(byz)
        if layer2_weights:
            details["layer2_weights"] = layer2_weights
        details["record_noise_multiplier"] = self._record_z
        record, client = self.record_epsilon(), _client_epsilon(fed)
        return RunResult(
            setup,
            self.label(setup),
            attack,
            history,
            (0.0, 0.0) if fed is None else fed.privacy_spent(),
            (local, cfg.local_delta if local > 0 else 0.0),
            details,
            self.label(setup, short=True),
            (record, cfg.record_delta if record > 0 else 0.0),
            (client, cfg.client_delta if client > 0 else 0.0),
        )

    def _local_epsilon(self, fed: HierarchicalFederation | None) -> float:
        """The largest epsilon of a basket's local noise (not DP-FedAvg's: per client)."""
        if fed is None or not fed.layer1.config.apply_local_noise:
            return 0.0
        return max(fed.layer1.privacy_spent(b)[0] for b in self.baskets)

    def layout(self) -> dict[str, Any]:
        """Baskets with their sizes and Byzantine members, for the report."""
        return {
            b: {
                "domain": self.data.domain_names[int(self.data.client_domain[m[0]])],
                "clients": len(m),
                "byzantine": sum(c in self.byzantine for c in m),
            }
            for b, m in self.baskets.items()
        }


def _client_epsilon(fed: HierarchicalFederation | None) -> float:
    """The largest client-level epsilon of DP-FedAvg in the baskets so far (0 without)."""
    if fed is None or fed.layer1.config.dp_fedavg is None:
        return 0.0
    return fed.max_client_privacy_spent()[0]
