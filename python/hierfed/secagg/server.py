"""The SecAgg+ server: routes messages, fixes the survivor set, reconstructs and unmasks.

A message that fails a check raises ``ValueError`` and changes nothing: its sender counts as
not having sent it (dropped at that stage), and the reason is kept in :attr:`Server.rejected`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from . import _crypto as cr
from . import messages as msg
from . import shamir
from .errors import SecAggError
from .graph import neighbours
from .identity import IdentityRegistry
from .masks import apply_masks, pair_key, self_key
from .session import SessionPlan

__all__ = ["Server"]

Shares = list[tuple[int, tuple[int, ...]]]
T = TypeVar("T")


def _inboxes(sent: Mapping[int, Iterable[tuple[int, T]]]) -> dict[int, list[tuple[int, T]]]:
    """Each sender's ``(recipient, item)`` pairs as every sender's inbox of ``(sender, item)``,
    senders ascending; items for a client that sent nothing are dropped."""
    inbox: dict[int, list[tuple[int, T]]] = {u: [] for u in sent}
    for u in sorted(sent):
        for v, item in sent[u]:
            if v in inbox:
                inbox[v].append((u, item))
    return inbox


def _recover(
    owner: int, what: str, shares: Shares, t: int, check: Callable[[bytes], bool]
) -> tuple[bytes, list[int]]:
    """The secret of ``owner`` from ``(x, share)`` pairs, decoded despite corrupted shares and
    checked by ``check``, and the x-coordinates of the corrupted shares."""
    if len(shares) < t:
        raise SecAggError(
            f"only {len(shares)} shares of client {owner}'s {what}, fewer than t={t}: "
            "too many of its neighbours dropped"
        )
    try:
        elems, bad = shamir.decode([x for x, _ in shares], [s for _, s in shares], t)
        secret = shamir.elements_to_bytes(elems)
    except ValueError as exc:
        raise SecAggError(
            f"the shares of client {owner}'s {what} cannot be decoded ({exc}): aborting "
            "rather than returning a wrong sum"
        ) from None
    if not check(secret):
        raise SecAggError(
            f"client {owner}'s {what} decodes to a value that fails its commitment: it dealt "
            "inconsistent shares, or too many holders lied; aborting"
        )
    return secret, bad


class Server:
    """The server of one session.

    Parameters
    ----------
    registry
        The identity registry (to check advertisements and drop bad ones early).
    plan
        The signed session plan.
    """

    def __init__(self, registry: IdentityRegistry, plan: bytes) -> None:
        self.plan = p = SessionPlan.from_signed(plan, registry)
        self.registry = registry
        self.n = p.n
        self.neighbours = [frozenset(nb) for nb in neighbours(p.graph, p.session)]
        self._stage = 0
        self._keys: dict[int, tuple[bytes, bytes, bytes]] = {}
        self._shared: dict[int, msg.ShareKeys] = {}
        self._inputs: dict[int, bytes] = {}
        self._peers: dict[int, frozenset[int]] = {}
        self._survivors: frozenset[int] = frozenset()
        self._tags: dict[int, msg.ConsistencyTags] = {}
        self._proofs: set[int] = set()
        self._responses: dict[int, msg.UnmaskResponse] = {}
        self.rejected: dict[int, str] = {}
        """Claimed sender -> why its message was refused (first reason)."""
        self.excluded: dict[int, str] = {}
        """Client -> why its masked input was left out of the survivor set."""
        self.corrupted_shares: list[tuple[int, int]] = []
        """(holder, owner) of every revealed share found corrupted (corrected, left out)."""

    # ------------------------------------------------------------------------------ checks

    def _expect(self, stage: int, name: str) -> None:
        if self._stage != stage:
            raise SecAggError(f"server: {name} out of order")

    def _refuse(self, sender: int, why: str) -> None:
        if 0 <= sender < self.n:
            self.rejected.setdefault(sender, why)
        raise ValueError(f"client {sender}: {why}")

    def _sender(
        self, session: bytes, sender: int, seen: Collection[int], pool: Collection[int] | None
    ) -> None:
        if session != self.plan.session:
            raise ValueError("message from another session")
        if not 0 <= sender < self.n:
            raise ValueError(f"sender {sender} is not a client of this session")
        if sender in seen:
            raise ValueError(f"client {sender} sent this message twice")
        if pool is not None and sender not in pool:
            raise ValueError(f"client {sender} is not in this round")

    # ------------------------------------------------------------------------------ rounds

    def receive_advertise(self, data: bytes) -> None:
        """Round 1: a client's ADVERTISE (its signature is checked here already)."""
        self._expect(0, "receive_advertise")
        m = msg.Advertise.from_bytes(data)
        self._sender(m.session, m.sender, self._keys, None)
        payload = msg.advertisement_payload(self.plan.digest, m.sender, m.enc_key, m.mask_key)
        if not self.registry.verify(self.plan.participants[m.sender], m.signature, payload):
            raise ValueError(f"client {m.sender}'s advertisement is not signed by its identity")
        self._keys[m.sender] = (m.enc_key, m.mask_key, m.signature)

    def rosters(self) -> dict[int, bytes]:
        """End of round 1: each advertised client's ROSTER (its own and its advertised
        neighbours' signed keys: O(k) per client)."""
        self._expect(0, "rosters")
        self._stage = 1
        out = {}
        for u in sorted(self._keys):
            ids = sorted((self.neighbours[u] & self._keys.keys()) | {u})
            entries = tuple((i, *self._keys[i]) for i in ids)
            out[u] = msg.Roster(self.plan.session, entries).to_bytes()
        return out

    def receive_share_keys(self, data: bytes) -> None:
        """Round 2: a client's SHARE_KEYS (one share per neighbour it verified)."""
        self._expect(1, "receive_share_keys")
        m = msg.ShareKeys.from_bytes(data)
        self._sender(m.session, m.sender, self._shared, self._keys)
        allowed = self.neighbours[m.sender] & self._keys.keys()
        if not {c.peer for c in m.ciphertexts} <= allowed:
            self._refuse(m.sender, "a share addressed to a client that is not its neighbour")
        self._shared[m.sender] = m

    def route_shares(self) -> dict[int, bytes]:
        """End of round 2: the SHARES message of each client that shared keys."""
        self._expect(1, "route_shares")
        self._stage = 2
        inbox = _inboxes({u: [(c.peer, c) for c in m.ciphertexts] for u, m in self._shared.items()})
        session = self.plan.session
        return {
            v: msg.Shares(
                session, v, tuple(msg.Ciphertext(u, c.nonce, c.data) for u, c in got)
            ).to_bytes()
            for v, got in inbox.items()
        }

    def receive_masked_input(self, data: bytes) -> None:
        """Round 3: a client's MASKED_INPUT (its length must be the plan's)."""
        self._expect(2, "receive_masked_input")
        m = msg.MaskedInput.from_bytes(data)
        self._sender(m.session, m.sender, self._inputs, self._shared)
        if len(m.words) != 4 * self.plan.vector_length:
            self._refuse(
                m.sender,
                f"sent {len(m.words) // 4} values; the plan has {self.plan.vector_length}",
            )
        if not set(m.peers) <= self.neighbours[m.sender] & self._shared.keys():
            self._refuse(m.sender, "claims pair masks with clients that shared no keys with it")
        self._inputs[m.sender] = m.words
        self._peers[m.sender] = frozenset(m.peers)

    def _survivor_set(self) -> frozenset[int]:
        """The largest set whose sum can be unmasked: pair masks agree between survivors, and
        every secret needed (survivors' seeds, the mask keys of left-out clients that a
        survivor masked with) has at least ``t`` holders among the survivors."""
        t, peers = self.plan.t, self._peers
        alive = set(self._inputs)

        def out(u: int, why: str) -> None:
            alive.discard(u)
            self.excluded.setdefault(u, why)

        changed = True
        while changed:
            changed = False
            for u in sorted(alive):
                if u not in alive:
                    continue
                refused = [w for w in peers[u] if w in alive and u not in peers[w]]
                if refused:
                    out(u, f"neighbours {refused[:5]} refused its share")
                    changed = True
                    continue
                holders = 1 + sum(u in peers[w] for w in self.neighbours[u] & alive)
                if holders < t:
                    out(u, f"only {holders} surviving holders of its shares (t={t})")
                    changed = True
            for v in sorted(self._shared.keys() - alive):
                maskers = [w for w in self.neighbours[v] & alive if v in peers[w]]
                if 0 < len(maskers) < t:
                    for w in maskers:
                        out(w, f"masked with {v}, whose key has fewer than t={t} holders")
                    changed = True
        return frozenset(alive)

    def survivors(self) -> dict[int, bytes]:
        """End of round 3: the SURVIVORS message of each client whose input is summed."""
        self._expect(2, "survivors")
        alive = self._survivor_set()
        if len(alive) < self.plan.t:
            raise SecAggError(
                f"only {len(alive)} masked inputs can be unmasked, fewer than t={self.plan.t}: "
                "too many clients dropped; the round is aborted"
            )
        self._stage = 3
        self._survivors = alive
        return msg.Survivors.for_each(self.plan.session, tuple(sorted(alive)))

    def receive_consistency_tags(self, data: bytes) -> None:
        """Round 4: a survivor's CONSISTENCY_TAGS."""
        self._expect(3, "receive_consistency_tags")
        m = msg.ConsistencyTags.from_bytes(data)
        self._sender(m.session, m.owner, self._tags, self._survivors)
        if not {p for p, _ in m.entries} <= self.neighbours[m.owner] & self._survivors:
            self._refuse(m.owner, "tags addressed to clients that are not live neighbours")
        self._tags[m.owner] = m

    def consistency_proofs(self) -> dict[int, bytes]:
        """End of round 4: each tagging survivor's CONSISTENCY_PROOFS (its neighbours' tags)."""
        self._expect(3, "consistency_proofs")
        self._stage = 4
        inbox = _inboxes({u: m.entries for u, m in self._tags.items()})
        self._proofs = set(inbox)
        session = self.plan.session
        return {v: msg.ConsistencyProofs(session, v, tuple(e)).to_bytes() for v, e in inbox.items()}

    def receive_unmask_response(self, data: bytes) -> None:
        """Round 5: a survivor's UNMASK_RESPONSE."""
        self._expect(4, "receive_unmask_response")
        m = msg.UnmaskResponse.from_bytes(data)
        self._sender(m.session, m.sender, self._responses, self._proofs)
        alive = self._survivors
        want = sorted(
            [(m.sender, msg.SEED)]
            + [(v, msg.SEED if v in alive else msg.KEY) for v in self._peers[m.sender]]
        )
        if [(o, k) for o, k, _ in m.shares] != want:
            self._refuse(m.sender, "did not reveal the shares its survivor set calls for")
        self._responses[m.sender] = m

    def finalize(self) -> tuple[NDArray[np.uint32], tuple[int, ...]]:
        """End of round 5: (the sum mod 2^32 of the survivors' inputs, their ids).

        Raises SecAggError (no output) when a secret cannot be reconstructed and checked.
        """
        self._expect(4, "finalize")
        self._stage = 5
        t, digest = self.plan.t, self.plan.digest
        survivors = tuple(sorted(self._survivors))
        seeds: dict[int, Shares] = {u: [] for u in survivors}
        keys: dict[int, Shares] = {}
        for w in sorted(self._responses):
            for owner, kind, share in self._responses[w].shares:
                target = seeds[owner] if kind == msg.SEED else keys.setdefault(owner, [])
                target.append((w + 1, share))
        mask_keys: list[bytes] = []
        negate: list[bool] = []
        for u in survivors:
            commitment = self._shared[u].commitment

            def seed_ok(s: bytes, u: int = u, c: bytes = commitment) -> bool:
                return cr.commit(s, digest, u) == c

            seed, bad = _recover(u, "self-mask seed", seeds[u], t, seed_ok)
            self.corrupted_shares.extend((x - 1, u) for x in bad)
            mask_keys.append(self_key(seed, digest, u))
            negate.append(True)
        for v in sorted(self._shared.keys() - self._survivors):
            live = sorted(w for w in self.neighbours[v] & self._survivors if v in self._peers[w])
            if not live:
                continue
            public = self._keys[v][1]

            def key_ok(s: bytes, p: bytes = public) -> bool:
                try:
                    return cr.public(cr.secret_key(s)) == p
                except ValueError:
                    return False

            raw, bad = _recover(v, "masking key", keys.get(v, []), t, key_ok)
            self.corrupted_shares.extend((x - 1, v) for x in bad)
            sk = cr.secret_key(raw)
            for w in live:
                shared = cr.exchange(sk, self._keys[w][1])
                mask_keys.append(pair_key(shared, digest, w, v))
                negate.append(w < v)  # w added it when w < v: remove it
        total = np.zeros(self.plan.vector_length, np.uint32)
        for u in survivors:
            total += np.frombuffer(self._inputs[u], dtype="<u4")
        self._inputs = {}
        apply_masks(mask_keys, negate, total)
        return total, survivors
