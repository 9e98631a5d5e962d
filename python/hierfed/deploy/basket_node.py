"""The basket aggregator: Layer 1 inside its domain, then its share of the distributed noise.

It is trusted by its members (it sees their updates, as the seed design's basket does) and by
nobody else: it opens its members' sealed updates (:mod:`.envelope`), validates them, runs
Layer 1 exactly as the in-process federation does (any rule, weights, local DP), clips the
basket model, scales it by its public weight and encodes it with its share of discrete
Gaussian noise (:class:`~hierfed.privacy.DistributedDiscreteGaussian`) into the uint32 words
it then enters into SecAgg+ (:class:`hierfed.secagg.Client`). What leaves the node is masked
noised words: the global server unmasks only the sum, which holds every survivor's noise.

The noise parameters are the node's own (provisioned, not sent by the server), and
:meth:`BasketNode.check_plan` refuses a SecAgg+ session whose threshold would let the server
unmask a sum of fewer inputs than the noise was sized for.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from numpy.typing import NDArray

from .. import _checks
from ..layers import Layer1Aggregator, Layer1Config, Weighting
from ..privacy import NoiseGenerator
from ..privacy.clipping import clip_by_l2_norm
from ..privacy.distributed import DistributedDiscreteGaussian
from ..secagg.session import SessionPlan
from .envelope import SealContext, open_update

__all__ = ["BasketNode", "PreparedInput"]


@dataclass(frozen=True)
class PreparedInput:
    """What a basket aggregator enters into one round's SecAgg+.

    ``encoded`` (its masked-to-be input) and ``weight`` (public: the global server divides
    the sum by the survivors' weights) are all that leaves the node; the rest stays with it.
    """

    basket_id: str
    round_id: int
    encoded: NDArray[np.uint32]
    weight: float
    n_contributors: int
    rejected: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


class BasketNode:
    """One basket aggregator.

    Parameters
    ----------
    basket_id
        The basket's name (bound into every sealed update).
    key
        The node's X25519 private key; members seal to its public key (:attr:`public_key`,
        provisioned to them out of band: a relay must not be able to substitute it).
    ddg
        The distributed discrete Gaussian of the deployment (the node's own copy).
    layer1
        Layer 1 settings (rule, local DP), as in process.
    members
        The enrolled members; an update under another name is rejected (``None``: any name).
    weighting
        The basket's public weight: ``"uniform"`` (1), or ``"size"`` / ``"confidence"``
        (``min(1, n_contributors / expected_contributors)``: proportional to the basket's
        size as long as no basket exceeds ``expected_contributors``).
    expected_contributors
        The count of full weight (default: the number of ``members``, else Layer 1's).
    generator
        Noise source of the local DP and the noise share (default: secure, from the OS).
    last_round
        The last round this node released in (a node restored from its state refuses to
        release twice in one round: two noisy copies of one model would compose).
    """

    def __init__(
        self,
        basket_id: str,
        key: X25519PrivateKey,
        ddg: DistributedDiscreteGaussian,
        layer1: Layer1Config | None = None,
        *,
        members: Collection[str] | None = None,
        weighting: Weighting | str = Weighting.UNIFORM,
        expected_contributors: int | None = None,
        generator: NoiseGenerator | None = None,
        last_round: int = -1,
    ) -> None:
        if not isinstance(basket_id, str) or not basket_id:
            raise TypeError(f"basket_id must be a non-empty str, got {basket_id!r}")
        if not isinstance(key, X25519PrivateKey):
            raise TypeError("key must be an X25519PrivateKey")
        if not isinstance(ddg, DistributedDiscreteGaussian):
            raise TypeError(f"ddg must be a DistributedDiscreteGaussian, got {type(ddg).__name__}")
        try:
            self.weighting = Weighting(weighting)
        except ValueError:
            known = ", ".join(w.value for w in Weighting)
            raise ValueError(f"weighting must be one of {known}; got {weighting!r}") from None
        if isinstance(members, (str, bytes)):
            raise TypeError("members must be a collection of member ids, not one str")
        self.members = None if members is None else frozenset(members)
        if self.members is not None and not all(isinstance(m, str) for m in self.members):
            raise TypeError("members must be a collection of str")
        self.basket_id, self.key, self.ddg = basket_id, key, ddg
        self.generator = NoiseGenerator() if generator is None else generator
        self.layer1 = Layer1Aggregator(layer1, generator=self.generator)
        default = len(self.members) if self.members else self.layer1.config.min_updates
        self.expected = _checks.count(
            default if expected_contributors is None else expected_contributors,
            "expected_contributors",
            minimum=1,
        )
        if isinstance(last_round, bool) or not isinstance(last_round, int) or last_round < -1:
            raise ValueError(f"last_round must be an int >= -1, got {last_round!r}")
        self.last_round = last_round
        self.releases = 0

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte X25519 public key members seal their updates to."""
        return self.key.public_key().public_bytes_raw()

    def check_plan(self, plan: SessionPlan) -> None:
        """Refuse a SecAgg+ session in which this node's noise share would not be enough.

        Its threshold ``t`` is the fewest inputs the server can unmask a sum of: it must be at
        least the ``n_min`` the noise was sized for; its vector length must be the encoding's.
        """
        if not isinstance(plan, SessionPlan):
            raise TypeError(f"plan must be a SessionPlan, got {type(plan).__name__}")
        if plan.t < self.ddg.n_min:
            raise ValueError(
                f"the session's threshold t={plan.t} would let the server unmask a sum of "
                f"fewer than the {self.ddg.n_min} inputs the noise is sized for"
            )
        if plan.vector_length != self.ddg.encoded_dim:
            raise ValueError(
                f"the session's vector_length {plan.vector_length} is not the encoding's "
                f"{self.ddg.encoded_dim}"
            )

    def open_updates(
        self, sealed: Mapping[str, bytes], session: bytes, round_id: int
    ) -> tuple[list[str], list[NDArray[Any]], dict[str, str]]:
        """Open and validate every sealed update: (member ids, updates, rejected with why)."""
        if not isinstance(sealed, Mapping):
            raise TypeError(
                f"sealed must be a mapping member -> bytes, got {type(sealed).__name__}"
            )
        SealContext(session, round_id, "-", self.basket_id)  # session and round_id checked
        ids: list[str] = []
        updates: list[NDArray[Any]] = []
        rejected: dict[str, str] = {}
        dtype: np.dtype[Any] | None = None
        for member, blob in sealed.items():
            if not isinstance(member, str) or not member:
                raise TypeError(f"sealed: member ids must be non-empty str, got {member!r}")
            if self.members is not None and member not in self.members:
                rejected[member] = "not enrolled in this basket"
                continue
            try:
                context = SealContext(session, round_id, member, self.basket_id)
                x = open_update(blob, self.key, context)
            except (TypeError, ValueError) as exc:
                rejected[member] = str(exc)
                continue
            if x.shape != (self.ddg.dim,):
                rejected[member] = f"update of length {x.size}, expected {self.ddg.dim}"
            elif not np.isfinite(x).all():
                rejected[member] = "update holds NaN or infinity"
            elif dtype is not None and x.dtype != dtype:
                rejected[member] = f"update is {x.dtype}, the basket's first is {dtype}"
            else:
                dtype = x.dtype
                ids.append(member)
                updates.append(x)
        return ids, updates, rejected

    def prepare(
        self,
        sealed: Mapping[str, bytes],
        *,
        session: bytes,
        round_id: int,
        rotation_seed: bytes | None,
        weights: Mapping[str, float] | None = None,
    ) -> PreparedInput:
        """This round's SecAgg+ input: open, validate, Layer 1, clip, weight, noise, encode.

        A basket left with fewer valid updates than Layer 1's ``min_updates`` (or its rule's
        minimum) still enters the round, with weight 0 and its noise share alone (its share
        keeps protecting the others).

        Parameters
        ----------
        sealed
            Member id -> sealed update (as relayed).
        session, round_id
            What every update must be bound to; ``round_id`` must be after :attr:`last_round`.
        rotation_seed
            The round's public rotation seed (``None`` when the mechanism does not rotate).
        weights
            Optional weight per member (e.g. staleness weights) for Layer 1.
        """
        if isinstance(round_id, bool) or not isinstance(round_id, int) or round_id < 0:
            raise ValueError(f"round_id must be an int >= 0, got {round_id!r}")
        if round_id <= self.last_round:
            raise ValueError(
                f"basket {self.basket_id!r} already released in round {self.last_round}: "
                f"round {round_id} would be a second release (refused)"
            )
        ids, updates, rejected = self.open_updates(sealed, session, round_id)
        w = None
        if weights is not None and ids:
            w = np.array([_checks.non_negative(weights.get(m, 1.0), "weights") for m in ids])
        rollback = self.layer1.savepoint([self.basket_id], ids)
        model = None
        try:
            cfg = self.layer1.config
            if len(updates) >= max(cfg.min_updates, cfg.min_inputs()):
                model = self.layer1.aggregate(
                    np.stack(updates),
                    w,
                    basket_id=self.basket_id,
                    round_id=round_id,
                    expected_contributors=self.expected,
                    client_ids=ids,
                )
            n = 0 if model is None else model.n_contributors
            weight = self._weight(n)
            x = np.zeros(self.ddg.dim)
            if model is not None:
                x = clip_by_l2_norm(np.asarray(model.aggregate, np.float64)[None], self.ddg.clip)
                x = weight * x[0]
            encoded = self.ddg.encode(x, self.generator, rotation_seed)
        except BaseException:
            rollback()
            raise
        self.last_round = round_id
        self.releases += 1
        stats = dict(self.layer1.last_stats) if model is not None else {}
        stats.update(n_valid=len(ids), n_rejected=len(rejected), weight=weight)
        return PreparedInput(self.basket_id, round_id, encoded, weight, n, rejected, stats)

    def _weight(self, n: int) -> float:
        if n == 0:
            return 0.0
        if self.weighting is Weighting.UNIFORM:
            return 1.0
        return min(1.0, n / self.expected)

    def privacy_spent(self, delta: float) -> tuple[float, float]:
        """The basket's (epsilon, delta) over its releases so far, as this node counts them
        (each :meth:`prepare` is one; the sessions it took part in had ``t >= n_min`` when
        :meth:`check_plan` was run on them)."""
        _checks.probability_open(delta, "delta")
        if self.releases == 0:
            return 0.0, float(delta)
        return self.ddg.epsilon(delta, rounds=self.releases), float(delta)

    def __repr__(self) -> str:
        return f"BasketNode({self.basket_id!r}, releases={self.releases})"
