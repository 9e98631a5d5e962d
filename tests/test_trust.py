"""Trust weights: Layer 1 multiplies each client's trust score into its update's weight."""

from __future__ import annotations

import numpy as np
import pytest

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config

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
