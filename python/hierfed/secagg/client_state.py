"""A :class:`~.client.Client`'s state as bytes, for runtimes that answer each message in a
fresh process (Flower's SuperNode runs a ClientApp per message; ``context.state`` keeps the
bytes between them, on the node).

The state holds the client's secrets (its X25519 keys, its self-mask seed, the shares it
holds): it must stay on the client's node. It is authenticated with an HMAC-SHA256 keyed by
the client's identity key, so a state is restored only by the identity that wrote it, and
any change to it is refused (an older state of the same client is not: the node's storage
is trusted by that node, as its identity key is).

Wire form (little-endian)::

    magic b"HFCS" | version u8 = 1 | stage u8 | client id u32 |
    signed plan length u32 + bytes | enc key 32 | mask key 32 | seed 32 |
    peers u32 + count x (id u32, enc key 32, mask key 32) |
    held u32 + count x share plaintext (73) | own u8 (0/1) [+ share plaintext] |
    survivors u32 + ids (increasing) | survivors digest u8 (0/32) + bytes |
    rejected u32 + count x (id u32, length u16, UTF-8 reason) | HMAC-SHA256 32
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from . import messages as msg

__all__ = ["ClientState", "decode_state", "encode_state"]

_MAGIC = b"HFCS"
_VERSION = 1
_KEY_LABEL = b"hierfed.secagg.client-state.v1"
_TAG_BYTES = 32
_KEY = msg.KEY_BYTES


@dataclass(frozen=True)
class ClientState:
    """The fields of a client's state (secrets included)."""

    stage: int
    client_id: int
    plan: bytes
    enc_key: bytes
    mask_key: bytes
    seed: bytes
    peers: dict[int, tuple[bytes, bytes]]
    held: dict[int, msg.SharePlaintext]
    own: msg.SharePlaintext | None
    survivors: tuple[int, ...]
    survivors_digest: bytes
    rejected: dict[int, str]


def _state_key(identity_private: bytes) -> bytes:
    return hashlib.sha256(_KEY_LABEL + identity_private).digest()


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def encode_state(state: ClientState, identity_private: bytes) -> bytes:
    """``state`` as bytes, authenticated under ``identity_private`` (32 raw Ed25519 bytes)."""
    parts = [_MAGIC, bytes([_VERSION, state.stage]), _u32(state.client_id)]
    parts += [_u32(len(state.plan)), state.plan, state.enc_key, state.mask_key, state.seed]
    parts.append(_u32(len(state.peers)))
    parts += [_u32(v) + c + s for v, (c, s) in sorted(state.peers.items())]
    parts.append(_u32(len(state.held)))
    parts += [state.held[v].to_bytes() for v in sorted(state.held)]
    parts.append(b"\x00" if state.own is None else b"\x01" + state.own.to_bytes())
    parts += [
        _u32(len(state.survivors)),
        struct.pack(f"<{len(state.survivors)}I", *state.survivors),
    ]
    parts += [bytes([len(state.survivors_digest)]), state.survivors_digest]
    parts.append(_u32(len(state.rejected)))
    for v, why in sorted(state.rejected.items()):
        text = why.encode()[:0xFFFF]
        parts.append(_u32(v) + struct.pack("<H", len(text)) + text)
    body = b"".join(parts)
    return body + hmac.new(_state_key(identity_private), body, hashlib.sha256).digest()


def decode_state(data: bytes, identity_private: bytes) -> ClientState:
    """Parse a state written by :func:`encode_state` under the same identity key.

    ValueError when it is not one (magic, version, lengths), when its HMAC fails (another
    identity's state, or a modified one), or when it is malformed.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a client state must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) < len(_MAGIC) + 2 + _TAG_BYTES or raw[:4] != _MAGIC or raw[4] != _VERSION:
        raise ValueError("not a secure-aggregation client state (magic, version or length)")
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    want = hmac.new(_state_key(identity_private), body, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, want):
        raise ValueError(
            "the client state fails its authentication: written by another identity, or modified"
        )
    r = msg._Reader(body[5:], "client state")
    stage = r.u8()
    client_id = r.u32()
    plan = r.take(r.u32())
    enc_key, mask_key, seed = r.take(_KEY), r.take(_KEY), r.take(32)
    peers = {}
    for _ in range(r.u32()):
        v = r.u32()
        peers[v] = (r.take(_KEY), r.take(_KEY))
    held = {}
    for _ in range(r.u32()):
        p = msg.SharePlaintext.from_bytes(r.take(msg.SharePlaintext.SIZE))
        held[p.sender] = p
    own = msg.SharePlaintext.from_bytes(r.take(msg.SharePlaintext.SIZE)) if r.u8() else None
    survivors = r.ids()
    survivors_digest = r.take(r.u8())
    rejected = {}
    for _ in range(r.u32()):
        v = r.u32()
        (length,) = struct.unpack("<H", r.take(2))
        rejected[v] = r.take(length).decode(errors="replace")
    r.done()
    return ClientState(
        stage,
        client_id,
        plan,
        enc_key,
        mask_key,
        seed,
        peers,
        held,
        own,
        survivors,
        survivors_digest,
        rejected,
    )
