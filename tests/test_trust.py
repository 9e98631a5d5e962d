"""Trust weights: Layer 1 multiplies each client's trust score into its update's weight;
Layer 2's ``weighting="trust"`` weights baskets by operator trust and reliability."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import BasketModel, Layer1Config, Layer2Aggregator, Layer2Config
from hierfed.trust import agreement

D = 8


def _fed(rule: str, n: int, **params) -> HierarchicalFederation:
    cfg = FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=10),
        layer1=Layer1Config(
            aggregation_method=rule,
            min_updates=n,
            apply_local_noise=False,
            method_params=params,
        ),
        layer2=Layer2Config(
            use_secure_aggregation=False, central_dp_epsilon=None, min_baskets=1, clip_norm=1e9
        ),
        auto_aggregate=False,
    )
    fed = HierarchicalFederation(
        cfg,
        initial_model=np.zeros(D),
        clock=lambda: 0.0,
        generator=NoiseGenerator(seed=0, secure=False),
        seed=0,
    )
    for i in range(n):
        fed.register_client(f"c{i}", "hospital")
    return fed


def _updates(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    ups = [rng.normal(size=D) for _ in range(n)]
    ups[0] = np.full(D, 1e6)  # the client whose trust is set
    return ups


def _basket_model(fed: HierarchicalFederation, ups: list[np.ndarray]) -> np.ndarray:
    for i, u in enumerate(ups):
        fed.submit_update(f"c{i}", u, base_version=0)
    (basket,) = fed.buffer.baskets()
    model = fed.aggregate_basket(basket)
    assert model is not None
    return model.aggregate


@pytest.mark.parametrize(
    ("rule", "params"),
    [("mean", {}), ("trimmed_mean", {"trim_ratio": 0.2}), ("krum", {"f": 1}), ("median", {})],
)
def test_a_client_with_trust_zero_has_no_effect_on_its_basket_model(rule, params) -> None:
    ups = _updates(6)
    fed = _fed(rule, 6, **params)
    fed.manager.set_trust_score("c0", 0.0)
    got = _basket_model(fed, ups)
    alone = _fed(rule, 5, **params)  # the same basket without client 0
    want = _basket_model(alone, ups[1:])
    np.testing.assert_array_equal(got, want)
    stats = fed.get_stats()
    assert stats["aggregated_updates"] == 5 and stats["dropped_unaggregated"] == 1
    assert stats["buffered_updates"] == 0


def test_trust_scales_a_weighted_rules_weight() -> None:
    ups = _updates(4)
    ups[0] = np.ones(D)
    fed = _fed("mean", 4)
    fed.manager.set_trust_score("c0", 0.25)
    fed.manager.set_trust_score("c1", 2.0)
    got = _basket_model(fed, ups)
    np.testing.assert_allclose(got, np.average(ups, axis=0, weights=[0.25, 2, 1, 1]), rtol=1e-12)


def test_untrusted_updates_do_not_count_towards_the_rules_minimum() -> None:
    fed = _fed("krum", 5, f=1)  # Krum with f=1 needs 2 f + 3 = 5 updates
    fed.manager.set_trust_score("c0", 0.0)
    for i, u in enumerate(_updates(5)):
        fed.submit_update(f"c{i}", u, base_version=0)
    (basket,) = fed.buffer.baskets()
    assert fed.aggregate_basket(basket) is None and len(fed.buffer) == 5


# ---- Layer 2: basket trust and reliability -----------------------------------------------


def _models(n: int = 4, seed: int = 0) -> list[BasketModel]:
    rng = np.random.default_rng(seed)
    return [
        BasketModel(
            f"b{i}",
            rng.normal(scale=0.1, size=D),
            n_contributors=i + 2,
            round_id=0,
            timestamp=0.0,
            confidence=1.0,
        )
        for i in range(n)
    ]


def _layer2(secure: bool = False, **kw) -> Layer2Aggregator:
    cfg = Layer2Config(
        use_secure_aggregation=secure,
        central_dp_epsilon=None,
        clip_norm=10.0,
        weighting="trust",
        **kw,
    )
    return Layer2Aggregator(cfg, generator=NoiseGenerator(seed=0, secure=False))


@pytest.mark.parametrize("secure", [False, True])
def test_a_basket_with_trust_zero_has_no_effect_on_the_global_model(secure: bool) -> None:
    models = _models()
    models[3] = dataclasses.replace(models[3], aggregate=np.full(D, 1e6))  # captured
    got = _layer2(secure, basket_trust={"b3": 0.0, "b1": 0.5}).aggregate(models).aggregate
    w = np.array([2, 3 * 0.5, 4])
    want = np.average([m.aggregate for m in models[:3]], axis=0, weights=w)
    np.testing.assert_allclose(got, want, rtol=1e-6 if secure else 1e-12, atol=1e-7)


def _agreement_by_hand(xs: list[np.ndarray]) -> list[float]:
    c = np.median(np.array(xs), axis=0)
    d = [float(np.sqrt(sum((a - b) ** 2 for a, b in zip(x, c, strict=True)))) for x in xs]
    m = (
        sorted(d)[len(d) // 2]
        if len(d) % 2
        else (sorted(d)[len(d) // 2 - 1] + sorted(d)[len(d) // 2]) / 2
    )
    return [1.0 if di <= m else m / di for di in d]


def test_agreement_is_the_distance_to_the_median_against_the_typical_one() -> None:
    xs = [m.aggregate for m in _models(5, seed=3)]
    xs[1] = xs[1] + 2.0
    np.testing.assert_allclose(agreement(xs), _agreement_by_hand(xs), rtol=1e-12)


def test_a_basket_far_from_the_consensus_loses_weight_round_after_round() -> None:
    layer = _layer2(reliability=True, reliability_decay=0.5)
    weights = []
    for t in range(5):
        models = _models(5, seed=t)
        models[0] = dataclasses.replace(models[0], aggregate=-4 * models[0].aggregate + 1.0)
        layer.aggregate(models)
        weights.append(layer.last_stats["weights"][0])
    assert all(a > b for a, b in itertools.pairwise(weights))
    assert weights[-1] < 0.25 * weights[0]
    assert (
        layer.reliability.score("b0")
        < 0.25
        < min(layer.reliability.score(f"b{i}") for i in (1, 2, 3, 4))
    )


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"reliability": True, "use_secure_aggregation": True}, ValueError, "in the clear"),
        ({"basket_trust": {"b": -1.0}}, ValueError, r"basket_trust\['b'\] must be"),
        ({"reliability_decay": 1.0}, ValueError, "reliability_decay"),
        ({"reliability": 1}, TypeError, "reliability must be a bool"),
        ({"basket_trust": {"b": 0.5}, "weighting": "size"}, ValueError, 'weighting="trust"'),
    ],
)
def test_bad_trust_settings_are_named(kw, error, match) -> None:
    base = {"use_secure_aggregation": False, "weighting": "trust"}
    with pytest.raises(error, match=match):
        Layer2Config(**{**base, **kw})


def _trusting_fed(store=None) -> HierarchicalFederation:
    cfg = FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=2),
        layer1=Layer1Config(aggregation_method="mean", min_updates=2, apply_local_noise=False),
        layer2=Layer2Config(
            use_secure_aggregation=False,
            central_dp_epsilon=None,
            min_baskets=3,
            clip_norm=1e3,
            weighting="trust",
            reliability=True,
        ),
        store=store,
    )
    fed = HierarchicalFederation(
        cfg,
        initial_model=np.zeros(D),
        clock=lambda: 0.0,
        generator=NoiseGenerator(seed=0, secure=False),
        seed=0,
    )
    if fed.manager.get_client("c0") is None:
        for i in range(6):
            fed.register_client(f"c{i}", "abc"[i // 2])
    return fed


def _trusting_round(fed: HierarchicalFederation, t: int) -> None:
    rng = np.random.default_rng([9, t])
    for i in range(6):
        u = rng.normal(size=D) + (40.0 if i < 2 else 0.0)  # basket of c0, c1 disagrees
        fed.submit_update(f"c{i}", u, base_version=fed.version)


def test_checkpoints_and_the_store_keep_the_reliability_scores(tmp_path) -> None:
    fed = _trusting_fed()
    for t in range(3):
        _trusting_round(fed, t)
    scores = dict(fed.layer2.reliability.scores)
    assert len(scores) == 3 and min(scores.values()) < 0.5
    fed.checkpoint(tmp_path / "ck.npz")
    again = _trusting_fed()
    again.restore(tmp_path / "ck.npz")
    assert again.layer2.reliability.scores == scores
    from hierfed import _checkpoint

    state, arrays = _checkpoint.read(tmp_path / "ck.npz")
    state["layer2_reliability"] = {"x": 2.0}
    _checkpoint.write(tmp_path / "bad.npz", state, arrays)
    with pytest.raises(ValueError, match="layer2_reliability"):
        _trusting_fed().restore(tmp_path / "bad.npz")
    stored = _trusting_fed(tmp_path / "fed.db")
    for t in range(3):
        _trusting_round(stored, t)
    resumed = _trusting_fed(tmp_path / "fed.db")
    assert resumed.version == 3 and resumed.layer2.reliability.scores == scores
