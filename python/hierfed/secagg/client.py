"""The SecAgg+ client: its five rounds, each checked before this client reveals anything.

Every method validates its whole input before it changes any state: a malformed, replayed or
misaddressed message raises (``ValueError`` or :class:`SecAggError`) and leaves the round where
it was, so the real message is still answered.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Collection, MutableSet

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from numpy.typing import NDArray

from ..privacy.rng import fork_generation
from . import _crypto as cr
from . import messages as msg
from . import shamir
from .client_state import ClientState, decode_state, encode_state
from .errors import SecAggError
from .graph import client_neighbours, ring_order, survivors_connected
from .identity import Identity, IdentityRegistry
from .masks import apply_masks, pair_key, self_key
from .session import SecurityPolicy, SessionPlan, check_plan

__all__ = ["Client"]

_STAGES = ("advertise", "share_keys", "masked_input", "consistency", "unmask", "done")


class Client:
    """One client of one session.

    Parameters
    ----------
    identity
        This client's long-term identity key.
    client_id
        This client's id in ``registry`` (it must be enrolled with ``identity``'s key).
    registry
        The identity registry, provisioned out of band (never taken from the server).
    plan
        The signed :class:`~.session.SessionPlan` (as relayed by the server).
    policy
        What this client requires of the plan (default :class:`~.session.SecurityPolicy`).
    joined
        The session ids this client has taken part in (kept by the deployment, e.g. a set
        loaded from the client's disk): a plan whose id is in it is refused, and the id is
        added. A client that answered one plan twice would give a server two sums over
        different survivor sets of the same inputs.

    Raises
    ------
    SecAggError
        When the plan is not signed by the registry's operator, does not meet ``policy``, or
        does not name this client.
    """

    def __init__(
        self,
        identity: Identity,
        client_id: int,
        registry: IdentityRegistry,
        plan: bytes,
        policy: SecurityPolicy | None = None,
        *,
        joined: MutableSet[bytes] | None = None,
    ) -> None:
        if not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        if not isinstance(registry, IdentityRegistry):
            raise TypeError(f"registry must be an IdentityRegistry, got {type(registry).__name__}")
        p = self._accept(identity, client_id, registry, plan, policy)
        if joined is not None:
            if p.session in joined:
                raise SecAggError("this client already took part in this session: a replay")
            joined.add(p.session)
        self._setup(identity, client_id, registry, p, bytes(plan))
        self._enc = X25519PrivateKey.generate()
        self._mask = X25519PrivateKey.generate()
        self._public = (cr.public(self._enc), cr.public(self._mask))
        self._seed = shamir.draw_secret()

    @staticmethod
    def _accept(
        identity: Identity,
        client_id: int,
        registry: IdentityRegistry,
        plan: bytes,
        policy: SecurityPolicy | None,
    ) -> SessionPlan:
        """The verified plan, after checking the identity's enrolment and the policy."""
        if client_id not in registry or registry.public_bytes(client_id) != identity.public_bytes:
            raise SecAggError(f"client {client_id!r} is not enrolled with this identity key")
        p = SessionPlan.from_signed(plan, registry)
        check_plan(p, registry, SecurityPolicy() if policy is None else policy)
        if client_id not in p.participants:
            raise SecAggError(f"the session plan does not name client {client_id}")
        return p

    def _setup(
        self,
        identity: Identity,
        client_id: int,
        registry: IdentityRegistry,
        p: SessionPlan,
        signed_plan: bytes,
    ) -> None:
        """The fields every client has at stage 0 (its keys and seed apart)."""
        self.plan = p
        self.client_id = client_id
        self._signed_plan = signed_plan
        self.registry = registry
        self.index = p.participants.index(client_id)
        """This client's protocol index (its Shamir x-coordinate is ``index + 1``)."""
        self._order = [] if p.complete else ring_order(p.graph, p.session)
        self.neighbours = frozenset(
            client_neighbours(p.graph, p.session, self.index, order=self._order or None)
        )
        self.rejected: dict[int, str] = {}
        """Peer -> why its advertisement or share was refused (that peer is left out)."""
        self._identity = identity
        self._generation = fork_generation()
        self._stage = 0
        self._peers: dict[int, tuple[bytes, bytes]] = {}
        self._held: dict[int, msg.SharePlaintext] = {}
        self._own: msg.SharePlaintext | None = None
        self._pair_keys: dict[int, tuple[bytes, bytes]] = {}
        self._survivors: frozenset[int] = frozenset()
        self._survivors_digest = b""

    # ------------------------------------------------------------------------------ state

    def export_state(self) -> bytes:
        """This client's whole state as bytes (secrets included: keep them on this node),
        authenticated under its identity key; :meth:`from_state` continues the round from it.

        The state of a client that has answered ``unmask`` holds no shares any more.
        """
        return encode_state(
            ClientState(
                self._stage,
                self.client_id,
                self._signed_plan,
                self._enc.private_bytes_raw(),
                self._mask.private_bytes_raw(),
                self._seed,
                dict(self._peers),
                dict(self._held),
                self._own,
                tuple(sorted(self._survivors)),
                self._survivors_digest,
                dict(self.rejected),
            ),
            self._identity.private_bytes(),
        )

    @classmethod
    def from_state(
        cls,
        state: bytes,
        identity: Identity,
        registry: IdentityRegistry,
        policy: SecurityPolicy | None = None,
    ) -> Client:
        """The client :meth:`export_state` wrote, at the stage it had reached.

        The state must be authenticated by ``identity`` (the one that wrote it) and its plan
        is checked again against ``registry`` and ``policy`` as at construction. The session
        is not checked against a ``joined`` set: the client joined it when it was created, and
        its stage (inside the authenticated state) refuses a message answered before.

        Raises
        ------
        ValueError
            When ``state`` is not a client state of ``identity``, or is malformed.
        SecAggError
            When its plan no longer passes the checks.
        """
        if not isinstance(identity, Identity):
            raise TypeError(f"identity must be an Identity, got {type(identity).__name__}")
        if not isinstance(registry, IdentityRegistry):
            raise TypeError(f"registry must be an IdentityRegistry, got {type(registry).__name__}")
        s = decode_state(state, identity.private_bytes())
        p = cls._accept(identity, s.client_id, registry, s.plan, policy)
        client = cls.__new__(cls)
        client._setup(identity, s.client_id, registry, p, s.plan)
        try:
            client._enc = X25519PrivateKey.from_private_bytes(s.enc_key)
            client._mask = X25519PrivateKey.from_private_bytes(s.mask_key)
        except ValueError:  # pragma: no cover - 32 bytes are always an X25519 key
            raise ValueError("the client state's keys are malformed") from None
        client._public = (cr.public(client._enc), cr.public(client._mask))
        _check_restored(s, client.index, client.neighbours, p.n)
        client._seed = s.seed
        client._stage = s.stage
        client._peers = dict(s.peers)
        client._held = dict(s.held)
        client._own = s.own
        client._survivors = frozenset(s.survivors)
        client._survivors_digest = s.survivors_digest
        client.rejected = dict(s.rejected)
        return client

    # ------------------------------------------------------------------------------ checks

    def _check(self, stage: int, session: bytes | None = None, to: int | None = None) -> None:
        if fork_generation() != self._generation:
            raise SecAggError(
                f"client {self.index} was created before a fork: a forked copy would reuse its "
                "keys and masks; create the client in the process that runs it"
            )
        if self._stage != stage:
            raise SecAggError(
                f"client {self.index}: {_STAGES[stage]} called out of order (at "
                f"{_STAGES[self._stage]})"
            )
        if session is not None and session != self.plan.session:
            raise SecAggError(f"client {self.index}: message from another session")
        if to is not None and to != self.index:
            raise SecAggError(f"client {self.index}: message addressed to client {to}")

    def _enough(self, count: int, what: str) -> None:
        if count < self.plan.t:
            raise SecAggError(
                f"client {self.index}: {what}: {count}, fewer than the threshold "
                f"t={self.plan.t}; refusing to go on"
            )

    def _keys(self, v: int) -> tuple[bytes, bytes]:
        """The AES-GCM and consistency-MAC keys shared with peer ``v`` (derived once)."""
        keys = self._pair_keys.get(v)
        if keys is None:
            shared = cr.exchange(self._enc, self._peers[v][0])
            keys = self._pair_keys[v] = cr.channel_keys(shared, self.plan.digest, self.index, v)
        return keys

    # ------------------------------------------------------------------------------ rounds

    def advertise(self) -> bytes:
        """Round 1: the ADVERTISE message (both public keys, signed by the identity key)."""
        self._check(0)
        enc, mask = self._public
        payload = msg.advertisement_payload(self.plan.digest, self.index, enc, mask)
        self._stage = 1
        return msg.Advertise(
            self.plan.session, self.index, enc, mask, self._identity.sign(payload)
        ).to_bytes()

    def share_keys(self, roster: bytes) -> bytes:
        """Round 2: the SHARE_KEYS message, given this client's ROSTER from the server.

        Every neighbour's advertisement is checked against its identity key; a neighbour
        whose signature fails is left out (recorded in ``self.rejected``).
        """
        self._check(1)
        r = msg.Roster.from_bytes(roster)
        self._check(1, r.session)
        if not any(e[0] == self.index and e[1:3] == self._public for e in r.entries):
            raise SecAggError(f"client {self.index}: the roster misstates this client's keys")
        peers: dict[int, tuple[bytes, bytes]] = {}
        rejected: dict[int, str] = {}
        for v, c, s, signature in r.entries:
            if v not in self.neighbours:
                continue
            payload = msg.advertisement_payload(self.plan.digest, v, c, s)
            if self.registry.verify(self.plan.participants[v], signature, payload):
                peers[v] = (c, s)
            else:
                rejected[v] = "advertisement not signed by its identity key"
        self._enough(len(peers) + 1, "neighbours with valid advertisements, with this client")
        self._peers = peers
        self.rejected.update(rejected)
        holders = sorted([*peers, self.index])
        key_elems = shamir.bytes_to_elements(cr.key_secret(self._mask.private_bytes_raw()))
        seed_elems = shamir.bytes_to_elements(self._seed)
        shares = shamir.split(key_elems + seed_elems, [h + 1 for h in holders], self.plan.t)
        digest = self.plan.digest
        cts = []
        for v, share in zip(holders, shares, strict=True):
            p = msg.SharePlaintext(
                self.index, v, share[: shamir.ELEMENTS], share[shamir.ELEMENTS :]
            )
            if v == self.index:
                self._own = p
                continue
            nonce = os.urandom(msg.NONCE_BYTES)
            aead = AESGCM(self._keys(v)[0])
            data = aead.encrypt(nonce, p.to_bytes(), cr.ad(digest, self.index, v))
            cts.append(msg.Ciphertext(v, nonce, data))
        commitment = cr.commit(self._seed, digest, self.index)
        self._stage = 2
        return msg.ShareKeys(self.plan.session, self.index, commitment, tuple(cts)).to_bytes()

    def _open(self, ct: msg.Ciphertext) -> msg.SharePlaintext | str:
        """The share in ``ct`` from peer ``ct.peer``, or why it is refused."""
        v = ct.peer
        if v not in self._peers:
            return "a share from a client that is not a verified neighbour"
        try:
            aead = AESGCM(self._keys(v)[0])
            plain = aead.decrypt(ct.nonce, ct.data, cr.ad(self.plan.digest, v, self.index))
            p = msg.SharePlaintext.from_bytes(plain)
        except (InvalidTag, ValueError):
            return "its share fails authentication or does not parse"
        if (p.sender, p.receiver) != (v, self.index):
            return "its share is misaddressed"
        return p

    def masked_input(self, shares: bytes, vector: NDArray[np.uint32]) -> bytes:
        """Round 3: the MASKED_INPUT message of ``vector``, given the routed SHARES.

        A share that fails authentication leaves its sender out: this client neither holds
        its share nor masks with it (and says so in the message's peer list).
        """
        self._check(2)
        v_arr = np.asarray(vector)
        if not isinstance(vector, np.ndarray) or v_arr.dtype != np.uint32 or v_arr.ndim != 1:
            raise TypeError("vector must be a 1-D uint32 numpy array")
        if v_arr.size != self.plan.vector_length:
            raise ValueError(
                f"vector has {v_arr.size} values; the session plan has {self.plan.vector_length}"
            )
        s = msg.Shares.from_bytes(shares)
        self._check(2, s.session, s.receiver)
        held: dict[int, msg.SharePlaintext] = {}
        rejected: dict[int, str] = {}
        for ct in s.ciphertexts:
            opened = self._open(ct)
            if isinstance(opened, str):
                rejected[ct.peer] = opened
            else:
                held[ct.peer] = opened
        self._enough(len(held) + 1, "neighbours whose shares were received, with this client")
        out = v_arr.copy()
        digest = self.plan.digest
        keys = [self_key(self._seed, digest, self.index)]
        negate = [False]
        for v in sorted(held):
            shared = cr.exchange(self._mask, self._peers[v][1])
            keys.append(pair_key(shared, digest, self.index, v))
            negate.append(self.index > v)
        apply_masks(keys, negate, out)
        self._held = held
        self.rejected.update(rejected)
        self._stage = 3
        return msg.MaskedInput(
            self.plan.session, self.index, tuple(sorted(held)), out.astype("<u4").tobytes()
        ).to_bytes()

    def consistency(self, survivors: bytes) -> bytes:
        """Round 4: the CONSISTENCY_TAGS message for the server's SURVIVORS claim.

        Refuses (no tags, stage unused) a set that leaves this client out, names unknown
        clients, holds fewer than ``t - 1`` of its neighbours, or splits the graph. Once tagged,
        the set is final for this client.
        """
        self._check(3)
        m = msg.Survivors.from_bytes(survivors)
        self._check(3, m.session, m.receiver)
        alive = frozenset(m.ids)
        if self.index not in alive:
            raise SecAggError(f"client {self.index}: the survivor set leaves this client out")
        if max(alive) >= self.plan.n:
            raise SecAggError(f"client {self.index}: the survivor set names unknown clients")
        live_peers = sorted(alive & self._peers.keys())
        self._enough(len(live_peers) + 1, "live neighbours in the survivor set, with this client")
        if not survivors_connected(
            self.plan.graph, self.plan.session, alive, order=self._order or None
        ):
            raise SecAggError(
                f"client {self.index}: the survivor set splits the graph: the server would "
                "learn the sums of its parts"
            )
        digest = cr.survivors_digest(self.plan.digest, alive)
        entries = tuple((v, cr.tag(self._keys(v)[1], digest, self.index, v)) for v in live_peers)
        self._survivors, self._survivors_digest = alive, digest
        self._stage = 4
        return msg.ConsistencyTags(self.plan.session, self.index, entries).to_bytes()

    def _valid_tags(self, entries: Collection[tuple[int, bytes]]) -> int:
        digest = self._survivors_digest
        count = 0
        for v, t in entries:
            if v in self._peers and v in self._survivors:
                want = cr.tag(self._keys(v)[1], digest, v, self.index)
                count += hmac.compare_digest(t, want)
        return count

    def unmask(self, proofs: bytes) -> bytes:
        """Round 5: the UNMASK_RESPONSE, given the neighbours' routed CONSISTENCY_PROOFS.

        Reveals only after ``t`` share holders confirmed the same survivor set (valid tags of at
        least ``t - 1`` neighbours, and this client): its own seed
        share, each held neighbour's seed share if it survives, else its key share.
        """
        self._check(4)
        m = msg.ConsistencyProofs.from_bytes(proofs)
        self._check(4, m.session, m.owner)
        self._enough(
            self._valid_tags(m.entries) + 1,
            "holders confirming the same survivor set, with this one",
        )
        assert self._own is not None
        out = [(self.index, msg.SEED, self._own.seed_share)]
        for v in sorted(self._held):
            p = self._held[v]
            if v in self._survivors:
                out.append((v, msg.SEED, p.seed_share))
            else:
                out.append((v, msg.KEY, p.key_share))
        out.sort()
        self._held = {}
        self._stage = 5
        return msg.UnmaskResponse(self.plan.session, self.index, tuple(out)).to_bytes()


def _check_restored(s: ClientState, index: int, neighbours: frozenset[int], n: int) -> None:
    """ValueError unless the restored fields are consistent with each other and the plan."""
    why = None
    if not 0 <= s.stage < len(_STAGES):
        why = f"stage {s.stage} is not one of the {len(_STAGES)} stages"
    elif s.peers.keys() - neighbours:
        why = "it names peers that are not this client's neighbours"
    elif s.held.keys() - s.peers.keys():
        why = "it holds shares of clients that are not its peers"
    elif any((p.sender, p.receiver) != (v, index) for v, p in s.held.items()):
        why = "a held share is misaddressed"
    elif (s.own is None) != (s.stage < 2):
        why = "its own share does not match its stage"
    elif s.own is not None and (s.own.sender, s.own.receiver) != (index, index):
        why = "its own share is misaddressed"
    elif s.survivors and (s.stage < 4 or max(s.survivors) >= n):
        why = "its survivor set does not match its stage or the plan"
    elif len(s.survivors_digest) not in (0, 32):
        why = "its survivor digest has the wrong length"
    elif len(s.seed) != 32 or int.from_bytes(s.seed, "little") >> shamir.SECRET_BITS:
        why = "its seed is not a secret"
    if why is not None:
        raise ValueError(f"the client state is inconsistent: {why}")
