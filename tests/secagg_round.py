"""A hand-driven SecAgg+ round whose messages a test can drop, tamper with or replace: the
operator, the identity registry, the signed plan, the server and every client, in process."""

from __future__ import annotations

import os
from collections.abc import Collection

import numpy as np

from hierfed.secagg import Client, Server
from hierfed.secagg import messages as msg
from hierfed.secagg.graph import choose_parameters, neighbours
from hierfed.secagg.identity import Identity, IdentityRegistry
from hierfed.secagg.session import SecurityPolicy, SessionPlan


class Round:
    """``n`` clients with ``d`` random uint32 values each, all roles in this process."""

    def __init__(
        self,
        n: int,
        d: int = 64,
        *,
        complete: bool = False,
        seed: int = 0,
        policy: SecurityPolicy | None = None,
    ) -> None:
        self.params = choose_parameters(n, complete=complete)
        self.operator = Identity()
        self.identities = [Identity() for _ in range(n)]
        self.registry = IdentityRegistry(
            self.operator.public_bytes, {i: c.public_bytes for i, c in enumerate(self.identities)}
        )
        p = self.params
        self.plan = SessionPlan(os.urandom(32), tuple(range(n)), p.k, p.t, p.complete, d, 0.1)
        self.signed = self.plan.signed(self.operator)
        self.session = self.plan.session
        self.graph = neighbours(self.plan.graph, self.session)
        self.server = Server(self.registry, self.signed)
        self.clients = [
            Client(self.identities[i], i, self.registry, self.signed, policy) for i in range(n)
        ]
        rng = np.random.default_rng(seed)
        self.x = rng.integers(0, 2**32, size=(n, d), dtype=np.uint32)
        self.masked: dict[int, bytes] = {}

    def to_shares(self, drop_share: Collection[int] = ()) -> dict[int, bytes]:
        """Rounds 1-2: every client advertises; those not in ``drop_share`` share keys."""
        for c in self.clients:
            self.server.receive_advertise(c.advertise())
        rosters = self.server.rosters()
        for i, c in enumerate(self.clients):
            m = c.share_keys(rosters[i])
            if i not in drop_share:
                self.server.receive_share_keys(m)
        return self.server.route_shares()

    def to_survivors(
        self, drop_share: Collection[int] = (), drop_input: Collection[int] = ()
    ) -> dict[int, bytes]:
        """Rounds 1-3; the SURVIVORS messages."""
        routed = self.to_shares(drop_share)
        for i, c in enumerate(self.clients):
            if i in routed and i not in drop_input:
                self.masked[i] = c.masked_input(routed[i], self.x[i])
                self.server.receive_masked_input(self.masked[i])
        return self.server.survivors()

    def to_proofs(
        self, drop_tags: Collection[int] = (), **drops: Collection[int]
    ) -> dict[int, bytes]:
        """Rounds 1-4; the CONSISTENCY_PROOFS messages."""
        for i, m in self.to_survivors(**drops).items():
            tags = self.clients[i].consistency(m)
            if i not in drop_tags:
                self.server.receive_consistency_tags(tags)
        return self.server.consistency_proofs()

    def finish(
        self, drop_unmask: Collection[int] = (), **drops: Collection[int]
    ) -> tuple[np.ndarray, tuple[int, ...]]:
        """The whole round; the server's (sum, survivors)."""
        for i, m in self.to_proofs(**drops).items():
            if i not in drop_unmask:
                self.server.receive_unmask_response(self.clients[i].unmask(m))
        return self.server.finalize()

    def expected(self, survivors: Collection[int]) -> np.ndarray:
        """The exact uint32 sum of ``survivors``' inputs."""
        return self.x[sorted(survivors)].sum(axis=0, dtype=np.uint64).astype(np.uint32)


def survivors_message(r: Round, receiver: int, ids: Collection[int]) -> bytes:
    """A SURVIVORS message of the round's session (as a malicious server would forge it)."""
    return msg.Survivors(r.session, receiver, tuple(sorted(ids))).to_bytes()
