"""The simulation's settings: one validated dataclass, from defaults, a TOML file and options.

Every field of :class:`SimulationConfig` is also a key of the TOML file given to
``hierfed simulate --config FILE`` (at the top level or under a ``[simulate]`` table; ``-``
and ``_`` are interchangeable) and an option of the command (``--clients-per-basket`` for
``clients_per_basket``). Options override the file, which overrides the defaults. Bad values
raise ``ValueError``/``TypeError`` naming the field and the rule broken.

The defaults are the embedded run of ``hierfed simulate`` without arguments: digits, 75
clients in 5 domains (one basket of 15 each), a fifth of them Byzantine, spread over the
domains, sending scaled sign-flipped updates; the five configurations compared.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from ..aggregator import AggregationMethod
from ..mda import MDA_MAX_WORK, mda_work
from ..optimizers import OPTIMIZERS
from ..preaggregation import PRE_STEPS
from ..staleness import PRESETS
from .attacks import ATTACKS, DEFAULT_STRENGTH
from .datasets import BUILTIN
from .models import MODELS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "DEFAULT_RECORD_EPSILON",
    "DEFAULT_TRIM_RATIO",
    "PLACEMENTS",
    "SETUPS",
    "SimulationConfig",
    "load_toml",
]

SETUPS = ("fedavg", "flat", "hierarchical", "hierarchical_dp", "hierarchical_dpfedavg")
PLACEMENTS = ("spread", "concentrated")
# Record-level epsilon of the hierarchical_dp setup's DP-SGD when no record option is given.
DEFAULT_RECORD_EPSILON = 8.0
DEFAULT_CLIENT_EPSILON = 8.0  # hierarchical_dpfedavg's client-level epsilon (delta 1e-5)
# The trimmed mean's share cut at each end when trim_ratio is not given.
DEFAULT_TRIM_RATIO = 0.2
# Rules taking f, each needing n >= per * f + plus inputs (krum 2f + 3, bulyan 4f + 3; mda,
# meamed and monna an honest majority, 2f + 1).
_F_RULES = {
    "krum": (2, 3),
    "multi_krum": (2, 3),
    "bulyan": (4, 3),
    "mda": (2, 1),
    "meamed": (2, 1),
    "monna": (2, 1),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class SimulationConfig:
    """Everything one ``hierfed simulate`` run needs.

    Attributes
    ----------
    dataset
        ``digits``, ``breast_cancer``, ``wine`` or a path to a ``.npz`` with ``X``, ``y`` and
        optionally ``domain`` (see :mod:`hierfed.simulation.datasets`).
    model, hidden
        ``logreg`` (multinomial logistic regression) or ``mlp`` (one hidden layer of
        ``hidden`` tanh units).
    rounds
        Global rounds.
    clients, domains, clients_per_basket
        Clients, spread evenly over the domains; each domain's clients fill baskets of at
        most ``clients_per_basket`` in turn (the basket manager's assignment).
    dirichlet_alpha, domain_shift, test_fraction
        The non-IID split: label skew, per-domain feature offset (std, standardised units),
        held-out fraction.
    local_epochs, batch_size, learning_rate
        Each client's local SGD per round.
    clip_norm
        L2 bound of a client's update: honest clients clip their delta to it, Layer 1's local
        DP clips every update to it and Layer 2 clips every basket model to it.
    server_learning_rate, server_optimizer
        The server's step: ``sgd`` moves the global model by this times the aggregate;
        ``fedavgm``, ``fedadagrad``, ``fedadam``, ``fedyogi`` (:mod:`hierfed.optimizers`)
        take it as their learning rate, in every setup.
    worker_momentum
        Honest clients send the momentum ``m = worker_momentum m + (1 - worker_momentum) g``
        of their updates ``g`` over the rounds instead of ``g`` (Karimireddy et al. 2021);
        0 turns it off.
    reliability
        The hierarchical setup weights basket models by size times a reliability score
        learnt from their agreement with the robust consensus (:mod:`hierfed.trust`); it
        needs the basket models in the clear, so not with ``secure_aggregation``, and
        ``hierarchical_dp`` (always SecAgg) runs without it.
    byzantine_fraction, attack, attack_strength, placement
        Share of Byzantine clients, their attack (``none``, ``sign_flip``, ``gaussian``,
        ``label_flip``, ``alie``, ``ipm``, ``optimal_ipm``, ``optimal_alie``, ``mimic``,
        ``inf``), its strength (``None``: the attack's default, see
        :mod:`hierfed.simulation.attacks`), and ``spread`` (evenly over the baskets of all
        domains) or ``concentrated`` (filling the first domain's baskets first).
    rule, trim_ratio, f, rule_params
        The robust rule (Layer 1 in hierarchical setups, the server's in the flat one), the
        trimmed mean's share cut at each end (only with ``trimmed_mean``; ``None``:
        ``DEFAULT_TRIM_RATIO``, 0.2), the ``f`` of Krum/Multi-Krum/Bulyan/MDA/Meamed/MoNNA
        (only with those; ``None``: the most the smallest basket allows, ``(n - 3) // 4`` for
        Bulyan, ``(n - 3) // 2`` for Krum, ``(n - 1) // 2`` for MDA, Meamed and MoNNA; in the
        flat setup MDA's f is also capped to an exact search of at most ``MDA_MAX_WORK``
        comparisons, ``f = 2`` for 75 clients; after bucketing, ``n`` counts the buckets) and
        further parameters of the rule (e.g. ``n_iter`` of
        centered clipping, whose ``tau`` defaults to ``clip_norm``, the norm every honest
        update is clipped to).
    pre
        Pre-aggregation steps before the rule, in order (:mod:`hierfed.preaggregation`):
        ``nnm``, ``bucketing``, ``arc``, ``clip``. ``nnm`` and ``arc`` read ``f`` (the rule's,
        or for a rule without one the most the smallest basket allows, ``(n - 1) // 2``),
        ``bucketing`` reads ``s`` from ``rule_params`` (default 2) and shuffles with a
        generator seeded by ``seed``, ``clip`` reads ``clip_norm`` from ``rule_params``
        (default ``clip_norm``).
    compare
        Run the five setups (flat FedAvg, flat robust, hierarchical robust, hierarchical
        robust + DP-SGD + secure aggregation, hierarchical mean + client-level DP-FedAvg +
        secure aggregation), each with the attack and without it.
    setup
        The one setup to run when not comparing: ``fedavg``, ``flat``, ``hierarchical``,
        ``hierarchical_dp`` or ``hierarchical_dpfedavg``.
    secure_aggregation
        Sum basket models with SecAgg+ in the ``hierarchical`` setup (``hierarchical_dp``
        always does).
    record_epsilon, record_noise_multiplier, record_delta
        Record-level DP: every client trains with DP-SGD (:mod:`hierfed.simulation.dpsgd`),
        its noise from a total epsilon per record for the whole run (calibrated so that
        the RDP accountant reaches it after ``rounds`` rounds of local training) or a noise
        multiplier; at most one. ``hierarchical_dp`` always trains so, with
        ``DEFAULT_RECORD_EPSILON`` when neither is given; ``hierarchical`` when one is.
    record_clip_norm, record_sample_rate
        DP-SGD's per-record gradient clip norm, and each record's probability of being in
        a step's batch (Poisson sampling); ``local_epochs * ceil(1 / record_sample_rate)``
        steps a round.
    central_epsilon, central_noise_multiplier, central_delta
        Central DP of Layer 2 (the unit: one basket): a total epsilon for the whole run
        (the per-round noise is calibrated so that the RDP accountant reaches it after
        ``rounds`` rounds) or a per-round noise multiplier; at most one.
    local_epsilon, local_noise_multiplier, local_delta
        Layer 1's local DP per basket, the same way (off when neither is given).
    client_epsilon, client_noise_multiplier, client_delta, client_sample_rate
        Client-level DP-FedAvg with adaptive clipping in every basket
        (:class:`~hierfed.privacy.DPFedAvg`; setup ``hierarchical_dpfedavg``): a total
        epsilon per client for the run (default ``DEFAULT_CLIENT_EPSILON``) or a noise
        multiplier; each round each client of a basket is sampled with probability
        ``client_sample_rate``.
    staleness, stragglers
        Staleness weighting (``exponential``, ``constant``, ``polynomial``, ``sqrt``,
        ``hinge``) of the updates of stragglers: each round each honest client independently
        straggles with probability ``stragglers``, computing its update on this round's
        model and delivering it one round late.
    target_accuracy
        The accuracy whose first round the table reports.
    privacy_sweep
        Instead of the setups, run the hierarchical one without DP and with DP-SGD at each
        record epsilon of :data:`~hierfed.simulation.sweep.SWEEP_EPSILONS`, and plot accuracy
        against epsilon (``privacy_sweep.png`` in ``out``).
    seed
        Seeds the split, the clients' SGD, the attackers, the stragglers and the noise.
    out
        Directory for ``results.json`` and ``accuracy.png`` (``None``: write nothing).
    """

    dataset: str = "digits"
    model: str = "logreg"
    hidden: int = 32
    rounds: int = 30
    clients: int = 75
    domains: int = 5
    clients_per_basket: int = 15
    dirichlet_alpha: float = 1.0
    domain_shift: float = 0.5
    test_fraction: float = 0.25
    local_epochs: int = 1
    batch_size: int = 8
    learning_rate: float = 0.1
    clip_norm: float = 0.5
    server_learning_rate: float = 1.0
    server_optimizer: str = "sgd"
    worker_momentum: float = 0.0
    reliability: bool = False
    byzantine_fraction: float = 0.2
    attack: str = "sign_flip"
    attack_strength: float | None = None
    placement: str = "spread"
    rule: str = "trimmed_mean"
    trim_ratio: float | None = None
    f: int | None = None
    rule_params: dict[str, Any] = field(default_factory=dict)
    pre: list[str] = field(default_factory=list)
    compare: bool = True
    setup: str = "hierarchical"
    secure_aggregation: bool = False
    record_epsilon: float | None = None
    record_noise_multiplier: float | None = None
    record_delta: float = 1e-5
    record_clip_norm: float = 1.0
    record_sample_rate: float = 0.25
    central_epsilon: float | None = None
    central_noise_multiplier: float | None = None
    central_delta: float = 1e-5
    local_epsilon: float | None = None
    local_noise_multiplier: float | None = None
    local_delta: float = 1e-5
    client_epsilon: float | None = None
    client_noise_multiplier: float | None = None
    client_delta: float = 1e-5
    client_sample_rate: float = 1.0
    staleness: str = "exponential"
    stragglers: float = 0.0
    target_accuracy: float = 0.8
    privacy_sweep: bool = False
    seed: int = 0
    out: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    # ---- validation ----------------------------------------------------------------------

    def _int(self, name: str, least: int) -> None:
        v = getattr(self, name)
        if not _is_int(v) or v < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")

    def _num(self, name: str, low: float, high: float, *, open_low: bool = False) -> None:
        v = getattr(self, name)
        ok = _is_num(v) and (v > low if open_low else v >= low) and v <= high
        if not ok:
            bracket = "(" if open_low else "["
            raise ValueError(f"{name} must be a number in {bracket}{low}, {high}], got {v!r}")

    def _choice(self, name: str, choices: tuple[str, ...]) -> None:
        v = getattr(self, name)
        if v not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {v!r}")

    def _optional(self, name: str, low: float, high: float) -> None:
        if getattr(self, name) is not None:
            self._num(name, low, high, open_low=True)

    def validate(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first field that breaks its rule."""
        if not isinstance(self.dataset, str) or not (
            self.dataset in BUILTIN or self.dataset.endswith(".npz")
        ):
            raise ValueError(
                f"dataset must be one of {', '.join(BUILTIN)} or a path to a .npz file; "
                f"got {self.dataset!r}"
            )
        self._choice("model", MODELS)
        for name, least in (
            ("hidden", 1),
            ("rounds", 1),
            ("clients", 2),
            ("domains", 1),
            ("clients_per_basket", 1),
            ("local_epochs", 1),
            ("batch_size", 1),
            ("seed", 0),
        ):
            self._int(name, least)
        if self.domains > self.clients:
            raise ValueError(f"domains ({self.domains}) must not exceed clients ({self.clients})")
        self._num("dirichlet_alpha", 0.0, math.inf, open_low=True)
        self._num("domain_shift", 0.0, math.inf)
        self._num("test_fraction", 0.0, 0.9, open_low=True)
        self._num("learning_rate", 0.0, math.inf, open_low=True)
        self._num("clip_norm", 0.0, math.inf, open_low=True)
        self._num("server_learning_rate", 0.0, math.inf, open_low=True)
        self._num("byzantine_fraction", 0.0, 0.9)
        self._choice("attack", ATTACKS)
        if self.attack_strength is not None:
            if DEFAULT_STRENGTH[self.attack] is None and self.attack != "alie":
                raise ValueError(f"attack {self.attack!r} takes no attack_strength")
            self._num("attack_strength", -math.inf, math.inf)
        self._choice("placement", PLACEMENTS)
        self._choice("rule", tuple(m.value for m in AggregationMethod))
        if self.trim_ratio is not None:
            self._num("trim_ratio", 0.0, 0.49)
            if self.rule != "trimmed_mean":
                raise ValueError(f"trim_ratio applies to trimmed_mean, not {self.rule!r}")
        if self.f is not None:
            self._int("f", 0)
            if not self.takes_f:
                raise ValueError(
                    f"f applies to {', '.join(_F_RULES)} and the pre-steps nnm and arc, "
                    f"not {self.rule!r}"
                )
        if not isinstance(self.rule_params, dict) or not all(
            isinstance(k, str) for k in self.rule_params
        ):
            raise TypeError("rule_params must be a table of parameter names to values")
        if not isinstance(self.pre, list) or not all(p in PRE_STEPS for p in self.pre):
            raise ValueError(
                f"pre must be a list of steps among {', '.join(PRE_STEPS)}; got {self.pre!r}"
            )
        for key in ("f", "weights", "trim_ratio", "center", "trusted", "seed"):
            if key in self.rule_params:
                raise ValueError(f"rule_params must not set {key!r} (use its own option)")
        self._choice("server_optimizer", OPTIMIZERS)
        v = self.worker_momentum
        if not (_is_num(v) and 0 <= v < 1):
            raise ValueError(f"worker_momentum must be a number in [0, 1), got {v!r}")
        for name in ("compare", "secure_aggregation", "privacy_sweep", "reliability"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        self._choice("setup", SETUPS)
        if self.reliability and self.secure_aggregation:
            raise ValueError(
                "reliability needs the basket models in the clear: drop secure_aggregation"
            )
        self._optional("record_epsilon", 0.0, math.inf)
        self._optional("record_noise_multiplier", 0.0, math.inf)
        self._num("record_delta", 0.0, 0.5, open_low=True)
        self._num("record_clip_norm", 0.0, math.inf, open_low=True)
        self._num("record_sample_rate", 0.0, 1.0, open_low=True)
        self._optional("central_epsilon", 0.0, math.inf)
        self._optional("central_noise_multiplier", 0.0, math.inf)
        self._optional("local_epsilon", 0.0, math.inf)
        self._optional("local_noise_multiplier", 0.0, math.inf)
        self._num("central_delta", 0.0, 0.5, open_low=True)
        self._num("local_delta", 0.0, 0.5, open_low=True)
        self._optional("client_epsilon", 0.0, math.inf)
        self._optional("client_noise_multiplier", 0.0, math.inf)
        self._num("client_delta", 0.0, 0.5, open_low=True)
        self._num("client_sample_rate", 0.0, 1.0, open_low=True)
        for kind in ("record", "central", "local", "client"):
            if (
                getattr(self, f"{kind}_epsilon") is not None
                and getattr(self, f"{kind}_noise_multiplier") is not None
            ):
                raise ValueError(f"give {kind}_epsilon or {kind}_noise_multiplier, not both")
        if not self.compare and self.setup in ("fedavg", "flat") and self.uses_dp:
            raise ValueError(f"DP options need a hierarchical setup, not {self.setup!r}")
        self._choice("staleness", PRESETS)
        self._num("stragglers", 0.0, 0.9)
        self._num("target_accuracy", 0.0, 1.0)
        if self.out is not None and not isinstance(self.out, str):
            raise TypeError(f"out must be a directory path, got {self.out!r}")

    # ---- derived values ------------------------------------------------------------------

    @property
    def uses_dp(self) -> bool:
        """Whether any DP option is set."""
        return any(
            getattr(self, k) is not None
            for k in (
                "record_epsilon",
                "record_noise_multiplier",
                "central_epsilon",
                "central_noise_multiplier",
                "local_epsilon",
                "local_noise_multiplier",
                "client_epsilon",
                "client_noise_multiplier",
            )
        )

    def rule_kwargs(self) -> dict[str, Any]:
        """The rule's parameters besides ``f``: ``rule_params``, the trimmed mean's
        ``trim_ratio`` and centered clipping's default ``tau`` (``clip_norm``)."""
        params = dict(self.rule_params)
        if self.rule == "trimmed_mean":
            params["trim_ratio"] = (
                DEFAULT_TRIM_RATIO if self.trim_ratio is None else self.trim_ratio
            )
        if self.rule == "centered_clipping":
            params.setdefault("tau", self.clip_norm)
        if "bucketing" in self.pre:
            params.setdefault("s", 2)
        if "clip" in self.pre:
            params.setdefault("clip_norm", self.clip_norm)
        return params

    @property
    def uses_record_dp(self) -> bool:
        """Whether a record-level DP option is set."""
        return self.record_epsilon is not None or self.record_noise_multiplier is not None

    @property
    def strength(self) -> float | None:
        """The attack's strength in force."""
        return (
            self.attack_strength
            if self.attack_strength is not None
            else DEFAULT_STRENGTH[self.attack]
        )

    @property
    def n_byzantine(self) -> int:
        """Number of Byzantine clients (``round(fraction * clients)``; none without attack)."""
        if self.attack == "none":
            return 0
        return round(self.byzantine_fraction * self.clients)

    @property
    def takes_f(self) -> bool:
        """Whether the rule or a pre-step reads ``f``."""
        return self.rule in _F_RULES or bool({"nnm", "arc"} & set(self.pre))

    def f_for(self, n: int) -> int | None:
        """The ``f`` for a rule over ``n`` inputs: the option, else the most ``n`` allows."""
        if not self.takes_f:
            return None
        if self.f is not None:
            return self.f
        return self.f_most(n)

    def f_most(self, n: int) -> int:
        """The most ``f`` the rule takes over ``n`` inputs (for MDA also at most
        ``MDA_MAX_WORK`` comparisons in its exact search)."""
        per, plus = _F_RULES.get(self.rule, (2, 1))
        n = self.buckets(n)
        f = max((n - plus) // per, 0)
        while self.rule == "mda" and mda_work(n, f) > MDA_MAX_WORK:
            f -= 1
        return f

    def buckets(self, n: int) -> int:
        """How many of ``n`` inputs reach the rule (``ceil(n / s)`` after bucketing)."""
        return -(-n // self.rule_kwargs()["s"]) if "bucketing" in self.pre else n

    def min_inputs(self, f: int | None) -> int:
        """The fewest inputs the rule needs with ``f`` (``s (need - 1) + 1`` after bucketing)."""
        if self.rule not in _F_RULES or f is None:
            return 1
        per, plus = _F_RULES[self.rule]
        need = per * f + plus
        return self.rule_kwargs()["s"] * (need - 1) + 1 if "bucketing" in self.pre else need

    def replace(self, **changes: Any) -> SimulationConfig:
        """A validated copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every settable key."""
        return tuple(f.name for f in dataclasses.fields(cls))


def load_toml(path: str) -> dict[str, Any]:
    """The settings in TOML file ``path``: top-level keys or a ``[simulate]`` table.

    Raises
    ------
    ValueError
        A missing or malformed file, or an unknown key (the known ones are listed).
    """
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path}: {exc}") from None
    if "simulate" in doc:
        table = doc.pop("simulate")
        if not isinstance(table, dict) or doc:
            raise ValueError(f"config file {path}: put every key under [simulate] or none")
        doc = table
    known = SimulationConfig.field_names()
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(
                f"config file {path}: unknown key {key!r}; known keys: {', '.join(known)}"
            )
        out[name] = value
    return out
