"""Record-level DP-SGD in the simulation: per-record gradients, clipping, sampling, noise,
and its epsilon against the subsampled Gaussian's RDP computed apart (mpmath) and by
dp_accounting."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

from hierfed.privacy.accountant import compute_rdp, rdp_to_epsilon
from hierfed.simulation import SimulationConfig
from hierfed.simulation.dpsgd import (
    ORDERS,
    dp_sgd,
    epsilon_spent,
    noise_multiplier_for_epsilon,
    steps_per_epoch,
)
from hierfed.simulation.models import MLP, LogisticRegression
from hierfed.simulation.runner import Simulation
from hierfed.simulation.study import prepare


def _data(n: int = 9, p: int = 5, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, p)), rng.integers(0, c, size=n)


@pytest.mark.parametrize("model", [LogisticRegression(5, 3), MLP(5, 4, 3)])
def test_per_example_grads_are_each_records_own_gradient(model) -> None:
    x, y = _data()
    theta = np.random.default_rng(1).normal(size=model.n_params)
    grads = model.per_example_grads(theta, x, y)
    for i in range(y.size):
        _, g = model.loss_grad(theta, x[i : i + 1], y[i : i + 1])
        np.testing.assert_allclose(grads[i], g, rtol=1e-12, atol=1e-15)


def test_without_noise_or_clipping_or_sampling_it_is_full_batch_gradient_descent() -> None:
    model = LogisticRegression(5, 3)
    x, y = _data()
    theta = np.zeros(model.n_params)
    got = dp_sgd(
        model,
        theta,
        x,
        y,
        steps=3,
        sample_rate=1.0,
        learning_rate=0.5,
        record_clip_norm=1e9,
        noise_multiplier=0.0,
        rng=np.random.default_rng(0),
    )
    w = theta.copy()
    for _ in range(3):
        w -= 0.5 * model.loss_grad(w, x, y)[1]
    np.testing.assert_allclose(got, w - theta, rtol=1e-12, atol=1e-15)


def test_one_record_moves_a_step_by_at_most_its_clip_norm() -> None:
    model = LogisticRegression(5, 3)
    x, y = _data()
    far = x.copy()
    far[0] *= 1e6  # one record replaced by an extreme one
    theta = np.zeros(model.n_params)
    kw = dict(
        steps=1, sample_rate=1.0, learning_rate=1.0, record_clip_norm=0.3, noise_multiplier=0.0
    )
    a = dp_sgd(model, theta, x, y, rng=np.random.default_rng(0), **kw)
    b = dp_sgd(model, theta, far, y, rng=np.random.default_rng(0), **kw)
    # the sum changes by at most 2 C (replace one), divided by the expected batch size
    assert 0 < np.linalg.norm(a - b) <= 2 * 0.3 / y.size * (1 + 1e-12)
    kw["record_clip_norm"] = 1e9  # unclipped, the extreme record moves it far more
    c = dp_sgd(model, theta, far, y, rng=np.random.default_rng(0), **kw)
    assert np.linalg.norm(a - c) > 100 * 2 * 0.3 / y.size


def test_poisson_sampling_and_noise_have_their_rates() -> None:
    model = LogisticRegression(5, 3)
    x, y = _data(n=4000)
    theta = np.zeros(model.n_params)
    # zero learning from data (clip 0 would be invalid; a tiny clip makes the data negligible)
    kw = dict(steps=1, learning_rate=1.0, record_clip_norm=1e-12, noise_multiplier=1e12)
    noise = dp_sgd(model, theta, x, y, sample_rate=0.5, rng=np.random.default_rng(3), **kw)
    # noise std z C / (q n) per coordinate
    assert np.std(noise) == pytest.approx(1e12 * 1e-12 / (0.5 * 4000), rel=0.35)
    counts = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        counts.append(int((rng.random(4000) < 0.25).sum()))  # what dp_sgd draws first
    assert np.mean(counts) == pytest.approx(1000, rel=0.01)
    assert steps_per_epoch(0.25) == 4 and steps_per_epoch(0.3) == 4


def _mp_epsilon(z: float, q: float, steps: int, delta: float, alpha: int) -> float:
    """Mironov et al. 2019's integer-order sampled Gaussian RDP, summed in mpmath, and
    Balle et al. 2020's conversion at order ``alpha``."""
    mpmath.mp.dps = 40
    a = mpmath.fsum(
        mpmath.binomial(alpha, k)
        * (1 - mpmath.mpf(q)) ** (alpha - k)
        * mpmath.mpf(q) ** k
        * mpmath.exp((k * k - k) / (2 * mpmath.mpf(z) ** 2))
        for k in range(alpha + 1)
    )
    rdp = steps * mpmath.log(a) / (alpha - 1)
    conv = mpmath.log1p(-mpmath.mpf(1) / alpha) - (mpmath.log(delta) + mpmath.log(alpha)) / (
        alpha - 1
    )
    return float(rdp + conv)


