"""SecAgg+ client and server state machines over the messages of :mod:`.messages`.

Rounds (Bonawitz et al. 2017; Bell et al. 2020), each client ``u`` having neighbours ``N(u)``:

1. advertise: ``u`` sends two X25519 public keys, one for encrypting shares and one for
   masking; the server sends each client the keys of its advertised neighbours.
2. share keys: ``u`` draws a 32-byte self-mask seed, Shamir-shares it and its masking secret
   key among its advertised neighbours (threshold ``t``), encrypts each neighbour's shares
   with AES-GCM under an HKDF key of their X25519 secret (associated data: session, sender,
   receiver), and commits to the seed (SHA-256); the server routes the ciphertexts.
3. masked input: ``u`` adds its self mask and, for each neighbour ``v`` that shared keys,
   ``+`` the pair mask if ``u < v`` else ``-``; all mod 2^32 in one fused kernel.
4. unmask: the server names each live client's neighbours as alive or dropped; the client
   reveals its own seed share, the seed share of a live neighbour and the key share of a
   dropped one, never both for one peer (and ``2t > k + 1 + colluders``, see
   :mod:`.graph`, so even a server that tells different holders different stories never
   gathers ``t`` shares of both); it refuses a request naming a peer in both lists, or any
   it holds no share of. The server reconstructs, checks each seed against its commitment
   and each key against its public key (so a corrupted share is found and left out, or the
   round aborts), and removes the masks.

Any condition that would give a wrong or insecure result raises :class:`SecAggError`.

Threat model: an honest-but-curious server and up to the configured fraction of colluding
clients, plus the hardening above against a server that deviates. Clients are not
authenticated (no PKI) and there is no signed consistency round (Bonawitz et al.'s fifth
round), so a fully malicious server that falsely declares all honest neighbours of a client
dropped (and discards their inputs) can still learn that client's input.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
from collections.abc import Callable, Collection, Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from numpy.typing import NDArray

from . import messages as msg
from . import shamir
from .graph import GraphParameters
from .masks import apply_masks, encryption_key, pair_key, self_key

__all__ = ["Client", "SecAggError", "Server"]

_COMMIT_LABEL = b"hierfed.secagg.seed-commitment.v1"
_AD_LABEL = b"hierfed.secagg.share.v1"
_RANDOM_TRIES = 64  # random share subsets tried after the deterministic ones


class SecAggError(ValueError):
    """The round cannot finish correctly and securely (it is aborted, with no output)."""


def _commit(seed: bytes, session: bytes, owner: int) -> bytes:
    return hashlib.sha256(_COMMIT_LABEL + session + struct.pack("<I", owner) + seed).digest()


def _ad(session: bytes, sender: int, receiver: int) -> bytes:
    return _AD_LABEL + session + struct.pack("<II", sender, receiver)


def _public(sk: X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes_raw()


def _exchange(sk: X25519PrivateKey, pk: bytes) -> bytes:
    return sk.exchange(X25519PublicKey.from_public_bytes(pk))


class Client:
    """One client of a session.

    Parameters
    ----------
    index
        This client's id in ``[0, n)`` (its Shamir x-coordinate is ``index + 1``).
    session
        The 32-byte session id.
    params
        The graph parameters of the session (``t`` is used).
    neighbours
        This client's neighbours (from :func:`.graph.neighbours`).
    """

    def __init__(
        self, index: int, session: bytes, params: GraphParameters, neighbours: Sequence[int]
    ) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < params.n:
            raise ValueError(f"index must be an int in [0, {params.n}), got {index!r}")
        if not isinstance(session, bytes) or len(session) != msg.SESSION_BYTES:
            raise ValueError(f"session must be {msg.SESSION_BYTES} bytes")
        if index in neighbours or any(not 0 <= v < params.n for v in neighbours):
            raise ValueError("neighbours must be other clients' ids in [0, n)")
        self.index = index
        self.session = session
        self.t = params.t
        self.neighbours = frozenset(neighbours)
        self._enc = X25519PrivateKey.generate()
        self._mask = X25519PrivateKey.generate()
        self._seed = os.urandom(32)
        self._stage = 0
        self._peers: dict[int, tuple[bytes, bytes]] = {}
        self._held: dict[int, msg.SharePlaintext] = {}
        self._own: msg.SharePlaintext | None = None
        self._aead_keys: dict[int, bytes] = {}

    def _aead(self, v: int) -> bytes:
        """The AES-GCM key shared with neighbour ``v`` (derived once)."""
        key = self._aead_keys.get(v)
        if key is None:
            shared = _exchange(self._enc, self._peers[v][0])
            key = self._aead_keys[v] = encryption_key(shared, self.session, self.index, v)
        return key

    def _advance(self, expected: int, name: str) -> None:
        if self._stage != expected:
            raise SecAggError(f"client {self.index}: {name} called out of order")
        self._stage += 1

    def _check_session(self, session: bytes) -> None:
        if session != self.session:
            raise SecAggError(f"client {self.index}: message from another session")

    def advertise(self) -> bytes:
        """Round 1: the ADVERTISE message."""
        self._advance(0, "advertise")
        return msg.Advertise(
            self.session, self.index, _public(self._enc), _public(self._mask)
        ).to_bytes()

    def share_keys(self, roster: bytes) -> bytes:
        """Round 2: the SHARE_KEYS message, given this client's ROSTER from the server."""
        self._advance(1, "share_keys")
        r = msg.Roster.from_bytes(roster)
        self._check_session(r.session)
        mine = (self.index, _public(self._enc), _public(self._mask))
        if mine not in r.entries:
            raise SecAggError(f"client {self.index}: the roster misstates this client's keys")
        self._peers = {i: (c, s) for i, c, s in r.entries if i in self.neighbours}
        if len(self._peers) + 1 < self.t:
            raise SecAggError(
                f"client {self.index}: {len(self._peers)} neighbours advertised; with this "
                f"client that is fewer than the threshold t={self.t}"
            )
        holders = sorted([*self._peers, self.index])
        key_elems = shamir.bytes_to_elements(self._mask.private_bytes_raw())
        seed_elems = shamir.bytes_to_elements(self._seed)
        shares = shamir.split(key_elems + seed_elems, [h + 1 for h in holders], self.t)
        cts = []
        for v, share in zip(holders, shares, strict=True):
            p = msg.SharePlaintext(
                self.index, v, share[: shamir.ELEMENTS], share[shamir.ELEMENTS :]
            )
            if v == self.index:
                self._own = p
                continue
            nonce = os.urandom(msg.NONCE_BYTES)
            data = AESGCM(self._aead(v)).encrypt(
                nonce, p.to_bytes(), _ad(self.session, self.index, v)
            )
            cts.append(msg.Ciphertext(v, nonce, data))
        commitment = _commit(self._seed, self.session, self.index)
        return msg.ShareKeys(self.session, self.index, commitment, tuple(cts)).to_bytes()

    def masked_input(self, shares: bytes, vector: NDArray[np.uint32]) -> bytes:
        """Round 3: the MASKED_INPUT message of ``vector``, given the routed SHARES."""
        self._advance(2, "masked_input")
        s = msg.Shares.from_bytes(shares)
        self._check_session(s.session)
        if s.receiver != self.index:
            raise SecAggError(f"client {self.index}: shares addressed to {s.receiver}")
        for ct in s.ciphertexts:
            v = ct.peer
            if v not in self._peers:
                raise SecAggError(f"client {self.index}: a share from non-neighbour {v}")
            try:
                plain = AESGCM(self._aead(v)).decrypt(
                    ct.nonce, ct.data, _ad(self.session, v, self.index)
                )
            except InvalidTag:
                raise SecAggError(
                    f"client {self.index}: the share from {v} fails authentication"
                ) from None
            p = msg.SharePlaintext.from_bytes(plain)
            if (p.sender, p.receiver) != (v, self.index):
                raise SecAggError(f"client {self.index}: the share from {v} is misaddressed")
            self._held[v] = p
        if len(self._held) + 1 < self.t:
            raise SecAggError(
                f"client {self.index}: {len(self._held)} neighbours shared keys; with this "
                f"client that is fewer than the threshold t={self.t}"
            )
        v_arr = np.asarray(vector)
        if v_arr.dtype != np.uint32 or v_arr.ndim != 1:
            raise TypeError("vector must be a 1-D uint32 array")
        out = v_arr.copy()
        keys = [self_key(self._seed, self.session, self.index)]
        negate = [False]
        for v in sorted(self._held):
            shared = _exchange(self._mask, self._peers[v][1])
            keys.append(pair_key(shared, self.session, self.index, v))
            negate.append(self.index > v)
        apply_masks(keys, negate, out)
        return msg.MaskedInput(self.session, self.index, out.astype("<u4").tobytes()).to_bytes()

    def unmask(self, request: bytes) -> bytes:
        """Round 4: the UNMASK_RESPONSE to the server's UNMASK_REQUEST.

        Refuses (SecAggError) a request naming a peer both alive and dropped, naming a peer
        whose shares this client does not hold, or leaving one unclassified.
        """
        self._advance(3, "unmask")
        q = msg.UnmaskRequest.from_bytes(request)
        self._check_session(q.session)
        if q.receiver != self.index:
            raise SecAggError(f"client {self.index}: unmask request addressed to {q.receiver}")
        alive, dropped = set(q.alive), set(q.dropped)
        if alive & dropped:
            raise SecAggError(
                f"client {self.index}: the server names {sorted(alive & dropped)} both alive "
                "and dropped; revealing both shares would expose their input"
            )
        if len(alive) + 1 < self.t:
            raise SecAggError(
                f"client {self.index}: {len(alive)} live neighbours, with this client fewer "
                f"than t={self.t}: too many dropped, refusing to unmask"
            )
        if alive | dropped != set(self._held):
            raise SecAggError(
                f"client {self.index}: the unmask request must classify exactly the "
                f"neighbours that shared keys {sorted(self._held)}"
            )
        assert self._own is not None
        out = [(self.index, msg.SEED, self._own.seed_share)]  # this client is alive
        for v in sorted(self._held):
            p = self._held[v]
            if v in alive:
                out.append((v, msg.SEED, p.seed_share))
            else:
                out.append((v, msg.KEY, p.key_share))
        out.sort()
        self._held.clear()  # never answer twice
        return msg.UnmaskResponse(self.session, self.index, tuple(out)).to_bytes()


