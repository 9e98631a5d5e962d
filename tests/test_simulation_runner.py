"""Simulation runner and study: determinism, layouts, setups, stragglers, DP calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hierfed.privacy import RDPAccountant
from hierfed.simulation.config import SimulationConfig
from hierfed.simulation.dpsgd import noise_multiplier_for_epsilon
from hierfed.simulation.runner import Simulation
from hierfed.simulation.study import plan, prepare, run_study

SMALL = dict(
    dataset="wine",
    clients=20,
    domains=2,
    clients_per_basket=10,
    rounds=4,
    batch_size=8,
    learning_rate=0.1,
)


def _sim(**kw: object) -> Simulation:
    return prepare(SimulationConfig(**{**SMALL, **kw}))  # type: ignore[arg-type]


def _curve(run: object) -> list[tuple[float, float, float]]:
    return [(m.accuracy, m.loss, m.epsilon) for m in run.rounds]  # type: ignore[attr-defined]


@pytest.mark.parametrize("setup", ["fedavg", "flat", "hierarchical"])
def test_two_runs_of_one_seed_are_identical(setup: str) -> None:
    a = _sim(stragglers=0.2).run(setup)
    b = _sim(stragglers=0.2).run(setup)
    assert _curve(a) == _curve(b)
    c = _sim(stragglers=0.2, seed=1).run(setup)
    assert _curve(a) != _curve(c)


def test_dp_run_with_secure_aggregation_repeats_up_to_its_rounding() -> None:
    # SecAgg's stochastic rounding takes no seed (by design); everything else is seeded
    a = _sim().run("hierarchical_dp")
    b = _sim().run("hierarchical_dp")
    assert [m.accuracy for m in a.rounds] == [m.accuracy for m in b.rounds]
    assert np.allclose([m.loss for m in a.rounds], [m.loss for m in b.rounds], rtol=1e-6)
    assert a.record_privacy_spent == b.record_privacy_spent and a.record_privacy_spent[0] > 0
    assert a.privacy_spent == (0.0, 0.0)  # no central noise unless asked for
    assert a.details["secure_aggregation"] and a.details["central_noise_multiplier"] is None
    assert a.details["record_noise_multiplier"] > 0


def test_placement_spread_and_concentrated() -> None:
    cfg = dict(dataset="digits", clients=75, domains=5, clients_per_basket=15, rounds=1)
    spread = _sim(**cfg).layout()
    assert [b["byzantine"] for b in spread.values()] == [3, 3, 3, 3, 3]
    conc = _sim(**cfg, placement="concentrated").layout()
    assert [b["byzantine"] for b in conc.values()] == [15, 0, 0, 0, 0]
    assert list(conc) == [f"domain{d}_basket_0" for d in range(5)]
    none = _sim(**cfg, attack="none")
    assert not none.byzantine


def test_baskets_follow_clients_per_basket_and_f_defaults() -> None:
    sim = _sim(dataset="digits", clients=40, domains=2, clients_per_basket=11, rule="bulyan")
    sizes = [len(m) for m in sim.baskets.values()]
    assert sizes == [11, 9, 11, 9]
    assert sim.f == (9 - 3) // 4 == 1
    assert sim.flat_f == 4  # f times the baskets, within (40 - 3) // 4
    with pytest.raises(ValueError, match="needs at least 11 clients per basket"):
        _sim(dataset="digits", clients=40, domains=2, clients_per_basket=11, rule="bulyan", f=2)


def test_hierarchical_run_goes_through_the_federation() -> None:
    run = _sim().run("hierarchical")
    assert run.details["global_rounds"] == 4
    assert run.details["basket_aggregations"] == 8
    assert run.details["rejected"] == {}
    assert run.final_accuracy > 0.8


def test_stragglers_deliver_late_and_nothing_is_rejected() -> None:
    run = _sim(stragglers=0.5, staleness="polynomial").run("hierarchical")
    assert run.details["rejected"] == {}
    assert run.details["global_rounds"] == 4


def test_attack_free_twin_has_no_byzantine_clients() -> None:
    sim = _sim()
    attacked, clean = sim.run("fedavg"), sim.run("fedavg", "none")
    assert attacked.details["byzantine_clients"] == 4 and clean.details["byzantine_clients"] == 0
    assert clean.final_accuracy > attacked.final_accuracy


def test_local_and_central_epsilon_calibrated_over_the_run() -> None:
    run = _sim(local_epsilon=30.0, central_epsilon=80.0, secure_aggregation=False).run(
        "hierarchical"
    )
    assert run.privacy_spent[0] == pytest.approx(80.0, rel=1e-3)
    assert run.local_privacy_spent[0] == pytest.approx(30.0, rel=1e-3)
    assert run.rounds[-1].epsilon == pytest.approx(80.0, rel=1e-3)
    assert run.rounds[0].epsilon < run.rounds[-1].epsilon


def test_noise_multiplier_for_epsilon_inverts_the_accountant() -> None:
    z = noise_multiplier_for_epsilon(8.0, 1e-5, 30)
    acc = RDPAccountant()
    acc.step(z, 1.0, 30)
    assert acc.get_epsilon(1e-5) == pytest.approx(8.0, rel=1e-3)
    acc = RDPAccountant()
    acc.step(z * 0.99, 1.0, 30)
    assert acc.get_epsilon(1e-5) > 8.0


def test_study_plan_and_results_document() -> None:
    cfg = SimulationConfig(**{**SMALL, "rounds": 2})  # type: ignore[arg-type]
    assert plan(cfg) == [
        (s, a)
        for s in ("fedavg", "flat", "hierarchical", "hierarchical_dp", "hierarchical_dpfedavg")
        for a in ("sign_flip", "none")
    ]
    assert plan(cfg.replace(attack="none")) == [
        (s, "none")
        for s in ("fedavg", "flat", "hierarchical", "hierarchical_dp", "hierarchical_dpfedavg")
    ]
    assert plan(cfg.replace(compare=False, setup="flat")) == [("flat", "sign_flip")]
    seen: list[tuple[str, str, int]] = []
    study = run_study(cfg, on_round=lambda label, attack, r: seen.append((label, attack, r)))
    assert len(seen) == 20 and seen[0] == ("FedAvg", "sign_flip", 1)
    doc = study.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["config"]["dataset"] == "wine" and len(doc["runs"]) == 10
    first = doc["runs"][0]
    assert set(first) >= {"final_accuracy", "best_accuracy", "rounds_to_target", "privacy_spent"}
    assert len(first["rounds"]) == 2 and set(first["rounds"][0]) >= {"accuracy", "epsilon"}
    assert doc["attack"] == {
        "name": "sign_flip",
        "strength": 4.0,
        "byzantine_clients": 4,
        "placement": "spread",
    }
    assert len(study.pairs()) == 5 and all(clean is not None for _, clean in study.pairs())


def test_worker_momentum_sends_the_average_of_the_rounds_updates() -> None:
    sim = _sim(worker_momentum=0.75, attack="none")
    theta = sim._init()
    sim._momentum = {}
    groups = {"all": list(range(sim.data.n_clients))}
    first, _ = sim._collect(0, theta, 0, "none", [], groups, {}, None)
    second, _ = sim._collect(1, theta, 1, "none", [], groups, {}, None)
    for c in (0, 5):
        g0, g1 = sim.client_update(theta, c, 0), sim.client_update(theta, c, 1)
        np.testing.assert_allclose(first[c][0], g0, rtol=1e-12)
        np.testing.assert_allclose(second[c][0], 0.75 * g0 + 0.25 * g1, rtol=1e-12)


def test_the_server_optimizer_steps_every_setup() -> None:
    for setup in ("fedavg", "hierarchical"):
        sgd = _sim(server_optimizer="sgd").run(setup)
        avgm = _sim(server_optimizer="fedavgm").run(setup)
        assert _curve(sgd)[0] == _curve(avgm)[0]  # m = delta at the first step
        assert _curve(sgd)[1:] != _curve(avgm)[1:]


def test_reliability_lowers_a_captured_baskets_weight() -> None:
    # three baskets (with two, the median is their mean and both agree with it alike)
    kw = dict(clients=30, domains=3, byzantine_fraction=1 / 3, placement="concentrated")
    sim = _sim(reliability=True, **kw)
    run = sim.run("hierarchical")
    assert run.label == "hierarchical trimmed_mean + reliability"
    captured = next(b for b, v in sim.layout().items() if v["byzantine"] == v["clients"])
    weights = [w[captured] for w in run.details["layer2_weights"]]
    assert weights == sorted(weights, reverse=True) and weights[-1] < weights[0]
    dp = sim.run("hierarchical_dp")  # SecAgg: the basket models are not in the clear
    assert "reliability" not in dp.label
    with pytest.raises(ValueError, match="reliability needs the basket models in the clear"):
        SimulationConfig(reliability=True, secure_aggregation=True)


def test_dpfedavg_setup_spends_the_client_epsilon_with_sampled_clients() -> None:
    sim = _sim(client_epsilon=5.0, client_sample_rate=0.5)
    run = sim.run("hierarchical_dpfedavg")
    z = noise_multiplier_for_epsilon(5.0, 1e-5, 4, 0.5)
    assert run.details["client_noise_multiplier"] == z
    acc = RDPAccountant()
    acc.step(z, 0.5, 4)  # every client a candidate of its basket's 4 rounds
    assert run.client_privacy_spent == (pytest.approx(acc.get_epsilon(1e-5), rel=1e-9), 1e-5)
    assert run.client_privacy_spent[0] <= 5.0
    assert run.privacy_spent == (0.0, 0.0) and run.record_privacy_spent == (0.0, 0.0)
    assert [r.client_epsilon for r in run.rounds] == sorted(r.client_epsilon for r in run.rounds)
    fed, _ = sim._federation("hierarchical_dpfedavg")
    dp = fed.config.layer1.dp_fedavg
    assert dp is not None and (dp.sample_rate, dp.initial_clip_norm) == (0.5, 0.5)
    assert dp.count_stddev == max(0.5 * 10 / 20, z)
    with pytest.raises(ValueError, match="client_sample_rate"):
        _sim(client_sample_rate=0.0)
    with pytest.raises(ValueError, match="client_epsilon or client_noise_multiplier"):
        _sim(client_epsilon=1.0, client_noise_multiplier=1.0)
