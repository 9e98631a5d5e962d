"""DP-FedAvg with adaptive clipping in Layer 1 (clients of a basket), Layer 2 (baskets) and the
federation: the same rounds as hierfed.privacy.DPFedAvg, the unit each epsilon protects, bad
settings, rollback, checkpoints and the store keeping the clip norms."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hierfed import _checkpoint
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import (
    BasketModel,
    Layer1Aggregator,
    Layer1Config,
    Layer2Aggregator,
    Layer2Config,
)
from hierfed.privacy import DPFedAvg, DPFedAvgConfig, NoiseGenerator, RDPAccountant

DP = DPFedAvgConfig(1.0, sample_rate=0.5, initial_clip_norm=0.5, count_stddev=2.0)


def gen(seed: int = 1) -> NoiseGenerator:
    return NoiseGenerator(seed, secure=False)


def layer1(dp: DPFedAvgConfig = DP) -> Layer1Config:
    return Layer1Config(aggregation_method="mean", apply_local_noise=False, dp_fedavg=dp)


def layer2(dp: DPFedAvgConfig = DP) -> Layer2Config:
    return Layer2Config(
        use_secure_aggregation=False, central_dp_epsilon=None, weight_by_size=False, dp_fedavg=dp
    )


def test_layer1_rounds_are_dp_fedavg_rounds_per_basket(rng):
    agg = Layer1Aggregator(layer1(), generator=gen())
    ref = {}
    twin = gen()
    for _ in range(4):
        for b in "ab":
            x = rng.standard_normal((6, 5))
            ids = [f"{b}{i}" for i in range(6)]
            model = agg.aggregate(x, basket_id=b, expected_contributors=10, client_ids=ids)
            if b not in ref:
                ref[b] = DPFedAvg(DP, generator=twin)
            want = ref[b].aggregate(x, population=10)
            np.testing.assert_array_equal(model.aggregate, want.aggregate)
            assert agg.last_stats["dp_fedavg"]["next_clip_norm"] == want.next_clip_norm
            assert "sampled" not in agg.last_stats["dp_fedavg"]  # only released figures
            assert model.n_contributors == 6
    assert agg.clip_norms == {b: ref[b].clip_norm for b in "ab"}
    acc = RDPAccountant()
    acc.step(1.0, 0.5, 4)
    assert agg.client_privacy_spent("a3")[0] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert agg.privacy_spent("b")[0] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert agg.unit == "client"


def test_layer2_rounds_are_dp_fedavg_rounds_over_baskets(rng):
    agg = Layer2Aggregator(layer2(), generator=gen())
    ref = DPFedAvg(DP, generator=gen(), unit="basket")
    for t in range(3):
        arrays = [rng.standard_normal(4) for _ in range(5)]
        models = [BasketModel(f"b{i}", a, 3, t, 0.0, 1.0) for i, a in enumerate(arrays)]
        out = agg.aggregate(models)
        want = ref.aggregate(arrays)
        np.testing.assert_array_equal(out.aggregate, want.aggregate)
        assert agg.last_stats["privacy"] == "dp_fedavg"
        assert agg.last_stats["privacy_unit"] == "basket"
        assert out.privacy_spent == ref.privacy_spent()
    assert agg.dp_fedavg is not None and agg.dp_fedavg.clip_norm == ref.clip_norm
    rollback = agg.savepoint()
    agg.aggregate(models)
    assert agg.dp_fedavg.clip_norm != ref.clip_norm
    rollback()
    assert (agg.dp_fedavg.clip_norm, agg.dp_fedavg.rounds) == (ref.clip_norm, 3)
    assert agg.privacy_spent()[0] == pytest.approx(ref.privacy_spent()[0], rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"aggregation_method": "median"}, "aggregation_method='mean'"),
        ({"apply_local_noise": True}, "apply_local_noise=False"),
        ({"pre": "clip"}, "pre=None"),
    ],
)
def test_layer1_refuses_what_dp_fedavg_cannot_do(kwargs, name):
    base = {"aggregation_method": "mean", "apply_local_noise": False, "dp_fedavg": DP}
    with pytest.raises(ValueError, match=name):
        Layer1Config(**{**base, **kwargs})
    with pytest.raises(TypeError, match="dp_fedavg"):
        Layer1Config(aggregation_method="mean", apply_local_noise=False, dp_fedavg={"z": 1})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"central_dp_epsilon": 1.0}, "central_dp_epsilon"),
        ({"central_dp_noise_multiplier": 1.0}, "central_dp_noise_multiplier"),
        ({"use_secure_aggregation": True}, "use_secure_aggregation"),
        ({"robust_method": "median"}, "robust_method"),
        ({"weighting": "confidence"}, "weighting"),
    ],
)
def test_layer2_refuses_what_dp_fedavg_cannot_do(kwargs, name):
    base = {"use_secure_aggregation": False, "central_dp_epsilon": None, "dp_fedavg": DP}
    with pytest.raises(ValueError, match=name):
        Layer2Config(**{**base, **kwargs})


def config(**kw) -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=100),
        layer1=Layer1Config(
            aggregation_method="mean", min_updates=3, apply_local_noise=False, dp_fedavg=DP
        ),
        layer2=Layer2Config(
            use_secure_aggregation=False, central_dp_epsilon=None, min_baskets=2, dp_fedavg=DP
        ),
        **kw,
    )


def run(fed: HierarchicalFederation, rounds: range) -> None:
    for r in rounds:
        for i in range(6):
            update = np.random.default_rng(100 * r + i).normal(size=6)
            fed.submit_update(f"c{i}", update, base_version=r)


def federation(**kw) -> HierarchicalFederation:
    fed = HierarchicalFederation(config(**kw), clock=lambda: 5.0, generator=gen(), seed=0)
    for i in range(6):
        fed.register_client(f"c{i}", f"d{i % 2}")
    return fed


def test_federation_checkpoint_keeps_the_clip_norms(tmp_path):
    fed = federation()
    run(fed, range(3))
    assert fed.version == 3
    stats = fed.get_stats()
    assert (stats["privacy_unit"], stats["client_privacy_unit"]) == ("basket", "client")
    clips = (fed.layer1.clip_norms, fed.layer2.dp_fedavg.clip_norm)
    assert len(clips[0]) == 2 and all(c != 0.5 for c in clips[0].values())
    fed.checkpoint(tmp_path / "a.npz")
    back = federation()
    back.restore(tmp_path / "a.npz")
    assert (back.layer1.clip_norms, back.layer2.dp_fedavg.clip_norm) == clips
    assert back.privacy_spent() == fed.privacy_spent()
    assert back.max_client_privacy_spent() == fed.max_client_privacy_spent()
    run(back, range(3, 4))  # it goes on from the restored clip norms
    assert back.version == 4

    state, arrays = _checkpoint.read(tmp_path / "a.npz")
    for bad in (
        {"layer1": {"nowhere": 1.0}, "layer2": 1.0},
        {"layer1": clips[0], "layer2": -1.0},
        {"layer1": clips[0], "layer2": None},
        {"layer1": clips[0]},
    ):
        _checkpoint.write(tmp_path / "b.npz", {**state, "clip_norms": bad}, arrays)
        with pytest.raises(ValueError, match="clip_norms"):
            back.restore(tmp_path / "b.npz")
    assert back.version == 4 and back.layer2.dp_fedavg.rounds == 4


def test_store_replay_keeps_the_clip_norms(tmp_path):
    fed = federation(store=tmp_path / "s.db")
    run(fed, range(3))
    before = dict(fed.layer1.clip_norms)
    for i in (0, 2, 4):  # one basket aggregates after the last global round's snapshot
        fed.submit_update(f"c{i}", np.full(6, 0.01 * i), base_version=3)
    assert fed.get_stats()["pending_basket_models"] == 1
    assert fed.layer1.clip_norms != before
    clips = (fed.layer1.clip_norms, fed.layer2.dp_fedavg.clip_norm)
    spent = (fed.privacy_spent(), fed.max_client_privacy_spent())
    again = HierarchicalFederation(
        config(store=tmp_path / "s.db"), clock=lambda: 5.0, generator=gen(), seed=0
    )
    assert (again.layer1.clip_norms, again.layer2.dp_fedavg.clip_norm) == clips
    assert again.privacy_spent()[0] == pytest.approx(spent[0][0], rel=1e-12)
    assert again.max_client_privacy_spent()[0] == pytest.approx(spent[1][0], rel=1e-12)
    assert json.loads(json.dumps(again.get_stats()["last_layer2"]))["dp_fedavg"] is not None
