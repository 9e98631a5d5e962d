"""Local DP is accounted per client (across splits, leaving and restores), and centered
clipping's local noise stays bounded round after round."""

from __future__ import annotations

import numpy as np
import pytest

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config
from hierfed.privacy import RDPAccountant

Z, DELTA = 2.0, 1e-5


def _fed(layer1: Layer1Config, max_clients: int = 4) -> HierarchicalFederation:
    cfg = FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=max_clients),
        layer1=layer1,
        layer2=Layer2Config(
            use_secure_aggregation=False, central_dp_epsilon=None, min_baskets=1, clip_norm=1e6
        ),
    )
    return HierarchicalFederation(
        cfg, clock=lambda: 1.0, generator=NoiseGenerator(seed=3, secure=False), seed=0
    )


def _composed(releases: int) -> float:
    acc = RDPAccountant()
    for _ in range(releases):
        acc.step(Z)
    return acc.get_epsilon(DELTA)


def _round(fed: HierarchicalFederation, clients: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for c in clients:
        fed.submit_update(c, rng.normal(size=6) * 0.1, fed.version)
    fed.flush()


def test_local_epsilon_follows_the_client_across_split_leave_and_restore(tmp_path) -> None:
    layer1 = Layer1Config(min_updates=3, local_noise_multiplier=Z, local_delta=DELTA)
    fed = _fed(layer1)
    first = ["c0", "c1", "c2"]
    for c in first:
        fed.register_client(c, "x")
    old_basket = fed.manager.get_client_basket("c0")
    for r in range(10):
        _round(fed, first, r)
    fed.register_client("c3", "x")
    halves = fed.manager.split_basket(old_basket)  # and a disband: every client moves
    moved = fed.manager.disband_basket(fed.manager.get_client_basket("c0"))
    assert old_basket not in {fed.manager.get_client_basket(c) for c in first}
    assert halves and moved
    fed.register_client("c4", "x")
    _round(fed, [*first, "c3", "c4"], 10)
    new_basket = fed.manager.get_client_basket("c0")
    basket_eps = fed.layer1.privacy_spent(new_basket)[0]
    eps, delta = fed.client_privacy_spent("c0")
    assert delta == DELTA and eps == pytest.approx(_composed(11), rel=1e-9)
    # the basket c0 is in now has made two releases (c0 took part in one of them)
    assert basket_eps == pytest.approx(_composed(2), rel=1e-9) and eps > 2.5 * basket_eps
    assert fed.client_privacy_spent("c3")[0] == pytest.approx(_composed(1), rel=1e-9)
    assert fed.client_privacy_spent("nobody") == (0.0, 0.0)
    assert fed.max_client_privacy_spent()[0] == pytest.approx(eps)
    assert fed.get_stats()["max_client_privacy_spent"][0] == pytest.approx(eps)
    fed.remove_client("c1")  # leaving and coming back does not reset the account
    fed.register_client("c1", "x")
    assert fed.client_privacy_spent("c1")[0] == pytest.approx(_composed(11), rel=1e-9)
    fed.checkpoint(tmp_path / "f.npz")
    other = _fed(layer1)
    other.restore(tmp_path / "f.npz")
    for c in ("c0", "c1", "c3"):
        assert other.client_privacy_spent(c) == fed.client_privacy_spent(c)


def test_centered_clipping_local_noise_stays_bounded_over_500_rounds() -> None:
    n, tau = 5, 0.5
    layer1 = Layer1Config(
        aggregation_method="centered_clipping",
        method_params={"tau": tau},
        min_updates=n,
        local_noise_multiplier=Z,
        local_clip_norm=1.0,
    )
    fed = _fed(layer1, max_clients=10)
    clients = [f"c{i}" for i in range(n)]
    for c in clients:
        fed.register_client(c, "x")
    rng = np.random.default_rng(0)
    sigmas = []
    for _ in range(500):
        for c in clients:
            fed.submit_update(c, rng.normal(size=4) * 0.3, fed.version)
        sigmas.append(fed.get_stats()["last_layer1"]["local_noise_sigma"])
    assert fed.version == 500
    # the noised center is fed back, but the sensitivity no longer grows with it
    assert sigmas == [pytest.approx(Z * 2 * tau / n)] * 500
    assert fed.model is not None and np.isfinite(fed.model).all()
