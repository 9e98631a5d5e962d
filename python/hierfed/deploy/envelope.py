"""A member's update sealed to its basket aggregator (HPKE, RFC 9180).

The member encrypts its update to the basket aggregator's X25519 public key with HPKE base
mode (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, from ``cryptography``); the
:class:`SealContext` (session, round, member, basket) is HPKE's ``info``, so a ciphertext
opens only under that basket's key *and* in that session, round and member's name: whoever
relays it (the global server) sees its length and nothing else, and can neither read it,
alter it, replay it into another round nor pass it off as another member's.

What the seal does not do: authenticate the member (anyone holding the basket's public key
can seal an update under any member's name). Members are authenticated by the channel that
delivers them to the deployment (Flower's node authentication, or the basket aggregator's own
enrolment list); the basket aggregator's robust rule bounds what a forged update can do.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from numpy.typing import NDArray

__all__ = ["SealContext", "open_update", "seal_update"]

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_LABEL = b"hierfed member update v1"
_WIRE: dict[bytes, np.dtype[Any]] = {b"f": np.dtype("<f4"), b"d": np.dtype("<f8")}
_NATIVE: dict[bytes, np.dtype[Any]] = {b"f": np.dtype(np.float32), b"d": np.dtype(np.float64)}
_HEADER = struct.Struct("<cQ")  # dtype code, length


def _text(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")
    return value.encode()


@dataclass(frozen=True)
class SealContext:
    """What a sealed update is bound to: the session, the round, the member and the basket."""

    session: bytes
    round_id: int
    member_id: str
    basket_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.session, bytes) or not 16 <= len(self.session) <= 64:
            raise ValueError("session must be 16 to 64 bytes")
        r = self.round_id
        if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < 1 << 63:
            raise ValueError(f"round_id must be an int in [0, 2^63), got {r!r}")
        _text(self.member_id, "member_id")
        _text(self.basket_id, "basket_id")

    def info(self) -> bytes:
        """HPKE's ``info``: every field, length-prefixed (no two contexts share it)."""
        parts = [_LABEL, self.session, self.member_id.encode(), self.basket_id.encode()]
        body = b"".join(struct.pack("<I", len(p)) + p for p in parts)
        return body + struct.pack("<Q", self.round_id)


def _public_key(recipient: Any) -> X25519PublicKey:
    if isinstance(recipient, X25519PublicKey):
        return recipient
    if not isinstance(recipient, bytes) or len(recipient) != 32:
        raise TypeError("recipient must be an X25519PublicKey or its 32 raw bytes")
    return X25519PublicKey.from_public_bytes(recipient)


def seal_update(update: Any, recipient: Any, context: SealContext) -> bytes:
    """``update`` (a 1-D float32 or float64 array) encrypted to ``recipient``, bound to
    ``context``."""
    if not isinstance(context, SealContext):
        raise TypeError(f"context must be a SealContext, got {type(context).__name__}")
    key = _public_key(recipient)
    x = np.asarray(update)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"update must be a non-empty 1-D array, got shape {x.shape}")
    code = next((c for c, t in _NATIVE.items() if t == x.dtype), None)
    if code is None:
        raise TypeError(f"update must be float32 or float64 (native byte order), got {x.dtype}")
    payload = _HEADER.pack(code, x.size) + np.ascontiguousarray(x, _WIRE[code]).tobytes()
    return _SUITE.encrypt(payload, key, info=context.info())


def open_update(blob: Any, key: Any, context: SealContext) -> NDArray[Any]:
    """The update sealed in ``blob`` for ``key`` (the basket aggregator's X25519 private key)
    and ``context``.

    Raises
    ------
    ValueError
        ``blob`` does not open under this key and context (tampered with, addressed to
        another basket, from another session or round, or under another member's name), or
        its contents are not an update.
    """
    if not isinstance(blob, bytes):
        raise TypeError(f"blob must be bytes, got {type(blob).__name__}")
    if not isinstance(key, X25519PrivateKey):
        raise TypeError("key must be an X25519PrivateKey")
    if not isinstance(context, SealContext):
        raise TypeError(f"context must be a SealContext, got {type(context).__name__}")
    try:
        payload = _SUITE.decrypt(blob, key, info=context.info())
    except (InvalidTag, ValueError):
        raise ValueError(
            f"the sealed update of {context.member_id!r} does not open under basket "
            f"{context.basket_id!r}'s key in this session and round (tampered with, "
            f"misaddressed or replayed)"
        ) from None
    if len(payload) < _HEADER.size:
        raise ValueError("sealed update: payload shorter than its header")
    code, size = _HEADER.unpack_from(payload)
    wire = _WIRE.get(code)
    if wire is None or size == 0 or len(payload) != _HEADER.size + size * wire.itemsize:
        raise ValueError("sealed update: malformed payload (dtype code or length)")
    update: NDArray[Any] = np.frombuffer(payload, wire, offset=_HEADER.size).astype(_NATIVE[code])
    return update
