"""What the private path's Flower messages carry: record names, stages, the member signature.

Both sides of :mod:`.flower_private` (ServerApp) and :mod:`.flower_private_node` (ClientApps)
use these; everything else in a message is opaque bytes (SecAgg+ messages of
:mod:`hierfed.secagg.messages`, HPKE ciphertexts of :mod:`hierfed.deploy.envelope`).
"""

from __future__ import annotations

import hashlib
import struct

__all__ = [
    "BASKET_ACTION",
    "ROLE_ACTION",
    "SEALED",
    "SECAGG",
    "STAGES",
    "STATE",
    "sealed_payload",
]

BASKET_ACTION = "hierfed_secagg"
"""Message type ``train.hierfed_secagg``: one SecAgg+ stage, to a basket aggregator node."""
ROLE_ACTION = "hierfed_role"
"""Message type ``query.hierfed_role``: a node's role and basket (public)."""
SECAGG = "hierfed.secagg"
"""ConfigRecord of a stage: ``stage``, ``round``, ``payload`` (bytes), and per stage ``plan``
(advertise), ``rotation-seed`` (masked_input); replies: ``payload`` or ``refused``."""
SEALED = "hierfed.sealed"
"""ConfigRecord of a member's reply (``blob``, ``signature``, ``member-id``, ``basket``), and
of the relay to a basket: ``<member id>`` -> blob, ``<member id>:sig`` -> signature."""
STATE = "hierfed.secagg.state"
"""ConfigRecord in a basket node's ``context.state``: its SecAgg+ client state (bytes)."""
STAGES = ("advertise", "share_keys", "masked_input", "consistency", "unmask")

_LABEL = b"hierfed.flower.sealed-update.v1"


def sealed_payload(
    session: bytes, round_id: int, member_id: str, basket_id: str, blob: bytes
) -> bytes:
    """What a member signs: the seal's context and the ciphertext's SHA-256 (the basket
    aggregator checks it against the member's pinned key: a relay cannot forge members)."""
    parts = [_LABEL, session, member_id.encode(), basket_id.encode()]
    body = b"".join(struct.pack("<I", len(p)) + p for p in parts)
    return body + struct.pack("<Q", round_id) + hashlib.sha256(blob).digest()
