"""Layer 1 and Layer 2 (spec/layers.md): the spec's examples, the math, the edge cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from hierfed import NoiseGenerator, aggregate, clip_by_l2_norm, trimmed_mean
from hierfed.layers import (
    BasketModel,
    CentralDPMechanism,
    GlobalMetaModel,
    Layer1Aggregator,
    Layer1Config,
    Layer2Aggregator,
    Layer2Config,
    SecureAggregator,
    simple_average,
    weighted_average,
)
from hierfed.privacy import RDPAccountant, analytic_gaussian_sigma

D = 64


def _gen(seed: int = 0) -> NoiseGenerator:
    return NoiseGenerator(seed=seed, secure=False)


def _updates(n: int, seed: int = 0, scale: float = 0.05) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.normal(0, scale, size=(n, D)))


def _model(basket: str, n: int, seed: int, scale: float = 0.05) -> BasketModel:
    agg = np.random.default_rng(seed).normal(0, scale, D)
    return BasketModel(basket, agg, n, 0, 0.0, 1.0)


# ---- the spec's examples, as written ---------------------------------------------------------


def test_spec_layer1_example() -> None:
    update_1, update_2, update_3, update_4 = _updates(4)
    aggregator = Layer1Aggregator(config=Layer1Config())

    basket_model = aggregator.aggregate(
        updates=[update_1, update_2, update_3, update_4],
        weights=[1.0, 1.0, 0.8, 1.0],  # Optional staleness weights
    )
    assert isinstance(basket_model, BasketModel)
    assert basket_model.n_contributors == 4
    assert basket_model.aggregate.shape == (D,)
    assert aggregator.last_stats["local_noise_added"] is True


def test_spec_layer2_example() -> None:
    model_a, model_b, model_c = (_model(b, 5, i) for i, b in enumerate("abc"))
    coordinator = SecureAggregator(config=Layer2Config())
    aggregator = Layer2Aggregator(config=Layer2Config())

    global_model = aggregator.aggregate(
        basket_models=[model_a, model_b, model_c],
        secure_agg_coordinator=coordinator,  # Optional
    )
    assert isinstance(global_model, GlobalMetaModel)
    assert global_model.n_baskets == 3 and global_model.n_clients_total == 15
    assert global_model.privacy_spent == (pytest.approx(1.0), 1e-5)
    assert aggregator.last_stats["secure_agg_simulated"] is True
    assert aggregator.last_stats["secure_agg_used"] is False  # one process holds the models


def test_spec_secure_aggregator_example() -> None:
    shares = [(f"basket_{i}", u) for i, u in enumerate(_updates(4))]
    secure_agg = SecureAggregator(config=Layer2Config())

    # Clients submit encrypted shares
    for client_id, share in shares:
        secure_agg.submit_share(client_id, share)

    # Reveal aggregate (individual inputs hidden)
    aggregate = secure_agg.finalize()
    want = np.sum([s for _, s in shares], axis=0)
    np.testing.assert_allclose(aggregate, want, atol=1e-6)


def test_spec_central_dp_example() -> None:
    aggregate = np.zeros(100_000)
    dp = CentralDPMechanism(epsilon=1.0, delta=1e-5, sensitivity=1.0)

    noised = dp.add_noise(aggregate)
    assert noised.std() == pytest.approx(analytic_gaussian_sigma(1.0, 1e-5), rel=0.02)


def test_spec_weight_schemes_examples() -> None:
    basket_models = [_model("a", 2, 0), _model("b", 6, 1)]
    # weight_by_size=True (default)
    weights = [model.n_contributors for model in basket_models]
    aggregate = weighted_average(basket_models, weights)
    np.testing.assert_allclose(
        aggregate, (2 * basket_models[0].aggregate + 6 * basket_models[1].aggregate) / 8
    )
    # weight_by_size=False
    aggregate = simple_average(basket_models)
    np.testing.assert_allclose(
        aggregate, (basket_models[0].aggregate + basket_models[1].aggregate) / 2
    )
    weights = [m.confidence for m in basket_models]
    assert weights == [1.0, 1.0]


def test_spec_confidence_example() -> None:
    n_contributors, expected_contributors = 3, 10
    confidence = min(1.0, n_contributors / expected_contributors)
    model = Layer1Aggregator(Layer1Config(apply_local_noise=False)).aggregate(
        _updates(3), expected_contributors=expected_contributors
    )
    assert model is not None and model.confidence == confidence


# ---- Layer 1 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("mean", {}),
        ("trimmed_mean", {}),
        ("median", {}),
        ("krum", {"f": 2}),
        ("multi_krum", {"f": 2}),
        ("bulyan", {"f": 2}),
        ("geometric_median", {}),
    ],
)
def test_layer1_equals_the_rule(method: str, params: dict) -> None:
    ups = _updates(11)
    w = np.linspace(0.5, 1.0, 11)
    cfg = Layer1Config(aggregation_method=method, method_params=params, apply_local_noise=False)
    layer1 = Layer1Aggregator(cfg)
    model = layer1.aggregate(ups, w, basket_id="b", round_id=7)
    assert model is not None and model.basket_id == "b" and model.round_id == 7
    rule_params = dict(params)
    if method == "trimmed_mean":
        rule_params["trim_ratio"] = 0.1
    if method != "krum":
        rule_params["weights"] = w
    want = aggregate(ups, method, **rule_params)
    np.testing.assert_array_equal(model.aggregate, want.aggregate)
    assert layer1.last_stats["outliers_removed"] == len(want.outliers_removed)
    assert layer1.last_stats["aggregation_method"] == method
    assert layer1.last_stats["weights_used"] is (method != "krum")


def test_layer1_centered_clipping_starts_from_the_previous_model() -> None:
    cfg = Layer1Config(
        aggregation_method="centered_clipping", method_params={"tau": 0.1}, apply_local_noise=False
    )
    layer1 = Layer1Aggregator(cfg)
    ups = _updates(6)
    first = layer1.aggregate(ups, basket_id="b")
    second = layer1.aggregate(ups, basket_id="b")
    assert first is not None and second is not None
    np.testing.assert_array_equal(
        first.aggregate, aggregate(ups, "centered_clipping", center=np.zeros(D), tau=0.1).aggregate
    )
    np.testing.assert_array_equal(
        second.aggregate,
        aggregate(ups, "centered_clipping", center=first.aggregate, tau=0.1).aggregate,
    )


def test_layer1_local_noise_is_calibrated_and_accounted() -> None:
    n, c = 20, 0.5
    ups = [u * 100 for u in _updates(n, 3)]  # far above the clip norm
    cfg = Layer1Config(local_clip_norm=c, local_epsilon=2.0, local_delta=1e-6)
    layer1 = Layer1Aggregator(cfg, generator=_gen(1))
    model = layer1.aggregate(ups, basket_id="b")
    assert model is not None
    sens = 2 * c / (n - 2 * 2)  # trimmed mean, k = floor(0.1 * 20) = 2 per side
    sigma = analytic_gaussian_sigma(2.0, 1e-6, sens)
    assert layer1.last_stats["local_sensitivity"] == pytest.approx(sens)
    assert layer1.last_stats["local_noise_sigma"] == pytest.approx(sigma)
    clean = trimmed_mean(clip_by_l2_norm(np.array(ups), c), 0.1)
    noise = model.aggregate - clean
    assert stats.kstest(noise / sigma, "norm").pvalue > 1e-3
    acc = RDPAccountant()
    acc.step(sigma / sens)
    assert layer1.privacy_spent("b") == (pytest.approx(acc.get_epsilon(1e-6)), 1e-6)
    layer1.aggregate(ups, basket_id="b")
    acc.step(sigma / sens)
    assert layer1.privacy_spent("b")[0] == pytest.approx(acc.get_epsilon(1e-6))
    assert layer1.privacy_spent("other") == (0.0, 0.0)


def test_layer1_edge_cases() -> None:
    layer1 = Layer1Aggregator(Layer1Config(apply_local_noise=False))
    assert layer1.aggregate([]) is None
    with pytest.raises(TypeError, match="per-layer"):
        layer1.aggregate([[np.zeros(2), np.zeros(3)]] * 3)
    krum = Layer1Aggregator(Layer1Config(aggregation_method="krum", method_params={"f": 2}))
    with pytest.raises(ValueError, match="at least 7"):
        krum.aggregate(_updates(6))
    single = layer1.aggregate(_updates(1), expected_contributors=4)
    assert single is not None and single.confidence == 0.25
    np.testing.assert_array_equal(single.aggregate, _updates(1)[0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trim_alpha": 0.5},
        {"min_updates": 0},
        {"aggregation_method": "nope"},
        {"pre": "mix"},
        {"local_clip_norm": 0.0},
        {"local_delta": 1.0},
        {"local_noise_multiplier": -1.0},
        {"expected_contributors": 0},
    ],
)
def test_layer1_config_errors(kwargs: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        Layer1Config(**kwargs)


# ---- Layer 2 --------------------------------------------------------------------------------


def _plain(**kw) -> Layer2Config:
    return Layer2Config(use_secure_aggregation=False, central_dp_epsilon=None, **kw)


@pytest.mark.parametrize(
    ("scheme", "weights"),
    [("size", [2, 3, 5]), ("uniform", [1, 1, 1]), ("confidence", [0.5, 1.0, 0.25])],
)
def test_layer2_weighting_and_clipping(scheme: str, weights: list[float]) -> None:
    models = [_model("a", 2, 0, 1.0), _model("b", 3, 1, 0.01), _model("c", 5, 2, 0.5)]
    for m, conf in zip(models, [0.5, 1.0, 0.25], strict=True):
        m.confidence = conf
    layer2 = Layer2Aggregator(_plain(weighting=scheme, clip_norm=1.0))
    out = layer2.aggregate(models)
    clipped = [m.aggregate * min(1.0, 1.0 / np.linalg.norm(m.aggregate)) for m in models]
    w = np.array(weights, float) / sum(weights)
    np.testing.assert_allclose(
        out.aggregate, sum(wi * x for wi, x in zip(w, clipped, strict=True)), rtol=1e-6
    )
    assert out.privacy_spent == (0.0, 0.0)
    assert layer2.last_stats["baskets_clipped"] == 2
    assert layer2.last_stats["secure_agg_used"] is False


def test_layer2_weight_by_size_false_is_uniform() -> None:
    models = [_model("a", 2, 0), _model("b", 8, 1)]
    out = Layer2Aggregator(_plain(weight_by_size=False)).aggregate(models)
    np.testing.assert_allclose(
        out.aggregate, (models[0].aggregate + models[1].aggregate) / 2, rtol=1e-6
    )


def test_layer2_secure_equals_plain_to_quantisation() -> None:
    models = [_model(b, i + 2, i) for i, b in enumerate("abcd")]
    plain = Layer2Aggregator(_plain()).aggregate(models)
    secure = Layer2Aggregator(Layer2Config(central_dp_epsilon=None))
    out = secure.aggregate(models)
    assert secure.last_stats["secure_agg_simulated"] is True
    np.testing.assert_allclose(out.aggregate, plain.aggregate, atol=1e-6)


def test_layer2_central_noise_and_composition() -> None:
    d = 200_000
    models = [BasketModel(b, np.zeros(d), n, 0, 0.0, 1.0) for b, n in (("a", 1), ("b", 3))]
    cfg = Layer2Config(
        use_secure_aggregation=False, central_dp_epsilon=0.5, central_dp_delta=1e-6, clip_norm=2.0
    )
    layer2 = Layer2Aggregator(cfg, generator=_gen(2))
    out = layer2.aggregate(models)
    sens = 2 * 2.0 * 0.75  # replace-one: 2 C max(w)
    sigma = analytic_gaussian_sigma(0.5, 1e-6, sens)
    assert layer2.last_stats["sensitivity"] == pytest.approx(sens)
    assert layer2.last_stats["noise_sigma"] == pytest.approx(sigma)
    assert out.aggregate.std() == pytest.approx(sigma, rel=0.01)
    rounds = [out.privacy_spent[0]]
    for _ in range(4):
        rounds.append(layer2.aggregate(models).privacy_spent[0])
    acc = RDPAccountant()
    acc.step(analytic_gaussian_sigma(0.5, 1e-6, 1.0), steps=5)
    assert rounds[0] == pytest.approx(0.5)
    assert rounds[-1] == pytest.approx(min(acc.get_epsilon(1e-6), 2.5))
    assert all(a < b for a, b in itertools.pairwise(rounds))
    assert layer2.last_stats["round_id"] == 4


def test_layer2_noise_multiplier_form() -> None:
    layer2 = Layer2Aggregator(
        Layer2Config(use_secure_aggregation=False, central_dp_noise_multiplier=1.1),
        generator=_gen(),
    )
    for _ in range(3):
        layer2.aggregate([_model("a", 1, 0)])
    acc = RDPAccountant()
    acc.step(1.1, steps=3)
    assert layer2.privacy_spent()[0] == pytest.approx(acc.get_epsilon(1e-5))


def test_layer2_single_basket_is_noised_basket_model() -> None:
    m = _model("only", 4, 0)
    out = Layer2Aggregator(Layer2Config(central_dp_epsilon=None)).aggregate([m])
    np.testing.assert_array_equal(out.aggregate, m.aggregate)  # no noise: the model itself
    noised = Layer2Aggregator(Layer2Config(), generator=_gen())
    res = noised.aggregate([m])
    assert noised.last_stats["secure_agg_used"] is False
    assert not np.array_equal(res.aggregate, m.aggregate)
    assert res.privacy_spent[0] == pytest.approx(1.0)


def test_layer2_skips_none_and_empty_models() -> None:
    m = _model("a", 4, 0)
    empty = BasketModel("e", np.ones(D), 0, 0, 0.0, 0.0)
    out = Layer2Aggregator(_plain()).aggregate([None, m, empty])
    assert out.n_baskets == 1
    np.testing.assert_array_equal(out.aggregate, m.aggregate)
    with pytest.raises(ValueError, match="no basket model"):
        Layer2Aggregator(_plain()).aggregate([None, empty])


def test_layer2_input_errors() -> None:
    layer2 = Layer2Aggregator(_plain())
    with pytest.raises(ValueError, match="differs"):
        layer2.aggregate([_model("a", 1, 0), BasketModel("b", np.zeros(3), 1, 0, 0.0, 1.0)])
    with pytest.raises(TypeError):
        layer2.aggregate([np.zeros(D)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="weight zero"):
        Layer2Aggregator(_plain(weighting="confidence")).aggregate(
            [BasketModel("a", np.zeros(D), 1, 0, 0.0, 0.0)]
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip_norm": 0.0},
        {"min_baskets": 0},
        {"central_dp_epsilon": -1.0},
        {"central_dp_delta": 2.0},
        {"weighting": "reputation"},
        {"use_secure_aggregation": 1},
    ],
)
def test_layer2_config_errors(kwargs: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        Layer2Config(**kwargs)


def test_extreme_staleness_lowers_confidence_weight() -> None:
    """Confidence weighting: an old basket model (low confidence) barely moves the result."""
    fresh, old = _model("fresh", 5, 0), _model("old", 5, 1)
    old.confidence = 0.9**50
    out = Layer2Aggregator(_plain(weighting="confidence")).aggregate([fresh, old])
    assert math.isclose(
        float(np.linalg.norm(out.aggregate - fresh.aggregate)),
        0.0,
        abs_tol=0.01 * float(np.linalg.norm(fresh.aggregate)),
    )


@pytest.mark.parametrize("method", ["krum", "mean", "median"])
def test_layer1_never_touches_the_callers_updates(method: str) -> None:
    ups = np.stack(_updates(9))
    before = ups.copy()
    params = {"f": 1} if method == "krum" else {}
    layer1 = Layer1Aggregator(
        Layer1Config(aggregation_method=method, method_params=params), generator=_gen()
    )
    model = layer1.aggregate(ups)
    np.testing.assert_array_equal(ups, before)
    assert model is not None and not np.shares_memory(model.aggregate, ups)


def test_layer2_robust_rule_outvotes_a_captured_basket() -> None:
    honest = [_model(b, 5, i, 0.05) for i, b in enumerate("abcd")]
    captured = BasketModel("evil", -50 * honest[0].aggregate, 5, 0, 0.0, 1.0)
    cfg = _plain(robust_method="median", clip_norm=10.0)
    out = Layer2Aggregator(cfg).aggregate([*honest, captured])
    clipped = clip_by_l2_norm(np.stack([m.aggregate for m in [*honest, captured]]), 10.0)
    np.testing.assert_allclose(out.aggregate, np.median(clipped, axis=0))
    mean_out = Layer2Aggregator(_plain(clip_norm=10.0)).aggregate([*honest, captured])
    honest_mean = np.mean([m.aggregate for m in honest], axis=0)
    assert (
        np.linalg.norm(out.aggregate - honest_mean)
        < np.linalg.norm(mean_out.aggregate - honest_mean) / 5
    )


def test_layer2_robust_rule_noise_uses_its_sensitivity() -> None:
    cfg = Layer2Config(
        use_secure_aggregation=False,
        robust_method="trimmed_mean",
        robust_params={"trim_ratio": 0.2},
        central_dp_epsilon=1.0,
        clip_norm=1.0,
    )
    layer2 = Layer2Aggregator(cfg, generator=_gen())
    layer2.aggregate([_model(b, 3, i) for i, b in enumerate("abcde")])
    assert layer2.last_stats["sensitivity"] == pytest.approx(2 * 1.0 / (5 - 2))
    assert layer2.last_stats["robust_method"] == "trimmed_mean"
    with pytest.raises(ValueError, match="secure aggregation"):
        Layer2Config(robust_method="median")
