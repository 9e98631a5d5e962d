"""Wire format of the secure-aggregation messages (struct-based, never pickle).

Every message is a 44-byte header followed by a body, all integers little-endian::

    magic   4  b"HFSA"
    version 1  1
    type    1  see ``MessageType``
    flags   2  0 (reserved)
    session 32 the session id
    length  4  body length in bytes (the message is exactly 44 + length bytes)

Bodies (``u32`` = 4-byte unsigned, ``key`` = 32 bytes, ``fe`` = 16-byte field element < P):

- ``ADVERTISE``: sender u32, encryption public key, masking public key (X25519), the
  sender's Ed25519 signature (64) of both keys bound to the session plan (see
  :func:`advertisement_payload`).
- ``ROSTER``: count u32, then count x (id u32, encryption key, masking key, signature);
  ids increasing.
- ``SHARE_KEYS``: sender u32, seed commitment (32-byte SHA-256), count u32, then count x
  (receiver u32, ciphertext length u32, nonce 12, ciphertext); receivers increasing.
- ``SHARES``: receiver u32 and entries as in ``SHARE_KEYS`` with the *sender* in each entry;
  the server's routing of ciphertexts to their receiver.
- ``MASKED_INPUT``: sender u32, count u32 + ids of the peers it masked with (increasing),
  length u32, length x u32 (the masked vector).
- ``SURVIVORS``: receiver u32, count u32 + ids (increasing): the set the server claims sent
  masked inputs and will be summed (the consistency round's set).
- ``CONSISTENCY_TAGS``: sender u32 and entries (peer u32, 32-byte HMAC-SHA256 of the
  survivor set under the pair's MAC key), peers increasing; ``CONSISTENCY_PROOFS``: the same
  with the receiver, each entry naming its sender (the server's routing).
- ``UNMASK_RESPONSE``: sender u32, count u32, then count x (owner u32, kind u8: 0 seed share,
  1 key share, 2 fe); owners increasing.

Share plaintexts (inside AES-GCM) are 73 bytes: version u8, sender u32, receiver u32, 2 fe of
the masking key's share, 2 fe of the self-mask seed's share.

Parsing is strict: wrong magic, version, type, flags, lengths, counts, orders or trailing
bytes raise ValueError.
"""

from __future__ import annotations

import enum
import itertools
import struct
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from .shamir import ELEMENTS, P

__all__ = [
    "Advertise",
    "Ciphertext",
    "ConsistencyProofs",
    "ConsistencyTags",
    "MaskedInput",
    "MessageType",
    "Roster",
    "ShareKeys",
    "SharePlaintext",
    "Shares",
    "Survivors",
    "UnmaskResponse",
    "advertisement_payload",
    "peek_type",
]

MAGIC = b"HFSA"
VERSION = 2
SESSION_BYTES = 32
KEY_BYTES = 32
SIGNATURE_BYTES = 64
TAG_BYTES = 32
NONCE_BYTES = 12
MAX_ID = (1 << 32) - 1
_HEADER = struct.Struct("<4sBBH32sI")
_FE_BYTES = 16
_OWNER_KIND = struct.Struct("<IB")
_PLAIN_HEAD = struct.Struct("<BII")
_CT_HEAD = struct.Struct("<II12s")
SEED, KEY = 0, 1


class MessageType(enum.IntEnum):
    """The message types of the protocol."""

    ADVERTISE = 1
    ROSTER = 2
    SHARE_KEYS = 3
    SHARES = 4
    MASKED_INPUT = 5
    UNMASK_RESPONSE = 7
    SURVIVORS = 8
    CONSISTENCY_TAGS = 9
    CONSISTENCY_PROOFS = 10


