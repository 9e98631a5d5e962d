"""Mask keys and their expansion into a vector by the active backend's fused kernel.

Every mask is the ChaCha20 keystream (RFC 8439, nonce 0, counter 0) of a 256-bit key derived
by HKDF-SHA256 from full-entropy material (an X25519 shared secret or a 32-byte self-mask
seed), salted with the session id and bound to the ordered pair of clients (or the owner).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from numpy.typing import NDArray

from .. import _backend

__all__ = ["apply_masks", "derive_key", "pair_key", "self_key"]

_PAIR_LABEL = b"hierfed.secagg.pair-mask.v1"
_SELF_LABEL = b"hierfed.secagg.self-mask.v1"


def derive_key(material: bytes, session: bytes, info: bytes, length: int = 32) -> bytes:
    """A ``length``-byte key: HKDF-SHA256 of ``material``, salt ``session``, context ``info``."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=session, info=info)
    return hkdf.derive(material)


def _pair(a: int, b: int) -> bytes:
    return struct.pack("<II", min(a, b), max(a, b))


def pair_key(shared: bytes, session: bytes, a: int, b: int) -> bytes:
    """The pairwise mask key of clients ``a`` and ``b`` from their X25519 shared secret."""
    return derive_key(shared, session, _PAIR_LABEL + _pair(a, b))


def self_key(seed: bytes, session: bytes, owner: int) -> bytes:
    """The self-mask key of ``owner`` from its 32-byte seed."""
    return derive_key(seed, session, _SELF_LABEL + struct.pack("<I", owner))


def apply_masks(keys: Sequence[bytes], negate: Sequence[bool], out: NDArray[np.uint32]) -> None:
    """Add (or, where ``negate``, subtract) each key's mask into ``out`` mod 2^32, in place."""
    if len(keys) != len(negate):
        raise ValueError("keys and negate must have the same length")
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint32 and out.ndim == 1):
        raise TypeError("out must be a 1-D uint32 array")
    if not keys or out.size == 0:
        return
    if any(len(k) != 32 for k in keys):
        raise ValueError("mask keys must be 32 bytes")
    words = np.frombuffer(b"".join(keys), dtype="<u4").astype(np.uint32)
    signs = np.fromiter((1 if s else 0 for s in negate), dtype=np.uint8, count=len(negate))
    _backend.kernels().apply_masks(words, signs, out, _backend.get_num_threads())