def _recover(
    owner: int,
    what: str,
    shares: list[tuple[int, tuple[int, ...]]],
    t: int,
    check: Callable[[bytes], bool],
) -> tuple[bytes, list[int]]:
    """The secret of ``owner`` from ``(x, share)`` pairs, checked by ``check``, and the
    x-coordinates of the shares found inconsistent with it.

    Tries the first ``t`` shares, then every cyclic window of ``t``, then random subsets;
    a subset whose secret passes ``check`` is right (the check binds the secret). When the
    first subset failed, every share outside the right one is checked against its polynomial.
    """
    if len(shares) < t:
        raise SecAggError(
            f"only {len(shares)} shares of client {owner}'s {what}, fewer than t={t}: "
            "too many of its neighbours dropped"
        )
    m = len(shares)
    windows = (tuple((s + i) % m for i in range(t)) for s in range(m))
    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    randoms = (tuple(sorted(rng.choice(m, t, replace=False))) for _ in range(_RANDOM_TRIES))
    seen: set[tuple[int, ...]] = set()
    for subset in itertools.chain(windows, randoms) if m > t else [tuple(range(t))]:
        if subset in seen:
            continue
        seen.add(subset)
        pick = [shares[i] for i in subset]
        elems = shamir.reconstruct([x for x, _ in pick], [s for _, s in pick])
        try:
            secret = shamir.elements_to_bytes(elems)
        except ValueError:
            continue
        if check(secret):
            bad = []
            if subset != tuple(range(t)):
                xs, ys = [x for x, _ in pick], [y for _, y in pick]
                for i in set(range(m)) - set(subset):
                    x, share = shares[i]
                    if shamir.interpolate(xs, ys, x) != tuple(share):
                        bad.append(x)
            return secret, sorted(bad)
    raise SecAggError(
        f"the shares of client {owner}'s {what} do not reconstruct the committed value: "
        "shares are corrupted; aborting rather than returning a wrong sum"
    )


