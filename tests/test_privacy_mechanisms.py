"""Mechanisms: noise of the calibrated size, inputs untouched, rounds accounted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hierfed.privacy import (
    CentralDPMechanism,
    GaussianMechanism,
    LaplaceMechanism,
    NoiseGenerator,
    RDPAccountant,
    add_gaussian_noise,
    add_laplace_noise,
    analytic_gaussian_sigma,
)


def seeded(seed: int = 0) -> NoiseGenerator:
    return NoiseGenerator(seed, secure=False)


def test_central_dp_mechanism_as_in_the_spec(backend: str) -> None:
    dp = CentralDPMechanism(epsilon=1.0, delta=1e-5, sensitivity=1.0, generator=seeded())
    aggregate = np.zeros(200_000, np.float32)
    noised = dp.add_noise(aggregate)
    assert noised.dtype == np.float32 and noised.shape == aggregate.shape
    assert (aggregate == 0).all()  # the input is untouched
    assert dp.sigma == analytic_gaussian_sigma(1.0, 1e-5)
    assert noised.std() == pytest.approx(dp.sigma, rel=0.01)
    assert dp.privacy_spent() == (1.0, 1e-5)  # one round: exactly the calibrated pair
    dp.add_noise(aggregate)
    eps2, delta2 = dp.privacy_spent()
    assert delta2 == 1e-5 and 1.0 < eps2 < 2.0  # RDP composition beats 2 epsilon at 1e-5
    assert dp.privacy_spent(2e-5)[0] <= 2.0  # basic composition where it applies
    assert dp.rounds == 2


def test_noise_multiplier_form_feeds_the_accountant() -> None:
    acc = RDPAccountant()
    mech = CentralDPMechanism.from_noise_multiplier(
        1.1, delta=1e-5, sensitivity=0.5, sample_rate=0.01, generator=seeded(), accountant=acc
    )
    assert mech.sigma == pytest.approx(0.55)
    model = [np.zeros((3, 4)), np.zeros(5, np.float32)]
    for _ in range(100):
        out = mech.add_noise(model)
    assert [o.shape for o in out] == [(3, 4), (5,)] and out[1].dtype == np.float32
    ref = RDPAccountant()
    ref.step(1.1, 0.01, 100)
    assert mech.privacy_spent() == pytest.approx((ref.get_epsilon(1e-5), 1e-5), rel=1e-12)
    assert acc.history == [(1.1, 0.01, 1)] * 100
    assert CentralDPMechanism().privacy_spent() == (0.0, 0.0)


def test_gaussian_and_laplace_mechanisms(backend: str) -> None:
    g = GaussianMechanism(2.0, generator=seeded(1))
    x = np.full(100_000, 5.0)
    y = g.add_noise(x)
    assert (x == 5.0).all() and (y - 5).std() == pytest.approx(2.0, rel=0.02)
    assert g.add_noise(x, in_place=True) is x and not (x == 5.0).all()
    lap = LaplaceMechanism.calibrated(0.5, sensitivity=2.0, generator=seeded(2))
    assert lap.scale == 4.0 and lap.epsilon == 0.5
    z = lap.add_noise(np.zeros(100_000))
    assert np.abs(z).mean() == pytest.approx(4.0, rel=0.02)
    assert GaussianMechanism(0.0).epsilon(1e-5) == math.inf


def test_add_noise_in_place_matches_the_generator(backend: str) -> None:
    x = np.arange(300, dtype=np.float32).reshape(20, 15)
    want = (x.astype(np.float64) + 0.5 * seeded(3).standard_normal(300).reshape(20, 15)).astype(
        np.float32
    )
    assert add_gaussian_noise(x, 0.5, seeded(3)) is x
    np.testing.assert_array_equal(x, want)
    strided = np.zeros((10, 10))[:, ::2]
    add_laplace_noise(strided, 1.0, seeded(4))
    np.testing.assert_array_equal(strided, seeded(4).laplace(size=(10, 5)))
    with pytest.raises(ValueError, match="must be writeable"):
        ro = np.zeros(3)
        ro.flags.writeable = False
        add_gaussian_noise(ro, 1.0)
    with pytest.raises(TypeError, match="float32 or float64"):
        add_gaussian_noise(np.zeros(3, np.int64), 1.0)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        add_gaussian_noise(np.zeros(3), -1.0)
    with pytest.raises(TypeError, match="generator must be a NoiseGenerator"):
        add_gaussian_noise(np.zeros(3), 1.0, np.random.default_rng())  # type: ignore[arg-type]


def test_mechanism_argument_errors() -> None:
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        CentralDPMechanism(0.0, 1e-5)
    with pytest.raises(ValueError, match="sample_rate must be in"):
        CentralDPMechanism.from_noise_multiplier(1.0, sample_rate=0.0)
    with pytest.raises(ValueError, match="sensitivity must be > 0"):
        GaussianMechanism(1.0, sensitivity=-1.0)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        LaplaceMechanism(-1.0)
