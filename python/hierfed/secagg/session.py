"""Session plans: the parameters of one round, signed by the operator, checked by each client.

A :class:`SessionPlan` names the session id, the participants (registry ids, in protocol
order: participant ``i`` is protocol index ``i``, Shamir x-coordinate ``i + 1``), the graph
(``k``, ``t``, complete or Harary), the vector length and the dropout rate the plan was made
for. The operator signs it (:meth:`SessionPlan.signed`); the server relays it. A client accepts
a plan only with the operator's signature and only when its own :class:`SecurityPolicy`
holds (:func:`check_plan`): the server can neither pick weak parameters nor give clients
different plans (every later signature and MAC is bound to the plan's digest), nor grind the
session id for a graph that suits it (the operator picks it).

Wire form (little-endian)::

    magic b"HFSP" | version u8 = 1 | session 32 | k u32 | t u32 | complete u8 |
    vector_length u64 | dropout_rate f64 | count u32 | count x id u32 | signature 64
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from .errors import SecAggError
from .graph import GraphParameters, choose_parameters, colluder_count, parameter_bounds
from .identity import SIGNATURE_BYTES, Identity, IdentityRegistry

__all__ = ["SecurityPolicy", "SessionPlan", "check_plan", "plan_session"]

_MAGIC = b"HFSP"
_VERSION = 1
_HEAD = struct.Struct("<4sB32sIIBQdI")
MAX_VECTOR = (1 << 32) - 1


@dataclass(frozen=True)
class SecurityPolicy:
    """What a client requires of a plan before it takes part.

    Parameters
    ----------
    collusion_fraction
        The fraction of clients this client assumes may collude with the server (its own
        assumption: the plan cannot lower it).
    security_bits
        The plan's security and connectivity failure bounds must be at most
        ``2^-security_bits`` (Bell et al. 2020).
    correctness_bits
        A sparse plan's correctness bound (every client keeps ``t`` live neighbours at the
        plan's dropout rate) must be at most ``2^-correctness_bits``.
    """

    collusion_fraction: float = 0.05
    security_bits: int = 40
    correctness_bits: int = 20

    def __post_init__(self) -> None:
        f = self.collusion_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 0.5:
            raise ValueError(f"collusion_fraction must be in [0, 0.5), got {f!r}")
        for name in ("security_bits", "correctness_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 256:
                raise ValueError(f"{name} must be an int in [1, 256], got {v!r}")


@dataclass(frozen=True)
class SessionPlan:
    """One round's parameters (see the module docstring)."""

    session: bytes
    participants: tuple[int, ...]
    k: int
    t: int
    complete: bool
    vector_length: int
    dropout_rate: float

    def __post_init__(self) -> None:
        if not isinstance(self.session, bytes) or len(self.session) != 32:
            raise ValueError("session must be 32 bytes")
        p = self.participants
        if not isinstance(p, tuple) or len(p) < 2 or len(set(p)) != len(p):
            raise ValueError("participants must be a tuple of at least 2 distinct ids")
        if any(type(i) is not int for i in p) or not 0 <= min(p) <= max(p) < 1 << 32:
            raise ValueError("participants must be ints in [0, 2^32)")
        for name in ("k", "t"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < len(p) + 1:
                raise ValueError(f"{name} must be an int in [1, {len(p)}], got {v!r}")
        if not isinstance(self.complete, bool):
            raise TypeError("complete must be a bool")
        if self.complete and self.k != len(p) - 1:
            raise ValueError(f"a complete graph has k = n - 1 = {len(p) - 1}, got {self.k}")
        v = self.vector_length
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VECTOR:
            raise ValueError(f"vector_length must be an int in [1, 2^32), got {v!r}")
        d = self.dropout_rate
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {d!r}")

    @property
    def n(self) -> int:
        """The number of participants."""
        return len(self.participants)

    @cached_property
    def graph(self) -> GraphParameters:
        """The graph parameters (bounds as computed for the plan's own rates)."""
        return GraphParameters(self.n, self.k, self.t, self.complete, math.nan, math.nan)

    def body(self) -> bytes:
        """The canonical bytes the operator signs."""
        head = _HEAD.pack(
            _MAGIC,
            _VERSION,
            self.session,
            self.k,
            self.t,
            int(self.complete),
            self.vector_length,
            float(self.dropout_rate),
            self.n,
        )
        return head + struct.pack(f"<{self.n}I", *self.participants)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 of :meth:`body`: every signature and MAC of the round is bound to it."""
        return hashlib.sha256(self.body()).digest()

    def signed(self, operator: Identity) -> bytes:
        """The plan and the operator's signature of it (what the server relays)."""
        body = self.body()
        return body + operator.sign(body)

    @classmethod
    def from_signed(cls, data: bytes, registry: IdentityRegistry) -> SessionPlan:
        """Parse a signed plan; SecAggError unless the registry's operator signed it."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a signed plan must be bytes, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) < _HEAD.size + SIGNATURE_BYTES:
            raise SecAggError("the session plan is truncated")
        magic, version, session, k, t, complete, length, rate, count = _HEAD.unpack_from(raw)
        if magic != _MAGIC or version != _VERSION or complete not in (0, 1):
            raise SecAggError("not a session plan (magic, version or flags)")
        if len(raw) != _HEAD.size + 4 * count + SIGNATURE_BYTES:
            raise SecAggError("the session plan's count does not match its length")
        body, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
        if not registry.verify_operator(signature, body):
            raise SecAggError("the session plan is not signed by the operator")
        ids = struct.unpack_from(f"<{count}I", raw, _HEAD.size)
        try:
            return cls(session, tuple(ids), k, t, bool(complete), length, rate)
        except (TypeError, ValueError) as exc:
            raise SecAggError(f"the session plan is malformed: {exc}") from None


def check_plan(plan: SessionPlan, registry: IdentityRegistry, policy: SecurityPolicy) -> None:
    """Raise SecAggError unless ``plan`` meets ``policy`` (Bell et al.'s conditions).

    With ``m = floor(collusion_fraction n)`` colluders: ``2t > k + 1``; the security bound
    (no client has ``2t - k - 1`` colluding neighbours) and, for a sparse graph, the
    connectivity bound at most ``2^-security_bits``; a sparse graph's correctness bound at
    most ``2^-correctness_bits``; every participant enrolled.
    """
    missing = [i for i in plan.participants if i not in registry]
    if missing:
        raise SecAggError(f"participants {missing[:5]} are not in the identity registry")
    n, k, t = plan.n, plan.k, plan.t
    if not plan.complete and (k % 2 or k >= n - 1):
        raise SecAggError(f"a sparse graph needs an even k < n - 1, got k={k} for n={n}")
    if t > k + 1:
        raise SecAggError(f"t={t} exceeds the k + 1 = {k + 1} holders of a client's shares")
    if 2 * t <= k + 1:
        raise SecAggError(
            f"t={t}, k={k}: 2t > k + 1 is required (else a server that tells holders different "
            "stories gathers t shares of both secrets of one client)"
        )
    colluders = colluder_count(n, policy.collusion_fraction)
    sec, cor, split = parameter_bounds(
        n, k, t, colluders, plan.dropout_rate, complete=plan.complete
    )
    if sec > -policy.security_bits:
        raise SecAggError(
            f"t={t}, k={k}, n={n}: with {colluders} colluders the security bound is 2^{sec:.1f}, "
            f"above this client's 2^-{policy.security_bits}"
        )
    if not plan.complete and split > -policy.security_bits:
        raise SecAggError(
            f"k={k}, n={n}: the graph's connectivity bound is 2^{split:.1f}, above "
            f"2^-{policy.security_bits}"
        )
    if not plan.complete and cor > -policy.correctness_bits:
        raise SecAggError(
            f"t={t}, k={k}: the correctness bound at dropout rate {plan.dropout_rate} is "
            f"2^{cor:.1f}, above 2^-{policy.correctness_bits}"
        )


def plan_session(
    participants: Sequence[int],
    vector_length: int,
    *,
    dropout_rate: float = 0.1,
    collusion_fraction: float = 0.05,
    complete: bool = False,
    session: bytes | None = None,
) -> SessionPlan:
    """The operator's plan for ``participants`` (``k``, ``t`` from :func:`choose_parameters`,
    a fresh random session id unless one is given)."""
    ids = tuple(participants)
    params = choose_parameters(len(ids), dropout_rate, collusion_fraction, complete=complete)
    sid = os.urandom(32) if session is None else session
    return SessionPlan(
        sid, ids, params.k, params.t, params.complete, vector_length, float(dropout_rate)
    )
