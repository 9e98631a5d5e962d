"""DP-FedAvg with adaptive clipping (hierfed.privacy.dp_fedavg) against a literal transcription
of Andrew et al. 2021's Algorithm 1, the noise scales it promises, the quantile it converges
to, the accountant of dp_accounting (when installed) and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hierfed.privacy import DPFedAvg, DPFedAvgConfig, NoiseGenerator, RDPAccountant
from hierfed.privacy.dp_fedavg import model_noise_multiplier, next_clip_norm, poisson_sample


def gen(seed: int = 3) -> NoiseGenerator:
    return NoiseGenerator(seed, secure=False)


def algorithm_1(updates, sampled, clip, gamma, eta, m):
    """Andrew et al. 2021, Algorithm 1, one round without noise, element by element: clip
    each sampled update, sum, centred bits b_i - 1/2, fixed denominator m."""
    total = np.zeros(updates.shape[1])
    bits = 0.0
    for i in sampled:
        delta = updates[i]
        norm = math.sqrt(sum(float(v) ** 2 for v in delta))
        bits += (1.0 if norm <= clip else 0.0) - 0.5
        total += delta * min(1.0, clip / norm) if norm > 0 else delta
    fraction = bits / m + 0.5
    return total / m, clip * math.exp(-eta * (fraction - gamma)), fraction


def test_noise_off_rounds_match_the_transcription(rng):
    cfg = DPFedAvgConfig(
        0.0, sample_rate=0.4, initial_clip_norm=0.5, target_quantile=0.3, count_stddev=0.0
    )
    dp = DPFedAvg(cfg, generator=gen())
    clip = 0.5
    for _ in range(12):
        x = rng.standard_normal((25, 6)) * rng.uniform(0.05, 2.0, (25, 1))
        r = dp.aggregate(x, population=40)
        want, clip_next, fraction = algorithm_1(x, r.sampled, clip, 0.3, 0.2, 0.4 * 40)
        np.testing.assert_allclose(r.aggregate, want, rtol=1e-9, atol=1e-15)
        assert r.clip_norm == clip
        assert r.unclipped_fraction == pytest.approx(fraction, abs=1e-12)
        assert r.next_clip_norm == pytest.approx(clip_next, rel=1e-12)
        clip = clip_next
    assert dp.clip_norm == pytest.approx(clip, rel=1e-12)
    assert dp.rounds == 12


def test_sampling_is_poisson_at_the_rate():
    first = DPFedAvg(DPFedAvgConfig(1.0, sample_rate=0.3, count_stddev=1.0), generator=gen(9))
    r = first.aggregate(np.ones((50, 2)))
    np.testing.assert_array_equal(r.sampled, np.flatnonzero(poisson_sample(50, 0.3, gen(9))))
    draws = np.stack([poisson_sample(400, 0.3, gen(s)) for s in range(50)])
    assert abs(draws.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / draws.size)
    sizes = draws.sum(axis=1)
    assert sizes.std() == pytest.approx(math.sqrt(400 * 0.3 * 0.7), rel=0.3)  # not fixed-size
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.4


def test_clip_norm_converges_to_the_target_quantile(rng):
    norms = rng.lognormal(0.0, 0.7, 200)
    x = rng.standard_normal((200, 8))
    x *= (norms / np.linalg.norm(x, axis=1))[:, None]
    for gamma in (0.2, 0.5, 0.9):
        cfg = DPFedAvgConfig(0.0, count_stddev=0.0, target_quantile=gamma, initial_clip_norm=0.1)
        dp = DPFedAvg(cfg, generator=gen())
        for _ in range(100):
            dp.aggregate(x)
        lo, hi = np.quantile(norms, [gamma - 0.02, gamma + 0.02])
        assert lo <= dp.clip_norm <= hi, (gamma, dp.clip_norm, lo, hi)


def test_noise_scales_are_those_of_one_gaussian_mechanism():
    z, m = 1.2, 20
    cfg = DPFedAvgConfig(z, initial_clip_norm=0.7, clip_learning_rate=0.5)
    z_model = model_noise_multiplier(z, m / 20)
    assert (z_model**-2 + (2 * m / 20) ** -2) ** -0.5 == pytest.approx(z)
    dp = DPFedAvg(cfg, generator=gen())
    steps, noise = [], []
    for _ in range(300):
        c = dp.clip_norm
        r = dp.aggregate(np.zeros((m, 4000)))
        noise.append(r.aggregate.std() * m / (z_model * c))
        # all updates within C: b~ = 1 + sigma_b N(0,1) / m, and log(C'/C) = -eta (b~ - gamma)
        steps.append(math.log(r.next_clip_norm / c) / -0.5 - (1 - 0.5))
    assert np.mean(noise) == pytest.approx(1.0, rel=0.01)
    assert np.std(steps) == pytest.approx((m / 20) / m, rel=0.15)
    assert abs(np.mean(steps)) < 4 * (m / 20) / m / math.sqrt(300)


def test_accountant_composes_rounds_as_the_subsampled_gaussian():
    cfg = DPFedAvgConfig(1.1, sample_rate=0.05, count_stddev=1.0)
    dp = DPFedAvg(cfg, generator=gen(), unit="client")
    for _ in range(30):
        dp.aggregate(np.ones((10, 3)), population=200)
    eps, delta = dp.privacy_spent()
    ref = RDPAccountant()
    ref.step(1.1, 0.05, 30)
    assert eps == pytest.approx(ref.get_epsilon(1e-5), rel=1e-12)
    assert delta == 1e-5
    assert 0 < eps < 10


def test_epsilon_matches_dp_accounting():
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting import rdp

    dp = DPFedAvg(DPFedAvgConfig(1.0, sample_rate=0.1, count_stddev=5.0), generator=gen())
    for _ in range(40):
        dp.aggregate(np.ones((3, 2)), population=100)
    theirs = rdp.RdpAccountant()
    event = dpa.PoissonSampledDpEvent(0.1, dpa.GaussianDpEvent(1.0))
    theirs.compose(dpa.SelfComposedDpEvent(event, 40))
    assert dp.privacy_spent(1e-5)[0] == pytest.approx(theirs.get_epsilon(1e-5), rel=0.02)


def test_fixed_clipping_keeps_the_norm_and_spends_the_whole_multiplier():
    cfg = DPFedAvgConfig(0.8, adaptive=False, initial_clip_norm=2.0)
    r = DPFedAvg(cfg, generator=gen()).aggregate(np.ones((5, 3)))
    assert (r.clip_norm, r.next_clip_norm, r.model_sigma, r.count_sigma) == (2.0, 2.0, 1.6, 0.0)
    assert math.isnan(r.unclipped_fraction)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"target_quantile": 0.0}, "target_quantile"),
        ({"target_quantile": 1.0}, "target_quantile"),
        ({"clip_learning_rate": 0.0}, "clip_learning_rate"),
        ({"clip_learning_rate": -1.0}, "clip_learning_rate"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"count_stddev": 0.5}, "count_stddev"),  # z = 1 needs count_stddev > 0.5
        ({"population": 10}, "count_stddev"),  # default m / 20 = 0.5: too small for z = 1
        ({"initial_clip_norm": 0.0}, "initial_clip_norm"),
        ({"population": 0}, "population"),
        ({"delta": 1.0}, "delta"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DPFedAvgConfig(1.0, **kwargs)


def test_bad_input_leaves_the_state_as_before():
    dp = DPFedAvg(DPFedAvgConfig(1.0, sample_rate=0.01, count_stddev=2.0), generator=gen())
    dp.aggregate(np.ones((4, 3)))
    before = (dp.clip_norm, dp.rounds, dp.accountant.rdp.tolist())
    bad = np.ones((4, 3))
    bad[2, 1] = np.nan
    # at q = 0.01 update 2 is most likely not sampled: it is refused all the same
    with pytest.raises(ValueError, match=r"updates\[2\] holds NaN"):
        dp.aggregate(bad)
    with pytest.raises(ValueError, match="population"):
        dp.aggregate(np.ones((4, 3)), population=3)
    with pytest.raises(ValueError, match=r"updates\[1\] is \(2,\)"):
        dp.aggregate([np.ones(3), np.ones(2)])
    with pytest.raises(TypeError, match="float"):
        dp.aggregate(np.ones((4, 3), int))
    with pytest.raises(ValueError, match="at least one"):
        dp.aggregate(np.ones((0, 3)))
    with pytest.raises(ValueError, match="count_stddev"):  # default m / 20 too small
        DPFedAvg(DPFedAvgConfig(1.0), generator=gen()).aggregate(np.ones((4, 3)))
    assert (dp.clip_norm, dp.rounds, dp.accountant.rdp.tolist()) == before
    with pytest.raises(ValueError, match="unit"):
        DPFedAvg(DPFedAvgConfig(1.0, count_stddev=2.0), unit="patient")
    with pytest.raises(ValueError, match="clip_norm"):
        next_clip_norm(-1.0, 0.5, 0.5, 0.2)


def test_state_round_trips_and_refuses_bad_state():
    cfg = DPFedAvgConfig(1.0, count_stddev=2.0)
    dp = DPFedAvg(cfg, generator=gen())
    for _ in range(5):
        dp.aggregate(np.full((6, 2), 3.0))
    fresh = DPFedAvg(cfg, generator=gen())
    fresh.load_state(dp.state())
    assert fresh.state() == dp.state()
    assert fresh.privacy_spent()[0] == pytest.approx(dp.privacy_spent()[0], rel=1e-12)
    bad_states = [{"clip_norm": -1.0, "rounds": 2}, {"clip_norm": 1.0}]
    for bad in [*bad_states, {"clip_norm": 1.0, "rounds": -1}]:
        with pytest.raises(ValueError):
            fresh.load_state(bad)
    assert fresh.state() == dp.state()


def test_noise_split_and_scale_match_flower():
    pytest.importorskip("flwr")
    from flwr.supercore.differential_privacy import compute_adaptive_noise_params, compute_stdv

    for z, m, sigma_b in ((1.0, 40, None), (0.7, 12, 2.0), (2.5, 100, 3.0)):
        theirs_b, theirs_z = compute_adaptive_noise_params(z, m, sigma_b)
        cfg = DPFedAvgConfig(z, count_stddev=sigma_b, initial_clip_norm=0.3)
        assert cfg.noise_split(m) == pytest.approx((theirs_z, theirs_b), rel=1e-12)
        r = DPFedAvg(cfg, generator=gen()).aggregate(np.ones((m, 2)))
        assert r.model_sigma / m == pytest.approx(compute_stdv(theirs_z, 0.3, m), rel=1e-12)
    with pytest.raises(ValueError):
        compute_adaptive_noise_params(1.0, 10, None)
    with pytest.raises(ValueError, match="count_stddev"):
        DPFedAvgConfig(1.0, population=10)


def test_clip_norm_update_against_flower_noise_off(rng):
    """Flower counts the clipped updates and moves C with the paper's sign: on the same
    inputs its factor is the inverse of the paper's (target 1 - gamma), so that the paper's
    C rises when most updates are clipped and Flower's falls."""
    pytest.importorskip("flwr")
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
    from flwr.server.strategy import DifferentialPrivacyServerSideAdaptiveClipping, FedAvg

    for gamma in (0.3, 0.5, 0.8):
        x = rng.standard_normal((8, 5)) * rng.uniform(0.1, 2.0, (8, 1))
        flower = DifferentialPrivacyServerSideAdaptiveClipping(
            FedAvg(), 0.0, 8, initial_clipping_norm=0.9, target_clipped_quantile=1 - gamma
        )
        flower.current_round_params = [np.zeros(5)]
        status = Status(Code.OK, "")
        results = [(None, FitRes(status, ndarrays_to_parameters([u]), 1, {})) for u in x]
        flower.aggregate_fit(1, results, [])
        cfg = DPFedAvgConfig(0.0, count_stddev=0.0, target_quantile=gamma, initial_clip_norm=0.9)
        ours = DPFedAvg(cfg, generator=gen()).aggregate(x)
        assert math.log(ours.next_clip_norm / 0.9) == pytest.approx(
            -math.log(flower.clipping_norm / 0.9), rel=1e-12, abs=1e-15
        )
