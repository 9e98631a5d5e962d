"""Long-term client identities and the registry that pins them.

Each client holds an Ed25519 identity key (:class:`Identity`). The federation's *operator*
(who enrols clients: a consortium's administrator, not the aggregation server) holds its own
Ed25519 key and publishes an :class:`IdentityRegistry`: client id -> identity public key,
signed by the operator key. Every client receives the operator's public key out of band (in its
installation, next to its own identity key) and accepts a registry only with a valid operator
signature; alternatively a deployment pins the whole registry (``IdentityRegistry(...)``
built from keys distributed out of band). The aggregation server never provides keys: it only
relays the signed registry and the signed session plans (:mod:`.session`).

Wire form of a signed registry (little-endian)::

    magic b"HFID" | version u8 = 1 | operator public key 32 | count u32 |
    count x (id u32, public key 32), ids increasing | Ed25519 signature 64 (over all before it)
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Mapping
from typing import NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

__all__ = ["Identity", "IdentityRegistry"]

PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64
_MAGIC = b"HFID"
_VERSION = 1
_ENTRY = struct.Struct("<I32s")


class Identity:
    """A long-term Ed25519 signing key (a client's or the operator's).

    Parameters
    ----------
    private_key
        32 raw private-key bytes; ``None`` draws a fresh key from the OS.
    """

    def __init__(self, private_key: bytes | None = None) -> None:
        if private_key is None:
            self._key = Ed25519PrivateKey.generate()
        else:
            if not isinstance(private_key, bytes) or len(private_key) != 32:
                raise ValueError("private_key must be 32 bytes")
            self._key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.public_bytes = self._key.public_key().public_bytes_raw()
        """The 32-byte public key, as the registry holds it."""

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def private_bytes(self) -> bytes:
        """The 32 raw private-key bytes (to store the key; keep them secret)."""
        return self._key.private_bytes_raw()

    def __repr__(self) -> str:
        return f"Identity(public={self.public_bytes.hex()[:16]}...)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("an Identity is not pickled; store private_bytes() deliberately")


def _public_key(raw: bytes, what: str) -> Ed25519PublicKey:
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_BYTES:
        raise ValueError(f"{what} must be {PUBLIC_BYTES} bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise ValueError(f"{what} is not an Ed25519 public key") from None


def verify_signature(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public``'s valid signature of ``message``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class IdentityRegistry:
    """Client id -> identity public key, and the operator's public key.

    Parameters
    ----------
    operator
        The operator's 32-byte Ed25519 public key: it signs session plans (and the registry).
    clients
        Client id (an int in ``[0, 2^32)``) -> its 32-byte Ed25519 public key. Built directly,
        the registry is *pinned*: the caller vouches for the keys (they came out of band).
    """

    def __init__(self, operator: bytes, clients: Mapping[int, bytes]) -> None:
        self._operator = _public_key(operator, "operator")
        self.operator_bytes = operator
        if not isinstance(clients, Mapping) or not clients:
            raise ValueError("clients must be a non-empty mapping of id -> public key")
        keys: dict[int, Ed25519PublicKey] = {}
        raw: dict[int, bytes] = {}
        for cid, pk in clients.items():
            if isinstance(cid, bool) or not isinstance(cid, int) or not 0 <= cid < 1 << 32:
                raise ValueError(f"client ids must be ints in [0, 2^32), got {cid!r}")
            keys[cid] = _public_key(pk, f"clients[{cid}]")
            raw[cid] = pk
        if len(set(raw.values())) != len(raw) or operator in raw.values():
            raise ValueError("every client (and the operator) must have its own key")
        self._keys = keys
        self._raw = dict(sorted(raw.items()))

    @property
    def ids(self) -> tuple[int, ...]:
        """The enrolled client ids, increasing."""
        return tuple(self._raw)

    def public_bytes(self, cid: int) -> bytes:
        """Client ``cid``'s public key (KeyError if it is not enrolled)."""
        return self._raw[cid]

    def __contains__(self, cid: object) -> bool:
        return cid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def verify(self, cid: int, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is enrolled client ``cid``'s signature of ``message``."""
        key = self._keys.get(cid)
        return key is not None and verify_signature(key, signature, message)

    def verify_operator(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is the operator's signature of ``message``."""
        return verify_signature(self._operator, signature, message)

    def _body(self) -> bytes:
        head = _MAGIC + bytes([_VERSION]) + self.operator_bytes
        entries = b"".join(_ENTRY.pack(cid, pk) for cid, pk in self._raw.items())
        return head + struct.pack("<I", len(self._raw)) + entries

    def signed(self, operator: Identity) -> bytes:
        """The registry signed by ``operator`` (whose key must be this registry's operator)."""
        if operator.public_bytes != self.operator_bytes:
            raise ValueError("operator is not the key this registry names as its operator")
        body = self._body()
        return body + operator.sign(body)

    @classmethod
    def from_signed(cls, data: bytes, operator: bytes) -> IdentityRegistry:
        """Parse a signed registry, accepting it only when ``operator`` (the public key the
        client was given out of band) signed it. ValueError otherwise."""
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        head = len(_MAGIC) + 1 + PUBLIC_BYTES + 4
        if len(data) < head + SIGNATURE_BYTES or data[:4] != _MAGIC or data[4] != _VERSION:
            raise ValueError("not a signed identity registry (magic, version or length)")
        if data[5 : 5 + PUBLIC_BYTES] != operator:
            raise ValueError("the registry names another operator than the one pinned")
        body, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        if not verify_signature(_public_key(operator, "operator"), signature, body):
            raise ValueError("the registry's operator signature is invalid")
        (count,) = struct.unpack_from("<I", data, head - 4)
        if head + count * _ENTRY.size != len(body):
            raise ValueError("the registry's count does not match its length")
        entries = [_ENTRY.unpack_from(body, head + i * _ENTRY.size) for i in range(count)]
        ids = [cid for cid, _ in entries]
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise ValueError("the registry's ids must be strictly increasing")
        return cls(operator, dict(entries))
