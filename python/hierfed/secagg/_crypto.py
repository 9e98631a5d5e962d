"""The byte strings the protocol hashes, encrypts under and tags (labels bind each to its use)."""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .masks import derive_key

__all__ = [
    "ad",
    "channel_keys",
    "commit",
    "exchange",
    "key_secret",
    "public",
    "secret_key",
    "survivors_digest",
    "tag",
]

_COMMIT_LABEL = b"hierfed.secagg.seed-commitment.v1"
_AD_LABEL = b"hierfed.secagg.share.v2"
_CHANNEL_LABEL = b"hierfed.secagg.channel-keys.v1"
_TAG_LABEL = b"hierfed.secagg.consistency.v1"
_SURVIVORS_LABEL = b"hierfed.secagg.survivors.v1"


def commit(seed: bytes, plan_digest: bytes, owner: int) -> bytes:
    """The commitment to a self-mask seed (SHA-256, bound to the plan and owner)."""
    return hashlib.sha256(_COMMIT_LABEL + plan_digest + struct.pack("<I", owner) + seed).digest()


def ad(plan_digest: bytes, sender: int, receiver: int) -> bytes:
    """The AES-GCM associated data of a share sent from ``sender`` to ``receiver``."""
    return _AD_LABEL + plan_digest + struct.pack("<II", sender, receiver)


def key_secret(raw: bytes) -> bytes:
    """The 251 bits of an X25519 private key that X25519 uses (RFC 7748 clamps bits 0-2, 254
    and 255), as a 252-bit secret to share."""
    return ((int.from_bytes(raw, "little") >> 3) & ((1 << 251) - 1)).to_bytes(32, "little")


def secret_key(secret: bytes) -> X25519PrivateKey:
    """The X25519 private key of a shared secret from :func:`key_secret` (ValueError if the
    value cannot be one: a corrupted reconstruction)."""
    v = int.from_bytes(secret, "little")
    if v >> 251:
        raise ValueError("not an X25519 key secret")
    return X25519PrivateKey.from_private_bytes(((v << 3) | (1 << 254)).to_bytes(32, "little"))


def public(sk: X25519PrivateKey) -> bytes:
    """The raw public key of ``sk``."""
    return sk.public_key().public_bytes_raw()


def exchange(sk: X25519PrivateKey, pk: bytes) -> bytes:
    """The X25519 shared secret of ``sk`` and the raw public key ``pk``."""
    return sk.exchange(X25519PublicKey.from_public_bytes(pk))


def channel_keys(shared: bytes, plan_digest: bytes, a: int, b: int) -> tuple[bytes, bytes]:
    """The AES-GCM key and the consistency MAC key of the pair ``a``, ``b``: one HKDF-SHA256
    of their encryption keys' X25519 secret (salt: the plan's digest), 64 bytes split."""
    pair = struct.pack("<II", min(a, b), max(a, b))
    keys = derive_key(shared, plan_digest, _CHANNEL_LABEL + pair, length=64)
    return keys[:32], keys[32:]


def survivors_digest(plan_digest: bytes, survivors: Iterable[int]) -> bytes:
    """SHA-256 of a survivor set, bound to the plan."""
    ids = sorted(survivors)
    return hashlib.sha256(
        _SURVIVORS_LABEL + plan_digest + struct.pack(f"<I{len(ids)}I", len(ids), *ids)
    ).digest()


def tag(key: bytes, digest: bytes, sender: int, receiver: int) -> bytes:
    """``sender``'s HMAC-SHA256 to ``receiver`` of the survivor set with ``digest``."""
    return hmac.new(
        key, _TAG_LABEL + digest + struct.pack("<II", sender, receiver), "sha256"
    ).digest()