class Server:
    """The server of one session: routes messages, then removes the masks.

    Parameters
    ----------
    session
        The 32-byte session id.
    params
        The graph parameters.
    neighbours
        Every client's neighbours (from :func:`.graph.neighbours`).
    """

    def __init__(
        self, session: bytes, params: GraphParameters, neighbours: Sequence[Sequence[int]]
    ) -> None:
        if not isinstance(session, bytes) or len(session) != msg.SESSION_BYTES:
            raise ValueError(f"session must be {msg.SESSION_BYTES} bytes")
        if len(neighbours) != params.n:
            raise ValueError(f"neighbours must hold one list per client ({params.n})")
        self.session = session
        self.params = params
        self.neighbours = [frozenset(nb) for nb in neighbours]
        self.n = params.n
        self._stage = 0
        self._keys: dict[int, tuple[bytes, bytes]] = {}
        self._shared: dict[int, msg.ShareKeys] = {}
        self._masked: set[int] = set()
        self._total: NDArray[np.uint32] | None = None
        self._requests: dict[int, msg.UnmaskRequest] = {}
        self._responses: dict[int, msg.UnmaskResponse] = {}
        self.corrupted_shares: list[tuple[int, int]] = []
        """(holder, owner) of every revealed share found inconsistent (left out)."""

    def _expect(self, stage: int, name: str) -> None:
        if self._stage != stage:
            raise SecAggError(f"server: {name} out of order")

    def _sender(
        self, session: bytes, sender: int, seen: Collection[int], pool: Collection[int] | None
    ) -> None:
        if session != self.session:
            raise ValueError("message from another session")
        if not 0 <= sender < self.n:
            raise ValueError(f"sender {sender} is not a client of this session")
        if sender in seen:
            raise ValueError(f"client {sender} sent this message twice")
        if pool is not None and sender not in pool:
            raise ValueError(f"client {sender} is not in this round")

    def receive_advertise(self, data: bytes) -> None:
        """Round 1: a client's ADVERTISE."""
        self._expect(0, "receive_advertise")
        m = msg.Advertise.from_bytes(data)
        self._sender(m.session, m.sender, self._keys, None)
        self._keys[m.sender] = (m.enc_key, m.mask_key)

    def rosters(self) -> dict[int, bytes]:
        """End of round 1: each advertised client's ROSTER (its own and its advertised
        neighbours' keys: O(k) per client, not O(n))."""
        self._expect(0, "rosters")
        self._stage = 1
        out = {}
        for u in sorted(self._keys):
            ids = sorted((self.neighbours[u] & self._keys.keys()) | {u})
            entries = tuple((i, *self._keys[i]) for i in ids)
            out[u] = msg.Roster(self.session, entries).to_bytes()
        return out

    def receive_share_keys(self, data: bytes) -> None:
        """Round 2: a client's SHARE_KEYS."""
        self._expect(1, "receive_share_keys")
        m = msg.ShareKeys.from_bytes(data)
        self._sender(m.session, m.sender, self._shared, self._keys)
        expected = sorted(self.neighbours[m.sender] & self._keys.keys())
        if [c.peer for c in m.ciphertexts] != expected:
            raise ValueError(f"client {m.sender} must send one share to each advertised neighbour")
        self._shared[m.sender] = m

    def route_shares(self) -> dict[int, bytes]:
        """End of round 2: the SHARES message of each client that shared keys."""
        self._expect(1, "route_shares")
        self._stage = 2
        inbox: dict[int, list[msg.Ciphertext]] = {u: [] for u in self._shared}
        for u in sorted(self._shared):
            for c in self._shared[u].ciphertexts:
                if c.peer in inbox:
                    inbox[c.peer].append(msg.Ciphertext(u, c.nonce, c.data))
        return {v: msg.Shares(self.session, v, tuple(cts)).to_bytes() for v, cts in inbox.items()}

    def receive_masked_input(self, data: bytes) -> None:
        """Round 3: a client's MASKED_INPUT."""
        self._expect(2, "receive_masked_input")
        m = msg.MaskedInput.from_bytes(data)
        self._sender(m.session, m.sender, self._masked, self._shared)
        words = np.frombuffer(m.words, dtype="<u4")
        if self._total is None:
            self._total = words.astype(np.uint32)
        elif words.size != self._total.size:
            raise ValueError(
                f"client {m.sender} sent {words.size} values, others {self._total.size}"
            )
        else:
            self._total += words
        self._masked.add(m.sender)

    def unmask_requests(self) -> dict[int, bytes]:
        """End of round 3: the UNMASK_REQUEST of each client that sent a masked input."""
        self._expect(2, "unmask_requests")
        self._stage = 3
        alive = self._masked
        for u in alive:
            nb = sorted(self.neighbours[u] & self._shared.keys())
            self._requests[u] = msg.UnmaskRequest(
                self.session,
                u,
                tuple(v for v in nb if v in alive),
                tuple(v for v in nb if v not in alive),
            )
        return {u: r.to_bytes() for u, r in self._requests.items()}

    def receive_unmask_response(self, data: bytes) -> None:
        """Round 4: a client's UNMASK_RESPONSE."""
        self._expect(3, "receive_unmask_response")
        m = msg.UnmaskResponse.from_bytes(data)
        self._sender(m.session, m.sender, self._responses, self._requests)
        q = self._requests[m.sender]
        want = sorted(
            [(v, msg.SEED) for v in (*q.alive, m.sender)] + [(v, msg.KEY) for v in q.dropped]
        )
        if [(o, k) for o, k, _ in m.shares] != want:
            raise ValueError(f"client {m.sender} did not reveal the shares requested")
        self._responses[m.sender] = m

    def finalize(self) -> tuple[NDArray[np.uint32], tuple[int, ...]]:
        """End of round 4: (the sum mod 2^32 of the live inputs, their ids).

        Raises SecAggError when a secret cannot be reconstructed and checked.
        """
        self._expect(3, "finalize")
        self._stage = 4
        t = self.params.t
        survivors = tuple(sorted(self._masked))
        if not survivors:
            raise SecAggError("no client sent a masked input")
        seeds: dict[int, list[tuple[int, tuple[int, ...]]]] = {u: [] for u in survivors}
        keys: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
        for w in sorted(self._responses):
            for owner, kind, share in self._responses[w].shares:
                target = seeds[owner] if kind == msg.SEED else keys.setdefault(owner, [])
                target.append((w + 1, share))
        mask_keys: list[bytes] = []
        negate: list[bool] = []
        for u in survivors:
            commitment = self._shared[u].commitment

            def seed_ok(s: bytes, u: int = u, c: bytes = commitment) -> bool:
                return _commit(s, self.session, u) == c

            seed, bad = _recover(u, "self-mask seed", seeds[u], t, seed_ok)
            self.corrupted_shares.extend((x - 1, u) for x in bad)
            mask_keys.append(self_key(seed, self.session, u))
            negate.append(True)
        dropped = sorted(set(self._shared) - set(survivors))
        for v in dropped:
            live = sorted(self.neighbours[v] & set(survivors))
            if not live:
                continue
            public = self._keys[v][1]

            def key_ok(s: bytes, p: bytes = public) -> bool:
                return _public(X25519PrivateKey.from_private_bytes(s)) == p

            raw, bad = _recover(v, "masking key", keys.get(v, []), t, key_ok)
            self.corrupted_shares.extend((x - 1, v) for x in bad)
            sk = X25519PrivateKey.from_private_bytes(raw)
            for w in live:
                shared = _exchange(sk, self._keys[w][1])
                mask_keys.append(pair_key(shared, self.session, w, v))
                negate.append(w < v)  # w added it when w < v: remove it
        assert self._total is not None
        total, self._total = self._total, None
        apply_masks(mask_keys, negate, total)
        return total, survivors
