"""hierfed.deploy: members seal to their basket aggregator, baskets add their noise share,
the global aggregator releases only the noised sum (played by an attacker where it matters)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hierfed import AggregationMethod
from hierfed.deploy import (
    BasketNode,
    GlobalAggregator,
    SealContext,
    open_update,
    run_round,
    seal_update,
)
from hierfed.layers import Layer1Aggregator, Layer1Config
from hierfed.privacy import DistributedDPConfig, NoiseGenerator
from hierfed.privacy.clipping import clip_by_l2_norm
from hierfed.secagg import SecAggError, plan_session

SESSION = b"s" * 32
DIM = 50
LAYER1 = Layer1Config(
    aggregation_method=AggregationMethod.TRIMMED_MEAN, trim_ratio=0.2, apply_local_noise=False
)


def context(member: str = "m0", basket: str = "b0", round_id: int = 0) -> SealContext:
    return SealContext(SESSION, round_id, member, basket)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_seal_round_trip_and_every_binding(dtype: type) -> None:
    key = X25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    x = np.random.default_rng(0).standard_normal(DIM).astype(dtype)
    blob = seal_update(x, pub, context())
    out = open_update(blob, key, context())
    assert out.dtype == dtype and np.array_equal(out, x)
    assert x.tobytes() not in blob  # the relay sees ciphertext
    # the relay replays it into another round, to another basket, under another member's
    # name, in another session, tampers with one byte, or the wrong basket opens it
    for wrong in (
        context(round_id=1),
        context(basket="b1"),
        context(member="m1"),
        SealContext(b"t" * 32, 0, "m0", "b0"),
    ):
        with pytest.raises(ValueError, match="does not open"):
            open_update(blob, key, wrong)
    tampered = bytearray(blob)
    tampered[-5] ^= 1
    with pytest.raises(ValueError, match="does not open"):
        open_update(bytes(tampered), key, context())
    with pytest.raises(ValueError, match="does not open"):
        open_update(blob, X25519PrivateKey.generate(), context())
    with pytest.raises(ValueError, match="does not open"):
        open_update(blob[:20], key, context())


def test_seal_refuses_bad_arguments() -> None:
    key = X25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    with pytest.raises(TypeError, match="float32 or float64"):
        seal_update(np.zeros(3, np.int64), pub, context())
    with pytest.raises(ValueError, match="1-D"):
        seal_update(np.zeros((2, 2)), pub, context())
    with pytest.raises(TypeError, match="recipient"):
        seal_update(np.zeros(3), b"short", context())
    with pytest.raises(TypeError, match="context"):
        seal_update(np.zeros(3), pub, "round 0")
    with pytest.raises(ValueError, match="session"):
        SealContext(b"x", 0, "m", "b")
    with pytest.raises(ValueError, match="round_id"):
        SealContext(SESSION, -1, "m", "b")
    with pytest.raises(TypeError, match="member_id"):
        SealContext(SESSION, 0, "", "b")
    with pytest.raises(TypeError, match="blob"):
        open_update("text", key, context())


def _ddg(n_min: int = 2, n_max: int = 3, z: float = 1.0) -> object:
    return DistributedDPConfig(noise_multiplier=z).mechanism(1.0, DIM, n_max, n_min)


def test_config_picks_the_finest_granularity_that_does_not_wrap() -> None:
    cfg = DistributedDPConfig(noise_multiplier=0.8, bits=20)
    mech = cfg.mechanism(clip=2.0, dim=1000, n_max=10, min_survivors=4)
    assert mech.wrap_probability(10) <= 2.0**-40
    finer = type(mech)(**{**mech.__dict__, "gamma": mech.gamma * 0.98})
    assert finer.wrap_probability(10) > 2.0**-40  # the bisection stopped at the edge
    assert mech.sigma == pytest.approx(1.6) and mech.n_min == 4
    with pytest.raises(ValueError, match="too few"):
        DistributedDPConfig(noise_multiplier=0.8, bits=4).mechanism(2.0, 1000, 10, 4)
    with pytest.raises(ValueError, match="colluders"):
        DistributedDPConfig(noise_multiplier=1.0, min_survivors=2, colluders=2)
    with pytest.raises(ValueError, match="min_survivors"):
        DistributedDPConfig(noise_multiplier=1.0).mechanism(1.0, 10, 5)
    with pytest.raises(ValueError, match="n_max"):
        DistributedDPConfig(noise_multiplier=1.0).mechanism(1.0, 10, 2, 3)


def _basket(name: str, members: int, seed: int) -> tuple[BasketNode, dict[str, np.ndarray]]:
    node = BasketNode(
        name,
        X25519PrivateKey.generate(),
        _ddg(),
        LAYER1,
        members=[f"{name}-m{i}" for i in range(members)],
        weighting="size",
        generator=NoiseGenerator(seed=seed, secure=False),
    )
    rng = np.random.default_rng(seed)
    updates = {f"{name}-m{i}": rng.normal(0.1 * seed, 0.2, DIM) for i in range(members)}
    return node, updates


def _sealed(node: BasketNode, updates: dict[str, np.ndarray], round_id: int) -> dict[str, bytes]:
    return {
        m: seal_update(x, node.public_key, SealContext(SESSION, round_id, m, node.basket_id))
        for m, x in updates.items()
    }


def test_basket_node_is_layer1_then_the_noise_share() -> None:
    node, updates = _basket("b0", 5, 1)
    seed = os.urandom(32)
    prepared = node.prepare(
        _sealed(node, updates, 0), session=SESSION, round_id=0, rotation_seed=seed
    )
    # the reference: Layer 1 in process, clip, weight (5 of 5 enrolled: 1), encode from the
    # same noise stream
    model = Layer1Aggregator(LAYER1).aggregate(np.stack(list(updates.values())))
    assert model is not None
    x = clip_by_l2_norm(model.aggregate[None], 1.0)[0]
    want = node.ddg.encode(x, NoiseGenerator(seed=1, secure=False), seed)
    assert np.array_equal(prepared.encoded, want)
    assert (prepared.weight, prepared.n_contributors, prepared.rejected) == (1.0, 5, {})
    assert node.releases == 1 and node.last_round == 0


def test_basket_node_rejects_what_an_attacker_sends_and_keeps_its_state() -> None:
    node, updates = _basket("b0", 5, 2)
    sealed = _sealed(node, updates, 3)
    stranger = X25519PrivateKey.generate()
    sealed["b0-m1"] = sealed["b0-m1"][:-1] + bytes([sealed["b0-m1"][-1] ^ 1])  # tampered
    sealed["intruder"] = seal_update(np.zeros(DIM), node.public_key, context("intruder", "b0", 3))
    sealed["b0-m2"] = seal_update(np.zeros(DIM + 1), node.public_key, context("b0-m2", "b0", 3))
    sealed["b0-m3"] = seal_update(np.full(DIM, np.nan), node.public_key, context("b0-m3", "b0", 3))
    sealed["b0-m4"] = seal_update(
        np.zeros(DIM), stranger.public_key().public_bytes_raw(), context("b0-m4", "b0", 3)
    )
    prepared = node.prepare(sealed, session=SESSION, round_id=3, rotation_seed=b"r" * 32)
    assert set(prepared.rejected) == {"b0-m1", "intruder", "b0-m2", "b0-m3", "b0-m4"}
    assert "not enrolled" in prepared.rejected["intruder"]
    assert "length" in prepared.rejected["b0-m2"] and "NaN" in prepared.rejected["b0-m3"]
    # one valid update is too few for the rule: weight 0, the noise share alone
    assert prepared.weight == 0.0 and prepared.n_contributors == 0
    # a second release in the same (or an earlier) round is refused and changes nothing
    for again in (3, 2):
        with pytest.raises(ValueError, match="second release"):
            node.prepare(
                _sealed(node, updates, again),
                session=SESSION,
                round_id=again,
                rotation_seed=b"r" * 32,
            )
    assert (node.releases, node.last_round) == (1, 3)
    with pytest.raises(ValueError, match="session"):
        node.prepare({}, session=b"short", round_id=4, rotation_seed=b"r" * 32)
    with pytest.raises(TypeError, match="sealed"):
        node.prepare([b"blob"], session=SESSION, round_id=4, rotation_seed=b"r" * 32)
    with pytest.raises(TypeError, match="not one str"):
        BasketNode("b0", X25519PrivateKey.generate(), node.ddg, LAYER1, members="b0-m0")
    assert (node.releases, node.last_round) == (1, 3)


def test_basket_node_refuses_a_plan_that_under_noises() -> None:
    node, _ = _basket("b0", 3, 3)
    plan = plan_session([0, 1, 2], vector_length=node.ddg.encoded_dim, dropout_rate=0.0)
    node.check_plan(plan)  # t >= n_min = 2
    low = type(plan)(**{**plan.__dict__, "t": 1})
    with pytest.raises(ValueError, match="fewer than the 2 inputs"):
        node.check_plan(low)
    short = type(plan)(**{**plan.__dict__, "vector_length": 7})
    with pytest.raises(ValueError, match="vector_length"):
        node.check_plan(short)


def test_a_round_releases_the_weighted_mean_within_the_noise() -> None:
    baskets = [_basket(f"b{i}", 3 + i, 10 + i) for i in range(3)]
    nodes = [n for n, _ in baskets]
    for node in nodes:
        node.expected = 5  # sizes 3, 4, 5 of 5: weights 0.6, 0.8, 1
    ddg = nodes[0].ddg
    aggregator = GlobalAggregator(ddg)
    sealed = {n.basket_id: _sealed(n, u, 0) for n, u in baskets}
    out = run_round(nodes, sealed, aggregator, session=SESSION, round_id=0)
    assert out.update is not None and out.survivors == ("b0", "b1", "b2")
    models = []
    for _, updates in baskets:
        m = Layer1Aggregator(LAYER1).aggregate(np.stack(list(updates.values())))
        assert m is not None
        models.append(clip_by_l2_norm(m.aggregate[None], 1.0)[0])
    w = np.array([0.6, 0.8, 1.0])
    exact = (w[:, None] * np.stack(models)).sum(0) / w.sum()
    # noise: sigma over the weight sum per coordinate (3 shares of at least n_min's), plus
    # rounding of at most 3 gamma per coordinate (rotated back: in L2)
    err = np.linalg.norm(out.update - exact)
    bound = 6 * ddg.sigma * math.sqrt(1.5 * DIM) + 3 * ddg.gamma * math.sqrt(ddg.encoded_dim)
    assert err <= bound / w.sum()
    assert err > 0  # the release is noised
    # what privacy_spent reports is the mechanism's epsilon for one release
    assert aggregator.privacy_spent() == (ddg.epsilon(1e-5, rounds=1), 1e-5)
    assert aggregator.last_stats["secure_agg_used"] is True


def test_killing_baskets_finishes_on_survivors_or_releases_nothing() -> None:
    baskets = [_basket(f"b{i}", 4, 20 + i) for i in range(3)]
    nodes = [n for n, _ in baskets]
    aggregator = GlobalAggregator(nodes[0].ddg)
    sealed = {n.basket_id: _sealed(n, u, 0) for n, u in baskets}
    out = run_round(
        nodes, sealed, aggregator, session=SESSION, round_id=0, dropouts={"b2": "masked_input"}
    )
    assert out.survivors == ("b0", "b1") and out.update is not None
    assert aggregator.rounds == 1
    # each node counts its own release: its view of the spend is the aggregator's
    assert nodes[0].privacy_spent(1e-5) == aggregator.privacy_spent()
    # two die: one survivor is fewer than n_min = 2; the release is refused, not accounted
    sealed = {n.basket_id: _sealed(n, u, 1) for n, u in baskets}
    spent = aggregator.privacy_spent()
    with pytest.raises((ValueError, SecAggError)):
        run_round(
            nodes,
            sealed,
            aggregator,
            session=SESSION,
            round_id=1,
            dropouts={"b1": "masked_input", "b2": "masked_input"},
        )
    assert aggregator.rounds == 1 and aggregator.privacy_spent() == spent
    # a third round on all three: three releases (the failed one was never decoded), composed
    sealed = {n.basket_id: _sealed(n, u, 2) for n, u in baskets}
    run_round(nodes, sealed, aggregator, session=SESSION, round_id=2)
    ddg = nodes[0].ddg
    assert aggregator.privacy_spent() == (ddg.epsilon(1e-5, rounds=2), 1e-5)
    assert spent[0] < aggregator.privacy_spent()[0] < 2 * spent[0]


def test_global_aggregator_refuses_an_under_noised_or_inconsistent_release() -> None:
    ddg = _ddg(n_min=3, n_max=4)
    aggregator = GlobalAggregator(ddg)
    words = np.zeros(ddg.encoded_dim, np.uint32)
    with pytest.raises(ValueError, match="too little noise"):
        aggregator.release(words, survivors=2, weight_sum=1.0, rotation_seed=b"r" * 32)
    with pytest.raises(ValueError, match="weight_sum"):
        aggregator.release(words, survivors=3, weight_sum=3.5, rotation_seed=b"r" * 32)
    assert aggregator.rounds == 0 and aggregator.privacy_spent() == (0.0, 1e-5)
    assert aggregator.release(words, survivors=3, weight_sum=0.0, rotation_seed=b"r" * 32) is None
    assert aggregator.rounds == 1  # noise alone was released: it counts
