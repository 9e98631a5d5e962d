"""Simulation attacks: each one's math against its paper's formula, and as the runner sends it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from hierfed.simulation import attacks
from hierfed.simulation.config import SimulationConfig
from hierfed.simulation.datasets import load_raw, make_federated
from hierfed.simulation.models import local_sgd
from hierfed.simulation.runner import Simulation


@pytest.mark.parametrize(("n", "f"), [(15, 3), (75, 15), (50, 24), (10, 1), (11, 2), (7, 3)])
def test_alie_z_is_baruch_et_al_formula(n: int, f: int) -> None:
    s = math.floor(n / 2 + 1) - f
    expected = norm.ppf((n - s) / n)
    assert attacks.alie_z(n, f) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_alie_z_known_values() -> None:
    # n = 15, f = 3: s = 8 - 3 = 5, z = Phi^-1(10/15); n = 50, f = 24: s = 2, z = Phi^-1(0.96)
    assert attacks.alie_z(15, 3) == pytest.approx(0.430727, abs=1e-6)
    assert attacks.alie_z(50, 24) == pytest.approx(1.750686, abs=1e-6)


def test_alie_z_with_attacker_majority_takes_s_as_one() -> None:
    assert attacks.alie_z(10, 8) == pytest.approx(norm.ppf(9 / 10))


@pytest.mark.parametrize(("n", "f"), [(1, 1), (5, 0), (5, 5)])
def test_alie_z_rejects_bad_counts(n: int, f: int) -> None:
    with pytest.raises(ValueError, match="alie_z"):
        attacks.alie_z(n, f)


def test_alie_is_mean_minus_z_std() -> None:
    rng = np.random.default_rng(1)
    honest = rng.normal(size=(12, 7))
    out = attacks.alie(honest, n=15, f=3)
    z = norm.ppf(10 / 15)
    assert np.allclose(out, honest.mean(axis=0) - z * honest.std(axis=0, ddof=1))
    assert np.allclose(
        attacks.alie(honest, 15, 3, z=2.0), honest.mean(0) - 2 * honest.std(0, ddof=1)
    )


def test_ipm_is_minus_epsilon_times_honest_mean() -> None:
    honest = np.arange(12.0).reshape(4, 3)
    assert np.allclose(attacks.ipm(honest, 0.1), -0.1 * honest.mean(axis=0))
    assert np.allclose(attacks.ipm(honest, 2.0), -2.0 * np.array([4.5, 5.5, 6.5]))


def test_sign_flip_is_minus_scale_times_update() -> None:
    g = np.array([1.0, -2.0, 0.5])
    assert np.array_equal(attacks.sign_flip(g, 4.0), np.array([-4.0, 8.0, -2.0]))


def test_gaussian_has_the_given_spread_and_a_seed() -> None:
    v = attacks.gaussian(200_000, 1.5, np.random.default_rng(3))
    assert abs(v.mean()) < 0.02 and v.std() == pytest.approx(1.5, rel=0.01)
    again = attacks.gaussian(200_000, 1.5, np.random.default_rng(3))
    assert np.array_equal(v, again)


def test_label_flip_maps_c_to_last_minus_c() -> None:
    y = np.array([0, 1, 2, 9, 5])
    assert attacks.flip_labels(y, 10).tolist() == [9, 8, 7, 0, 4]
    assert attacks.flip_labels(attacks.flip_labels(y, 10), 10).tolist() == y.tolist()


def test_attacks_need_honest_updates() -> None:
    with pytest.raises(ValueError, match="honest"):
        attacks.alie(np.zeros((1, 3)), 5, 1)
    with pytest.raises(ValueError, match="honest"):
        attacks.ipm(np.zeros(3), 0.1)


# ---- as the runner sends them ----------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Simulation:
    cfg = SimulationConfig(clients=20, domains=2, clients_per_basket=10, rounds=2, seed=5)
    raw = load_raw("wine")
    data = make_federated(
        raw,
        clients=20,
        domains=2,
        dirichlet_alpha=1.0,
        domain_shift=0.5,
        test_fraction=0.25,
        seed=5,
    )
    return Simulation(cfg, data)


def _honest(sim: Simulation, theta: np.ndarray) -> dict[int, tuple[np.ndarray, int]]:
    return {
        c: (sim.client_update(theta, c, 0), 0)
        for c in range(sim.data.n_clients)
        if c not in sim.byzantine
    }


def test_runner_spreads_byzantine_clients_over_baskets(sim: Simulation) -> None:
    assert len(sim.byzantine) == 4
    assert [v["byzantine"] for v in sim.layout().values()] == [2, 2]


@pytest.mark.parametrize("attack", ["alie", "ipm"])
def test_runner_alie_and_ipm_use_the_attackers_basket(sim: Simulation, attack: str) -> None:
    theta = sim.model.init(np.random.default_rng(0)) + 0.01
    delivered = _honest(sim, theta)
    byz = sorted(sim.byzantine)
    out = sim.byzantine_updates(theta, 0, attack, byz, delivered, sim.baskets)
    for members in sim.baskets.values():
        honest = np.array([delivered[c][0] for c in members if c not in sim.byzantine])
        bad = [c for c in members if c in sim.byzantine]
        n = len(honest) + len(bad)
        want = (
            honest.mean(0) - attacks.alie_z(n, len(bad)) * honest.std(0, ddof=1)
            if attack == "alie"
            else -0.1 * honest.mean(0)
        )
        for c in bad:
            assert np.allclose(out[c], want)


def test_runner_sign_flip_and_label_flip(sim: Simulation) -> None:
    theta = np.zeros(sim.model.n_params)
    byz = sorted(sim.byzantine)
    flipped = sim.byzantine_updates(theta, 1, "sign_flip", byz, {}, sim.baskets)
    poisoned = sim.byzantine_updates(theta, 1, "label_flip", byz, {}, sim.baskets)
    cfg = sim.config
    for c in byz:
        assert np.allclose(flipped[c], -4.0 * sim.client_update(theta, c, 1))
        y = sim.data.client_y[c]
        expected = local_sgd(
            sim.model,
            theta,
            sim.data.client_x[c],
            sim.data.n_classes - 1 - y,
            epochs=cfg.local_epochs,
            batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            clip_norm=cfg.clip_norm,
            rng=np.random.default_rng([cfg.seed, 12, 1, c]),
        )
        assert np.allclose(poisoned[c], expected)


def test_runner_gaussian_is_seeded_noise(sim: Simulation) -> None:
    theta = np.zeros(sim.model.n_params)
    byz = sorted(sim.byzantine)
    a = sim.byzantine_updates(theta, 0, "gaussian", byz, {}, sim.baskets)
    b = sim.byzantine_updates(theta, 0, "gaussian", byz, {}, sim.baskets)
    for c in byz:
        assert np.array_equal(a[c], b[c])
        assert a[c].shape == (sim.model.n_params,)
    assert not np.array_equal(a[byz[0]], a[byz[1]])
