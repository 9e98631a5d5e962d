"""secagg.Client.export_state / from_state: a round answered by a fresh client object per
message (as Flower's SuperNode runs a ClientApp process per message) sums exactly; a state is
restored only by its identity, unmodified, consistent, with its stage (no message answered
twice) and its plan checked again."""

from __future__ import annotations

import os

import numpy as np
import pytest
from secagg_round import Round

from hierfed.secagg import Client, Identity, IdentityRegistry, SecAggError
from hierfed.secagg import client_state as cs


def _reborn(r: Round, i: int) -> Client:
    """Client ``i`` written out and read back into a new object (its old one discarded)."""
    state = r.clients[i].export_state()
    r.clients[i] = Client.from_state(state, r.identities[i], r.registry)
    return r.clients[i]


def test_a_round_restored_before_every_message_sums_exactly() -> None:
    r = Round(7, 33)
    s = r.server
    for i in range(7):
        s.receive_advertise(_reborn(r, i).advertise())
    rosters = s.rosters()
    for i in range(7):
        s.receive_share_keys(_reborn(r, i).share_keys(rosters[i]))
    routed = s.route_shares()
    for i in range(6):  # client 6 drops after sharing keys
        s.receive_masked_input(_reborn(r, i).masked_input(routed[i], r.x[i]))
    for i, m in s.survivors().items():
        s.receive_consistency_tags(_reborn(r, i).consistency(m))
    for i, m in s.consistency_proofs().items():
        s.receive_unmask_response(_reborn(r, i).unmask(m))
    total, survivors = s.finalize()
    assert survivors == tuple(range(6))
    np.testing.assert_array_equal(total, r.expected(range(6)))


def test_restored_state_keeps_the_stage_and_refuses_a_message_answered_before() -> None:
    r = Round(5, 8)
    rosters = r.to_shares()
    assert rosters
    client = _reborn(r, 0)
    with pytest.raises(SecAggError, match="out of order"):
        client.advertise()
    with pytest.raises(SecAggError, match="out of order"):
        client.share_keys(b"")


def test_replay_refusal_holds_across_restores() -> None:
    r = Round(5, 8)
    joined: set[bytes] = set()
    c = Client(r.identities[0], 0, r.registry, r.signed, joined=joined)
    restored = Client.from_state(c.export_state(), r.identities[0], r.registry)
    assert restored.plan.session in joined
    with pytest.raises(SecAggError, match="replay"):
        Client(r.identities[0], 0, r.registry, r.signed, joined=joined)


def test_state_of_another_identity_or_modified_is_refused() -> None:
    r = Round(5, 8)
    state = r.clients[0].export_state()
    with pytest.raises(ValueError, match="authentication"):
        Client.from_state(state, r.identities[1], r.registry)
    for at in (0, 10, len(state) // 2, len(state) - 1):
        bad = bytearray(state)
        bad[at] ^= 1
        with pytest.raises(ValueError):
            Client.from_state(bytes(bad), r.identities[0], r.registry)
    with pytest.raises(ValueError):
        Client.from_state(state[:-1], r.identities[0], r.registry)
    with pytest.raises(TypeError, match="bytes"):
        Client.from_state([1, 2], r.identities[0], r.registry)  # type: ignore[arg-type]


def test_the_plan_is_checked_again_on_restore() -> None:
    r = Round(5, 8)
    state = r.clients[0].export_state()
    other = IdentityRegistry(
        Identity().public_bytes, {i: k.public_bytes for i, k in enumerate(r.identities)}
    )
    with pytest.raises(SecAggError, match="not signed by the operator"):
        Client.from_state(state, r.identities[0], other)


def _forged(r: Round, i: int, **changes: object) -> bytes:
    """Client ``i``'s state with fields changed, validly authenticated (as a buggy writer)."""
    key = r.identities[i].private_bytes()
    fields = cs.decode_state(r.clients[i].export_state(), key)
    values = {**fields.__dict__, **changes}
    return cs.encode_state(cs.ClientState(**values), key)  # type: ignore[arg-type]


def test_an_inconsistent_state_is_refused_even_when_authenticated() -> None:
    r = Round(5, 8)
    r.to_shares()
    assert 0 not in r.clients[0].neighbours
    cases: list[dict[str, object]] = [
        {"stage": 9},
        {"stage": 1},  # holds its own share: it has shared keys
        {"seed": b"\xff" * 32},
        {"survivors": (0, 1), "stage": 2},
        {"survivors_digest": b"x"},
        {"peers": {0: (os.urandom(32), os.urandom(32))}},  # itself: not a neighbour
    ]
    for changes in cases:
        with pytest.raises(ValueError, match="inconsistent"):
            Client.from_state(_forged(r, 0, **changes), r.identities[0], r.registry)