@pytest.mark.parametrize(("z", "q", "steps"), [(1.0, 0.25, 120), (2.0, 0.05, 1000)])
def test_epsilon_is_the_sampled_gaussians_rdp(z: float, q: float, steps: int) -> None:
    got = epsilon_spent(z, q, steps, 1e-5)
    rdp = compute_rdp(z, q, steps, ORDERS)
    best = int(rdp_to_epsilon(ORDERS, rdp, 1e-5)[1])
    near = {
        _mp_epsilon(z, q, steps, 1e-5, a)
        for a in (2, max(best - 1, 2), best, min(best + 1, 256), 256)
    }
    assert got == pytest.approx(_mp_epsilon(z, q, steps, 1e-5, best), rel=1e-9)
    assert min(near) == pytest.approx(got, rel=1e-9)  # the least over the orders


def test_epsilon_agrees_with_dp_accounting() -> None:
    dpa = pytest.importorskip("dp_accounting")
    event = dpa.SelfComposedDpEvent(dpa.PoissonSampledDpEvent(0.25, dpa.GaussianDpEvent(1.3)), 120)
    got = epsilon_spent(1.3, 0.25, 120, 1e-5)
    best = rdp_to_epsilon(ORDERS, compute_rdp(1.3, 0.25, 120, ORDERS), 1e-5)[1]
    acc = dpa.rdp.RdpAccountant([best - 1, best, best + 1])  # theirs at the orders that matter
    acc.compose(event)
    assert got == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)


def test_the_noise_for_an_epsilon_reaches_it() -> None:
    z = noise_multiplier_for_epsilon(8.0, 1e-5, 120, 0.25)
    assert epsilon_spent(z, 0.25, 120, 1e-5) <= 8.0 < epsilon_spent(z * 0.999, 0.25, 120, 1e-5)


def _sim(**kw) -> Simulation:
    cfg = SimulationConfig(
        dataset="digits", clients=20, domains=2, clients_per_basket=10, rounds=3, **kw
    )
    return prepare(cfg)


def test_the_dp_run_spends_its_record_epsilon_and_says_so() -> None:
    sim = _sim(record_epsilon=4.0)
    run = sim.run("hierarchical_dp")
    assert run.label == "hierarchical trimmed_mean + DP-SGD + SecAgg"
    steps = 3 * steps_per_epoch(0.25)
    z = run.details["record_noise_multiplier"]
    assert run.record_privacy_spent == (epsilon_spent(z, 0.25, steps, 1e-5), 1e-5)
    assert 3.99 < run.record_privacy_spent[0] <= 4.0
    assert [m.record_epsilon for m in run.rounds] == sorted(m.record_epsilon for m in run.rounds)
    assert run.privacy_spent == (0.0, 0.0)
    assert sim.run("hierarchical").label == "hierarchical trimmed_mean + DP-SGD"
    plain = _sim().run("hierarchical")
    assert plain.record_privacy_spent == (0.0, 0.0) and "DP-SGD" not in plain.label


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"record_epsilon": 1.0, "record_noise_multiplier": 1.0}, "not both"),
        ({"record_sample_rate": 0.0}, r"record_sample_rate must be a number in \(0.0, 1.0\]"),
        ({"record_clip_norm": -1.0}, "record_clip_norm"),
        ({"record_delta": 0.7}, "record_delta"),
        ({"compare": False, "setup": "flat", "record_epsilon": 3.0}, "need a hierarchical"),
    ],
)
def test_bad_record_options_are_named(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        SimulationConfig(**kw)
