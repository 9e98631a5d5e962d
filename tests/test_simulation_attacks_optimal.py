"""Optimal IPM and ALIE (ByzFL's line search against the rule in use), Mimic and Inf: each
against its definition (Karimireddy et al. 2022's online heuristic transcribed for Mimic),
and as the runner sends them."""

from __future__ import annotations

import numpy as np
import pytest

import hierfed
from hierfed.simulation import attacks
from hierfed.simulation.config import SimulationConfig
from hierfed.simulation.runner import MIMIC_LEARNING_ROUNDS
from hierfed.simulation.study import prepare


def mean_rule(v: np.ndarray) -> np.ndarray:
    return v.mean(axis=0)


def test_line_search_expands_while_better_then_contracts() -> None:
    calls: list[float] = []

    def height(x: float) -> float:  # unimodal, maximum at 37
        return -((x - 37.0) ** 2)

    def peak(x: float) -> float:
        calls.append(x)
        return height(x)

    best = attacks.line_search(peak)
    assert len(calls) == 20 and calls[:4] == [0.0, 10.0, 30.0, 70.0]  # 10, then doubled steps
    assert best == max(calls, key=height)  # the best point it evaluated
    # by hand: 0, 10, 30 improve; 70 does not (step 40 -> 32); contraction tries 30 + 32,
    # 30 + 25.6, 30 + 20.48, 30 + 16.384, then 30 + 13.1072 = 43.1072 improves; it only steps
    # forward from there (ByzFL's contraction), by 10.48576 * 0.8^k, never better
    assert best == pytest.approx(43.1072)
    with pytest.raises(ValueError, match="ratio must be in"):
        attacks.line_search(peak, ratio=0.5)
    with pytest.raises(ValueError, match="evals must be"):
        attacks.line_search(peak, evals=0)


def test_optimal_ipm_against_the_mean_expands_every_step(rng) -> None:
    honest = rng.standard_normal((8, 5)) + 1.0
    # the mean's damage grows with tau: all 19 steps after the start improve, doubling
    tau = 10.0 * (2**19 - 1)
    np.testing.assert_allclose(attacks.optimal_ipm(honest, 2, mean_rule), -tau * honest.mean(0))
    want = honest.mean(0) + tau * honest.std(0, ddof=1)
    np.testing.assert_allclose(attacks.optimal_alie(honest, 2, mean_rule), want)


def test_optimal_attacks_beat_the_fixed_ones_against_the_rule(rng) -> None:
    honest = rng.standard_normal((12, 20)) + 0.5

    def median(v: np.ndarray) -> np.ndarray:
        return np.asarray(hierfed.median(v))

    f = 3
    found = attacks.attack_damage(median, honest, attacks.optimal_ipm(honest, f, median), f)
    for tau in (0.0, 0.1, 1.0, 2.0):  # IPM at fixed strengths, the paper's 0.1 among them
        assert found >= attacks.attack_damage(median, honest, attacks.ipm(honest, tau), f)
    found = attacks.attack_damage(median, honest, attacks.optimal_alie(honest, f, median), f)
    assert found >= attacks.attack_damage(median, honest, honest.mean(0), f)


def mimic_literal(steps: list[np.ndarray], z0: np.ndarray) -> np.ndarray:
    """The online estimate of the top principal direction, one step per round."""
    z, mu = z0.copy(), np.zeros_like(z0)
    for t, h in enumerate(steps):
        mu = (t * mu + h.mean(0)) / (t + 1)
        u = sum((x - mu) * np.dot(x - mu, z) for x in h)
        z = (t * z + u / np.linalg.norm(u)) / (t + 1)
        z = z / np.linalg.norm(z)
    return z


def test_mimic_learns_the_direction_of_largest_variance() -> None:
    gen = np.random.default_rng(3)
    spread = np.array([5.0, 0.3, 0.3, 0.3])
    rounds = [gen.standard_normal((9, 4)) * spread + 1.0 for _ in range(6)]
    target = attacks.MimicTarget(5, np.random.default_rng(11))
    chosen = [target(h) for h in rounds]
    assert chosen[:5] == [0] * 5  # learning: honest update 0
    z = mimic_literal(rounds[:5], np.random.default_rng(11).random(4))
    np.testing.assert_allclose(target.z, z, rtol=1e-12)
    assert abs(z[0]) > 0.95  # the high-variance coordinate
    assert chosen[5] == int(np.argmax(np.abs(rounds[5] @ z)))
    np.testing.assert_array_equal(attacks.mimic(rounds[5], 2), rounds[5][2])
    with pytest.raises(ValueError, match="index must be in"):
        attacks.mimic(rounds[5], 9)


def test_inf_is_plus_infinity() -> None:
    assert np.all(attacks.inf(7) == np.inf) and attacks.inf(7).shape == (7,)


SMALL = dict(dataset="wine", clients=20, domains=2, clients_per_basket=10, rounds=3)


def test_runner_refuses_inf_updates_flat_and_hierarchical() -> None:
    sim = prepare(SimulationConfig(**SMALL, attack="inf"))  # type: ignore[arg-type]
    for setup in ("fedavg", "flat", "hierarchical"):
        run = sim.run(setup)
        assert run.details["rejected"] == {"non_finite": 4 * 3}, setup  # 4 attackers, 3 rounds
        assert np.isfinite(run.final_accuracy)


def test_runner_optimal_attacks_search_against_the_basket_rule() -> None:
    sim = prepare(SimulationConfig(**SMALL, attack="optimal_ipm", rule="median"))  # type: ignore[arg-type]
    theta = sim.model.init(np.random.default_rng(0)) + 0.01
    delivered = {
        c: (sim.client_update(theta, c, 0), 0)
        for c in range(sim.data.n_clients)
        if c not in sim.byzantine
    }
    fed, _ = sim._federation("hierarchical")
    rule = sim._attackers_rule("hierarchical", fed, None)
    byz = sorted(sim.byzantine)
    out = sim.byzantine_updates(theta, 0, "optimal_ipm", byz, delivered, sim.baskets, rule)
    for members in sim.baskets.values():
        honest = np.array([delivered[c][0] for c in members if c not in sim.byzantine])
        bad = [c for c in members if c in sim.byzantine]
        want = attacks.optimal_ipm(honest, len(bad), lambda v: np.asarray(hierfed.median(v)))
        for c in bad:
            np.testing.assert_allclose(out[c], want)
    assert MIMIC_LEARNING_ROUNDS >= 1
    sim = prepare(SimulationConfig(**SMALL, attack="mimic"))  # type: ignore[arg-type]
    run = sim.run("hierarchical")
    assert np.isfinite(run.final_accuracy)
