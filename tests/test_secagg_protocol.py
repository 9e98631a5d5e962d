"""SecAgg+ rounds: exact sums under dropouts, hardening against a malicious server and
corrupted shares, uniformly masked vectors, and the secure_sum / SecureAggregator API."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from secagg_round import Round, survivors_message

from hierfed.secagg import (
    SecAggConfig,
    SecAggError,
    SecureAggregator,
    choose_parameters,
    secure_sum,
)
from hierfed.secagg import messages as msg
from hierfed.secagg._crypto import secret_key


def _exact(n: int, drops: dict[int, str], d: int = 50, **kw: object) -> None:
    rng = np.random.default_rng(n)
    x = {i: rng.integers(0, 2**32, size=d, dtype=np.uint32) for i in range(n)}
    r = secure_sum(x, dropouts=drops, config=SecAggConfig(**kw))  # type: ignore[arg-type]
    gone = {i for i, s in drops.items() if s != "unmask"}
    assert r.survivors == tuple(i for i in range(n) if i not in gone)
    want = np.zeros(d, np.uint64)
    for i in r.survivors:
        want += x[i]
    np.testing.assert_array_equal(r.total, want.astype(np.uint32))
    assert r.total.dtype == np.uint32


@pytest.mark.parametrize("stage", ["share_keys", "masked_input", "unmask"])
def test_exact_sum_with_drops_at_each_stage(stage: str) -> None:
    _exact(10, {1: stage, 7: stage})


def test_exact_sum_mixed_drops_and_every_backend(backend: str) -> None:
    _exact(12, {0: "share_keys", 3: "masked_input", 5: "unmask", 8: "masked_input"})


def test_exact_sum_no_drops_two_clients() -> None:
    _exact(2, {})


def test_up_to_n_minus_t_dropped() -> None:
    t = choose_parameters(10).t
    _exact(10, {i: "masked_input" for i in range(10 - t)})
    with pytest.raises(SecAggError, match="fewer than t"):
        _exact(10, {i: "masked_input" for i in range(10 - t + 1)})


def test_sparse_graph_adjacent_neighbours_drop_together() -> None:
    r = Round(50, d=40)
    assert not r.params.complete
    u = 0
    v = r.graph[u][0]
    w = next(x for x in r.graph[v] if x != u and x in r.graph[u])  # a triangle u, v, w
    total, survivors = r.finish(drop_input={u, v, w})
    assert {u, v, w}.isdisjoint(survivors) and len(survivors) == 47
    np.testing.assert_array_equal(total, r.expected(survivors))


def test_unmask_dropouts_leave_inputs_in() -> None:
    r = Round(20)
    total, survivors = r.finish(drop_unmask={i for i in range(20) if i % 4 == 0})
    assert survivors == tuple(range(20))
    np.testing.assert_array_equal(total, r.expected(survivors))


def test_consistency_dropouts_leave_inputs_in() -> None:
    r = Round(20)
    total, survivors = r.finish(drop_tags={3, 11})
    assert survivors == tuple(range(20))
    np.testing.assert_array_equal(total, r.expected(survivors))


def test_too_few_survivors_aborts_without_output() -> None:
    r = Round(10)
    proofs = r.to_proofs()
    for i in list(proofs)[:3]:  # t = 6 > 3 responders
        r.server.receive_unmask_response(r.clients[i].unmask(proofs[i]))
    with pytest.raises(SecAggError, match="fewer than t"):
        r.server.finalize()


def test_client_refuses_a_survivor_set_without_it_unknown_ids_or_too_few_peers() -> None:
    r = Round(10, complete=True)
    sets = r.to_survivors()
    ids = msg.Survivors.from_bytes(sets[0]).ids
    with pytest.raises(SecAggError, match="leaves this client out"):
        r.clients[0].consistency(survivors_message(r, 0, ids[1:]))
    with pytest.raises(SecAggError, match="unknown"):
        r.clients[0].consistency(survivors_message(r, 0, (*ids, 12)))
    t = r.params.t
    with pytest.raises(SecAggError, match="fewer than the threshold"):
        r.clients[0].consistency(survivors_message(r, 0, ids[: t - 1]))
    r.clients[0].consistency(sets[0])  # refusals left the stage unused


def _corrupt(response: bytes, owner: int) -> bytes:
    m = msg.UnmaskResponse.from_bytes(response)
    shares = tuple(
        (o, k, ((s[0] + 1) % (2**127 - 1), *s[1:])) if o == owner else (o, k, s)
        for o, k, s in m.shares
    )
    return replace(m, shares=shares).to_bytes()


@pytest.mark.parametrize("dropped_owner", [False, True])
def test_corrupted_share_is_corrected_and_named(dropped_owner: bool) -> None:
    r = Round(10)
    owner = 4 if dropped_owner else 2
    proofs = r.to_proofs(drop_input={4} if dropped_owner else ())
    for i, q in proofs.items():
        resp = r.clients[i].unmask(q)
        if i == 0:
            resp = _corrupt(resp, owner)
        r.server.receive_unmask_response(resp)
    total, survivors = r.server.finalize()
    np.testing.assert_array_equal(total, r.expected(survivors))
    assert r.server.corrupted_shares == [(0, owner)]


def test_all_corrupted_shares_abort() -> None:
    r = Round(8)
    for i, q in r.to_proofs().items():
        r.server.receive_unmask_response(_corrupt(r.clients[i].unmask(q), 3))
    with pytest.raises(SecAggError, match="aborting"):
        r.server.finalize()


def test_tampered_ciphertext_leaves_its_sender_out() -> None:
    r = Round(5, complete=True)
    routed = r.to_shares()
    m = msg.Shares.from_bytes(routed[0])
    ct = m.ciphertexts[0]
    bad = replace(ct, data=bytes([ct.data[0] ^ 1]) + ct.data[1:])
    forged = replace(m, ciphertexts=(bad, *m.ciphertexts[1:])).to_bytes()
    sent = msg.MaskedInput.from_bytes(r.clients[0].masked_input(forged, r.x[0]))
    assert ct.peer not in sent.peers and "authentication" in r.clients[0].rejected[ct.peer]


def test_view_of_fewer_than_t_colluders_reveals_no_key() -> None:
    r = Round(10)
    t = r.params.t
    routed = r.to_shares()
    for i in range(t - 1):  # colluders 0 .. t-2 hand over what they hold of client 9
        r.clients[i].masked_input(routed[i], r.x[i])
    from hierfed.secagg import shamir

    held = [
        (i + 1, r.clients[i]._held[9].key_share) for i in range(t - 1) if 9 in r.clients[i]._held
    ]
    assert held
    target = r.server._keys[9][1]  # client 9's advertised masking key
    guess = shamir.reconstruct([x for x, _ in held], [s for _, s in held])
    try:
        sk = secret_key(shamir.elements_to_bytes(guess))
    except ValueError:
        return  # not even a key
    assert sk.public_key().public_bytes_raw() != target


def test_live_client_key_share_never_revealed() -> None:
    r = Round(8)
    for i, q in r.to_proofs(drop_input={2}).items():
        resp = msg.UnmaskResponse.from_bytes(r.clients[i].unmask(q))
        for owner, kind, _ in resp.shares:
            assert (kind == msg.KEY) == (owner == 2)


def test_masked_vectors_are_uniform() -> None:
    r = Round(6, d=1 << 14, complete=True)
    r.x[:] = 0  # the worst case: all inputs equal
    r.to_survivors()
    for m in r.masked.values():
        words = np.frombuffer(msg.MaskedInput.from_bytes(m).words, "<u4")
        counts = np.bincount(words >> 24, minlength=256)
        chi2 = (((counts - words.size / 256) ** 2) / (words.size / 256)).sum()
        assert chi2 < 420  # 255 degrees of freedom: p < 1e-8 (a bias gives ~1e6)


def test_float_sum_is_close_and_typed() -> None:
    rng = np.random.default_rng(3)
    x = {f"c{i}": rng.uniform(-0.5, 0.5, size=(3, 7)).astype(np.float32) for i in range(8)}
    r = secure_sum(x, dropouts={"c2": "masked_input"})
    want = sum(v.astype(np.float64) for k, v in x.items() if k != "c2")
    assert r.total.dtype == np.float32 and r.total.shape == (3, 7)
    assert r.bits is not None
    assert np.abs(r.total - want).max() < 1e-6 + 8 * 2.0 / 2**r.bits  # + float32 rounding
    assert "c2" in r.dropped


def test_facade() -> None:
    agg = SecureAggregator(SecAggConfig(clip=2.0))
    for i in range(4):
        agg.submit_share(i, np.full(5, 0.25 * i))
    with pytest.raises(ValueError, match="already"):
        agg.submit_share(0, np.zeros(5))
    total = agg.finalize()
    np.testing.assert_allclose(total, np.full(5, 1.5), atol=1e-6)
    assert agg.last_result is not None and agg.last_result.survivors == (0, 1, 2, 3)

    class Layer2Like:
        clip_norm = 0.5
        min_baskets = 3

    layer2 = SecureAggregator(Layer2Like())
    assert layer2.config.clip == 0.5
    for i in range(3):
        layer2.submit_share(i, np.zeros(2))
    with pytest.raises(ValueError, match="min_baskets"):
        layer2.finalize(dropouts={0: "masked_input"})
    assert layer2.last_result is None
    with pytest.raises(TypeError, match="config"):
        SecureAggregator(object())


@pytest.mark.parametrize(
    ("inputs", "kw", "error", "match"),
    [
        ([np.zeros(3, np.uint32)] * 2, {}, TypeError, "inputs must be a mapping"),
        ({0: np.zeros(3, np.uint32)}, {}, ValueError, "at least 2"),
        ({0: np.zeros(3, np.uint32), 1: np.zeros(4, np.uint32)}, {}, ValueError, "shape"),
        ({0: np.zeros(3, np.uint32), 1: np.zeros(3, np.float64)}, {}, ValueError, "dtype"),
        ({0: np.zeros(3, np.int64), 1: np.zeros(3, np.int64)}, {}, TypeError, "dtype"),
        ({0: np.zeros(3), 1: np.array([0, np.nan, 0])}, {}, ValueError, "inputs\\[1\\]"),
        ({0: [1.0], 1: [2.0]}, {}, TypeError, "numpy array"),
        ({0: np.zeros(3), 1: np.zeros(3)}, {"dropouts": {5: "unmask"}}, ValueError, "not in"),
        ({0: np.zeros(3), 1: np.zeros(3)}, {"dropouts": {0: "late"}}, ValueError, "stage"),
        ({0: np.zeros(3), 1: np.zeros(3)}, {"config": "x"}, TypeError, "SecAggConfig"),
    ],
)
def test_bad_input(inputs: object, kw: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        secure_sum(inputs, **kw)  # type: ignore[arg-type]


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="clip"):
        SecAggConfig(clip=0.0)
    with pytest.raises(ValueError, match="bits"):
        SecAggConfig(bits=40)
    with pytest.raises(ValueError, match="collusion_fraction"):
        SecAggConfig(collusion_fraction=0.6)
    with pytest.raises(ValueError, match="wrap"):
        secure_sum({i: np.zeros(2) for i in range(3)}, config=SecAggConfig(bits=31))


def test_out_of_order_calls_raise() -> None:
    r = Round(3, complete=True)
    with pytest.raises(SecAggError, match="out of order"):
        r.clients[0].unmask(b"")
    with pytest.raises(SecAggError, match="out of order"):
        r.server.finalize()


def test_weighted_sum_sends_wx_and_w() -> None:
    rng = np.random.default_rng(5)
    x = {i: rng.uniform(-1, 1, size=6) for i in range(6)}
    w = {i: float(i) for i in range(6)}
    cfg = SecAggConfig(max_weight=8.0)
    r = secure_sum(x, weights=w, config=cfg, dropouts={1: "share_keys"})
    want = sum(w[i] * x[i] for i in range(6) if i != 1)
    assert r.bits is not None and r.total_weight is not None
    np.testing.assert_allclose(r.total, want, atol=8 * 16 / 2**r.bits)
    assert abs(r.total_weight - 14.0) < 8 * 16 / 2**r.bits
    with pytest.raises(ValueError, match="max_weight"):
        secure_sum(x, weights={**w, 0: 9.0}, config=cfg)
    with pytest.raises(ValueError, match="exactly"):
        secure_sum(x, weights={0: 1.0}, config=cfg)
    with pytest.raises(TypeError, match="float inputs"):
        secure_sum({0: np.zeros(2, np.uint32), 1: np.zeros(2, np.uint32)}, weights={0: 1, 1: 1})
    agg = SecureAggregator(cfg)
    agg.submit_share("a", np.ones(3), weight=2.0)
    with pytest.raises(ValueError, match="every client"):
        agg.submit_share("b", np.ones(3))
    agg.submit_share("c", np.ones(3), weight=4.0)
    np.testing.assert_allclose(agg.finalize(), np.full(3, 6.0), atol=1e-5)
    assert agg.last_result is not None and agg.last_result.total_weight is not None
    assert abs(agg.last_result.total_weight - 6.0) < 1e-5


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 12),
    stages=st.lists(st.sampled_from([None, "share_keys", "masked_input", "unmask"]), max_size=12),
)
def test_any_dropout_pattern_is_exact_or_aborts(n: int, stages: list[str | None]) -> None:
    drops = {i: s for i, s in enumerate(stages[:n]) if s is not None}
    rng = np.random.default_rng(n)
    x = {i: rng.integers(0, 2**32, size=17, dtype=np.uint32) for i in range(n)}
    try:
        r = secure_sum(x, dropouts=drops)
    except SecAggError as exc:
        assert "fewer than" in str(exc)
        return
    assert r.survivors == tuple(i for i in range(n) if drops.get(i) in (None, "unmask"))
    want = sum((x[i].astype(np.uint64) for i in r.survivors), np.zeros(17, np.uint64))
    np.testing.assert_array_equal(r.total, want.astype(np.uint32))


def test_server_rejects_bad_messages() -> None:
    r = Round(4, complete=True)
    ad = r.clients[0].advertise()
    r.server.receive_advertise(ad)
    with pytest.raises(ValueError, match="twice"):
        r.server.receive_advertise(ad)
    other = Round(4, complete=True)
    with pytest.raises(ValueError, match="another session"):
        r.server.receive_advertise(other.clients[1].advertise())
    with pytest.raises(ValueError):
        r.server.receive_advertise(ad[:-1])
    forged = msg.Advertise.from_bytes(r.clients[1].advertise())
    with pytest.raises(ValueError, match="not signed"):
        r.server.receive_advertise(replace(forged, enc_key=bytes(32)).to_bytes())
    r.server.receive_advertise(forged.to_bytes())  # the refusal changed nothing
    for c in r.clients[2:]:
        r.server.receive_advertise(c.advertise())
    rosters = r.server.rosters()
    sk = msg.ShareKeys.from_bytes(r.clients[0].share_keys(rosters[0]))
    stray = msg.Ciphertext(9, b"n" * 12, b"x")
    with pytest.raises(ValueError, match="not its neighbour"):
        r.server.receive_share_keys(replace(sk, ciphertexts=(*sk.ciphertexts, stray)).to_bytes())
    assert "neighbour" in r.server.rejected[0]
    r.server.receive_share_keys(sk.to_bytes())
    with pytest.raises(SecAggError, match="out of order"):
        r.server.receive_advertise(ad)


def test_facade_list_models() -> None:
    agg = SecureAggregator(SecAggConfig(clip=4.0))
    for i in range(3):
        agg.submit_share(i, [np.full((2, 3), float(i)), np.full(4, 1.0)])
    with pytest.raises(ValueError, match="layout"):
        agg.submit_share(9, [np.zeros((3, 2)), np.zeros(4)])
    with pytest.raises(ValueError, match="layout"):
        agg.submit_share(9, np.zeros(10))
    out = agg.finalize()
    assert isinstance(out, list) and [a.shape for a in out] == [(2, 3), (4,)]
    np.testing.assert_allclose(out[0], 3.0, atol=1e-5)
    np.testing.assert_allclose(out[1], 3.0, atol=1e-5)
    with pytest.raises(TypeError, match="one dtype"):
        agg.submit_share(0, [np.zeros(2), np.zeros(2, np.float32)])
    with pytest.raises(TypeError, match="list of numpy arrays"):
        agg.submit_share(0, "model")  # type: ignore[arg-type]
    u = SecureAggregator()
    u.submit_share("a", [np.array([2**32 - 1], np.uint32)])
    u.submit_share("b", [np.array([3], np.uint32)])
    assert u.finalize()[0][0] == 2  # exact mod 2^32