class _Reader:
    """Reads a body front to back; every read checks the bytes are there."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ValueError(f"{self.what} is truncated")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u8(self) -> int:
        return self.take(1)[0]

    def fe(self) -> int:
        v = int.from_bytes(self.take(_FE_BYTES), "little")
        if v >= P:
            raise ValueError(f"{self.what} holds a field element >= P")
        return v

    def ids(self) -> tuple[int, ...]:
        count = self.u32()
        if count > (len(self.data) - self.at) // 4:
            raise ValueError(f"{self.what} is truncated")
        out: tuple[int, ...] = struct.unpack_from(f"<{count}I", self.data, self.at)
        self.at += 4 * count
        _increasing(out, self.what)
        return out

    def done(self) -> None:
        if self.at != len(self.data):
            raise ValueError(f"{self.what} has {len(self.data) - self.at} trailing bytes")


def _increasing(ids: tuple[int, ...], what: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise ValueError(f"{what}: ids must be strictly increasing")


def _u32(v: int, what: str) -> bytes:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ID:
        raise ValueError(f"{what} must be an int in [0, 2^32), got {v!r}")
    return struct.pack("<I", v)


def _fixed(b: bytes, size: int, what: str) -> bytes:
    if not isinstance(b, bytes) or len(b) != size:
        raise ValueError(f"{what} must be {size} bytes")
    return b


def _frame(kind: MessageType, session: bytes, body: bytes) -> bytes:
    _fixed(session, SESSION_BYTES, "session")
    return _HEADER.pack(MAGIC, VERSION, int(kind), 0, session, len(body)) + body


def _raw(data: bytes, what: str) -> bytes:
    """``data`` (bytes, bytearray or memoryview) as bytes, or TypeError naming ``what``.

    Never ``bytes(data)`` of anything else: ``bytes(2**40)`` allocates a terabyte of zeros
    and ``bytes([1, 2])`` forges a message from a list.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a {what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def _unframe(data: bytes, kind: MessageType) -> tuple[bytes, _Reader]:
    what = f"{kind.name} message"
    raw = _raw(data, what)
    if len(raw) < _HEADER.size:
        raise ValueError(f"{what} is truncated (no complete header)")
    magic, version, mtype, flags, session, length = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ValueError(f"{what}: bad magic {magic!r}")
    if version != VERSION:
        raise ValueError(f"{what}: unsupported version {version}")
    if mtype != kind:
        raise ValueError(f"expected a {what}, got type {mtype}")
    if flags != 0:
        raise ValueError(f"{what}: reserved flags must be 0")
    if len(raw) != _HEADER.size + length:
        raise ValueError(f"{what}: header says {length} body bytes, got {len(raw) - _HEADER.size}")
    return session, _Reader(raw[_HEADER.size :], what)


def peek_type(data: bytes) -> MessageType:
    """The type of a message (header checks only)."""
    raw = _raw(data, "message")
    if len(raw) < _HEADER.size or raw[:4] != MAGIC:
        raise ValueError("not a secure-aggregation message")
    try:
        return MessageType(raw[5])
    except ValueError:
        raise ValueError(f"unknown message type {raw[5]}") from None


M = TypeVar("M")


_ADVERTISE_LABEL = b"hierfed.secagg.advertise.v2"


def advertisement_payload(
    plan_digest: bytes, sender: int, enc_key: bytes, mask_key: bytes
) -> bytes:
    """The bytes a client signs to advertise its keys: a label, the session plan's digest,
    its index and both public keys (so a key cannot be replayed into another session, moved
    to another client or swapped by the server)."""
    return (
        _ADVERTISE_LABEL
        + _fixed(plan_digest, 32, "plan_digest")
        + _u32(sender, "sender")
        + _fixed(enc_key, KEY_BYTES, "enc_key")
        + _fixed(mask_key, KEY_BYTES, "mask_key")
    )


@dataclass(frozen=True)
class Advertise:
    """A client's two X25519 public keys and its identity signature of them."""

    session: bytes
    sender: int
    enc_key: bytes
    mask_key: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """The wire form."""
        body = (
            _u32(self.sender, "sender")
            + _fixed(self.enc_key, KEY_BYTES, "enc_key")
            + _fixed(self.mask_key, KEY_BYTES, "mask_key")
            + _fixed(self.signature, SIGNATURE_BYTES, "signature")
        )
        return _frame(MessageType.ADVERTISE, self.session, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Advertise:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.ADVERTISE)
        out = cls(session, r.u32(), r.take(KEY_BYTES), r.take(KEY_BYTES), r.take(SIGNATURE_BYTES))
        r.done()
        return out


RosterEntry = tuple[int, bytes, bytes, bytes]  # id, enc key, mask key, signature
_ROSTER_ENTRY = 4 + 2 * KEY_BYTES + SIGNATURE_BYTES


@dataclass(frozen=True)
class Roster:
    """The signed advertisements of a client's neighbours (and its own), by id."""

    session: bytes
    entries: tuple[RosterEntry, ...]

    def to_bytes(self) -> bytes:
        """The wire form."""
        _increasing(tuple(e[0] for e in self.entries), "roster")
        body = _u32(len(self.entries), "count") + b"".join(
            _u32(i, "id")
            + _fixed(c, KEY_BYTES, "enc_key")
            + _fixed(s, KEY_BYTES, "mask_key")
            + _fixed(g, SIGNATURE_BYTES, "signature")
            for i, c, s, g in self.entries
        )
        return _frame(MessageType.ROSTER, self.session, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Roster:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.ROSTER)
        count = r.u32()
        if count * _ROSTER_ENTRY != len(r.data) - r.at:
            raise ValueError("ROSTER message: count does not match the body length")
        entries = tuple(
            (r.u32(), r.take(KEY_BYTES), r.take(KEY_BYTES), r.take(SIGNATURE_BYTES))
            for _ in range(count)
        )
        _increasing(tuple(e[0] for e in entries), "ROSTER message")
        r.done()
        return cls(session, entries)


@dataclass(frozen=True)
class Ciphertext:
    """One encrypted share: the peer (receiver or sender), the AES-GCM nonce and ciphertext."""

    peer: int
    nonce: bytes
    data: bytes


def _pack_cts(cts: tuple[Ciphertext, ...]) -> bytes:
    _increasing(tuple(c.peer for c in cts), "ciphertexts")
    parts = [_u32(len(cts), "count")]
    for c in cts:
        if isinstance(c.peer, bool) or not isinstance(c.peer, int) or not 0 <= c.peer <= MAX_ID:
            raise ValueError(f"peer must be an int in [0, 2^32), got {c.peer!r}")
        parts.append(_CT_HEAD.pack(c.peer, len(c.data), _fixed(c.nonce, NONCE_BYTES, "nonce")))
        parts.append(c.data)
    return b"".join(parts)


def _read_cts(r: _Reader) -> tuple[Ciphertext, ...]:
    count = r.u32()
    if count > (len(r.data) - r.at) // _CT_HEAD.size:
        raise ValueError(f"{r.what} is truncated")
    out = []
    data, at, end = r.data, r.at, len(r.data)
    for _ in range(count):
        if at + _CT_HEAD.size > end:
            raise ValueError(f"{r.what} is truncated")
        peer, size, nonce = _CT_HEAD.unpack_from(data, at)
        at += _CT_HEAD.size
        if at + size > end:
            raise ValueError(f"{r.what} is truncated")
        out.append(Ciphertext(peer, nonce, data[at : at + size]))
        at += size
    r.at = at
    _increasing(tuple(c.peer for c in out), r.what)
    return tuple(out)


@dataclass(frozen=True)
class ShareKeys:
    """A client's encrypted shares (one per neighbour) and its self-mask seed commitment."""

    session: bytes
    sender: int
    commitment: bytes
    ciphertexts: tuple[Ciphertext, ...]

    def to_bytes(self) -> bytes:
        """The wire form."""
        body = (
            _u32(self.sender, "sender")
            + _fixed(self.commitment, 32, "commitment")
            + _pack_cts(self.ciphertexts)
        )
        return _frame(MessageType.SHARE_KEYS, self.session, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareKeys:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.SHARE_KEYS)
        out = cls(session, r.u32(), r.take(32), _read_cts(r))
        r.done()
        return out


@dataclass(frozen=True)
class Shares:
    """The ciphertexts addressed to ``receiver``, each entry naming its sender."""

    session: bytes
    receiver: int
    ciphertexts: tuple[Ciphertext, ...]

    def to_bytes(self) -> bytes:
        """The wire form."""
        body = _u32(self.receiver, "receiver") + _pack_cts(self.ciphertexts)
        return _frame(MessageType.SHARES, self.session, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Shares:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.SHARES)
        out = cls(session, r.u32(), _read_cts(r))
        r.done()
        return out


@dataclass(frozen=True)
class SharePlaintext:
    """The decrypted content of one ciphertext: shares of a key and a seed."""

    sender: int
    receiver: int
    key_share: tuple[int, ...]
    seed_share: tuple[int, ...]

    SIZE = 1 + 8 + 2 * ELEMENTS * _FE_BYTES

    def to_bytes(self) -> bytes:
        """The plaintext form (73 bytes)."""
        if len(self.key_share) != ELEMENTS or len(self.seed_share) != ELEMENTS:
            raise ValueError(f"shares hold {ELEMENTS} field elements")
        return (
            bytes([VERSION])
            + _u32(self.sender, "sender")
            + _u32(self.receiver, "receiver")
            + b"".join(e.to_bytes(_FE_BYTES, "little") for e in self.key_share + self.seed_share)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SharePlaintext:
        """Parse strictly."""
        raw = _raw(data, "share plaintext")
        if len(raw) != cls.SIZE:
            raise ValueError(f"share plaintext must be {cls.SIZE} bytes, got {len(raw)}")
        version, sender, receiver = _PLAIN_HEAD.unpack_from(raw)
        if version != VERSION:
            raise ValueError("share plaintext: unsupported version")
        elems = tuple(
            int.from_bytes(raw[at : at + _FE_BYTES], "little")
            for at in range(_PLAIN_HEAD.size, cls.SIZE, _FE_BYTES)
        )
        if max(elems) >= P:
            raise ValueError("share plaintext holds a field element >= P")
        key, seed = elems[:ELEMENTS], elems[ELEMENTS:]
        return cls(sender, receiver, key, seed)


def _pack_ids(ids: tuple[int, ...], what: str) -> bytes:
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ValueError(f"{what} must be ints in [0, 2^32)")
    _increasing(ids, what)
    if ids and not 0 <= ids[0] <= ids[-1] <= MAX_ID:
        raise ValueError(f"{what} must be ints in [0, 2^32)")
    return struct.pack(f"<I{len(ids)}I", len(ids), *ids)


@dataclass(frozen=True)
class MaskedInput:
    """A client's masked vector (uint32 words, little-endian on the wire) and the peers whose
    pair masks it holds."""

    session: bytes
    sender: int
    peers: tuple[int, ...]
    words: bytes  # 4 bytes per entry, little-endian

    def to_bytes(self) -> bytes:
        """The wire form."""
        if len(self.words) % 4:
            raise ValueError("words must hold whole uint32 values")
        body = (
            _u32(self.sender, "sender")
            + _pack_ids(self.peers, "peers")
            + _u32(len(self.words) // 4, "length")
            + self.words
        )
        return _frame(MessageType.MASKED_INPUT, self.session, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> MaskedInput:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.MASKED_INPUT)
        sender, peers, count = r.u32(), r.ids(), r.u32()
        if 4 * count != len(r.data) - r.at:
            raise ValueError("MASKED_INPUT message: length does not match the body")
        out = cls(session, sender, peers, r.take(4 * count))
        r.done()
        return out


@dataclass(frozen=True)
class Survivors:
    """The server's claim, sent to ``receiver``, of which clients' inputs are summed."""

    session: bytes
    receiver: int
    ids: tuple[int, ...]

    def to_bytes(self) -> bytes:
        """The wire form."""
        body = _u32(self.receiver, "receiver") + _pack_ids(self.ids, "ids")
        return _frame(MessageType.SURVIVORS, self.session, body)

    @staticmethod
    def for_each(session: bytes, ids: tuple[int, ...]) -> dict[int, bytes]:
        """The message of the set ``ids`` for each receiver in it (the ids packed once)."""
        block = _pack_ids(ids, "ids")
        return {u: _frame(MessageType.SURVIVORS, session, _u32(u, "receiver") + block) for u in ids}

    @classmethod
    def from_bytes(cls, data: bytes) -> Survivors:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.SURVIVORS)
        out = cls(session, r.u32(), r.ids())
        r.done()
        return out


_TAG_ENTRY = struct.Struct(f"<I{TAG_BYTES}s")


T = TypeVar("T", bound="_Tags")


@dataclass(frozen=True)
class _Tags:
    """Consistency tags: (peer, 32-byte HMAC) entries, peers increasing."""

    KIND: ClassVar[MessageType]
    session: bytes
    owner: int
    entries: tuple[tuple[int, bytes], ...]

    def to_bytes(self) -> bytes:
        """The wire form."""
        _increasing(tuple(p for p, _ in self.entries), "tag peers")
        body = _u32(self.owner, "owner") + _u32(len(self.entries), "count")
        body += b"".join(_u32(p, "peer") + _fixed(tag, TAG_BYTES, "tag") for p, tag in self.entries)
        return _frame(self.KIND, self.session, body)

    @classmethod
    def from_bytes(cls: type[T], data: bytes) -> T:
        """Parse strictly."""
        session, r = _unframe(data, cls.KIND)
        owner, count = r.u32(), r.u32()
        if count * _TAG_ENTRY.size != len(r.data) - r.at:
            raise ValueError(f"{r.what}: count does not match the body length")
        entries = tuple(
            _TAG_ENTRY.unpack_from(r.data, r.at + i * _TAG_ENTRY.size) for i in range(count)
        )
        r.at += count * _TAG_ENTRY.size
        _increasing(tuple(p for p, _ in entries), r.what)
        r.done()
        return cls(session, owner, tuple((int(p), bytes(t)) for p, t in entries))


@dataclass(frozen=True)
class ConsistencyTags(_Tags):
    """A survivor's tags of its survivor set, one per live neighbour (``owner``: the sender)."""

    KIND: ClassVar[MessageType] = MessageType.CONSISTENCY_TAGS


@dataclass(frozen=True)
class ConsistencyProofs(_Tags):
    """The tags addressed to ``owner``, each entry naming its sender (the server's routing)."""

    KIND: ClassVar[MessageType] = MessageType.CONSISTENCY_PROOFS


@dataclass(frozen=True)
class UnmaskResponse:
    """Shares revealed by ``sender``: (owner, kind, share), kind 0 seed, 1 key."""

    session: bytes
    sender: int
    shares: tuple[tuple[int, int, tuple[int, ...]], ...]

    def to_bytes(self) -> bytes:
        """The wire form."""
        _increasing(tuple(s[0] for s in self.shares), "owners")
        body = _u32(self.sender, "sender") + _u32(len(self.shares), "count")
        for owner, kind, share in self.shares:
            if kind not in (SEED, KEY) or len(share) != ELEMENTS:
                raise ValueError("a revealed share has kind 0 or 1 and 2 field elements")
            body += _u32(owner, "owner") + bytes([kind])
            body += b"".join(e.to_bytes(_FE_BYTES, "little") for e in share)
        return _frame(MessageType.UNMASK_RESPONSE, self.session, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> UnmaskResponse:
        """Parse strictly."""
        session, r = _unframe(data, MessageType.UNMASK_RESPONSE)
        sender, count = r.u32(), r.u32()
        if count * (5 + ELEMENTS * _FE_BYTES) != len(r.data) - r.at:
            raise ValueError("UNMASK_RESPONSE message: count does not match the body length")
        shares = []
        entry = 5 + ELEMENTS * _FE_BYTES
        body = r.data
        for at in range(r.at, r.at + count * entry, entry):
            owner, kind = _OWNER_KIND.unpack_from(body, at)
            if kind not in (SEED, KEY):
                raise ValueError(f"UNMASK_RESPONSE message: unknown share kind {kind}")
            elems = tuple(
                int.from_bytes(body[e : e + _FE_BYTES], "little")
                for e in range(at + 5, at + entry, _FE_BYTES)
            )
            if max(elems) >= P:
                raise ValueError("UNMASK_RESPONSE message holds a field element >= P")
            shares.append((owner, kind, elems))
        r.at += count * entry
        _increasing(tuple(s[0] for s in shares), "UNMASK_RESPONSE message")
        r.done()
        return cls(session, sender, tuple(shares))
