"""Calibration against independent scipy computations of Balle & Wang's Theorem 8."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from hierfed.privacy import (
    GaussianMechanism,
    analytic_gaussian_sigma,
    classic_gaussian_sigma,
    gaussian_delta,
    laplace_scale,
)
from hierfed.privacy._special import log_erfc, log_ndtr


def theorem8_log_delta(sigma: float, eps: float, sens: float = 1.0) -> float:
    """log of Phi(D/(2s) - e s/D) - e^eps Phi(-D/(2s) - e s/D), with scipy's log_ndtr."""
    a = sens / (2 * sigma) - eps * sigma / sens
    b = -sens / (2 * sigma) - eps * sigma / sens
    la, lb = special.log_ndtr(a), special.log_ndtr(b)
    gap = eps + lb - la
    return -math.inf if gap >= 0 else float(la + np.log(-np.expm1(gap)))


def bisect_sigma(eps: float, delta: float, sens: float = 1.0) -> float:
    """The smallest sigma with delta(sigma) <= delta: bisection on log sigma."""
    lo, hi = math.log(1e-8), math.log(1e8)
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        if theorem8_log_delta(math.exp(mid), eps, sens) > math.log(delta):
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


EPSILONS = [0.01, 0.05, 0.3, 1.0, 2.5, 8.4, 12.0, 20.0]
DELTAS = [1e-12, 1e-9, 1e-6, 1e-5, 1e-3]


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("delta", DELTAS)
def test_analytic_sigma_matches_independent_bisection(eps: float, delta: float) -> None:
    got = analytic_gaussian_sigma(eps, delta)
    assert got == pytest.approx(bisect_sigma(eps, delta), rel=1e-9)
    assert analytic_gaussian_sigma(eps, delta, 3.5) == pytest.approx(3.5 * got, rel=1e-12)
    assert gaussian_delta(got, eps) == pytest.approx(delta, rel=1e-7)


def test_classic_formula_and_where_it_fails() -> None:
    assert classic_gaussian_sigma(0.5, 1e-5, 2.0) == pytest.approx(
        2.0 * math.sqrt(2 * math.log(1.25e5)) / 0.5
    )
    # below epsilon ~ 8.4 the classic sigma is larger than needed, above it too small
    for eps in (0.5, 1.0, 5.0):
        assert classic_gaussian_sigma(eps, 1e-5) > analytic_gaussian_sigma(eps, 1e-5)
    for eps in (10.0, 20.0):
        sigma = classic_gaussian_sigma(eps, 1e-5)
        assert sigma < analytic_gaussian_sigma(eps, 1e-5)
        assert gaussian_delta(sigma, eps) > 1e-5  # not (eps, 1e-5)-DP


def test_laplace_scale_and_errors() -> None:
    assert laplace_scale(0.5, 2.0) == 4.0
    for bad_eps in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="epsilon"):
            analytic_gaussian_sigma(bad_eps, 1e-5)
    for bad_delta in (0.0, 1.0, -1e-5, 2.0):
        with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
            analytic_gaussian_sigma(1.0, bad_delta)
    with pytest.raises(ValueError, match="sensitivity must be > 0"):
        laplace_scale(1.0, 0.0)
    with pytest.raises(TypeError, match="epsilon must be a real number"):
        analytic_gaussian_sigma("1", 1e-5)  # type: ignore[arg-type]


def test_gaussian_mechanism_epsilon_inverts_delta() -> None:
    mech = GaussianMechanism.calibrated(1.3, 1e-7, sensitivity=2.0)
    assert mech.epsilon(1e-7) == pytest.approx(1.3, rel=1e-9)
    assert mech.delta(1.3) == pytest.approx(1e-7, rel=1e-7)
    assert mech.noise_multiplier == pytest.approx(mech.sigma / 2.0)


def test_special_functions_against_scipy() -> None:
    x = np.concatenate([np.linspace(-30, 30, 601), np.geomspace(15, 1e6, 300)])
    np.testing.assert_allclose(
        log_erfc(x), math.log(2) + special.log_ndtr(-x * math.sqrt(2)), rtol=1e-13
    )
    for v in (-1e4, -300.0, -40.0, -8.0, -1.0, 0.0, 0.5, 3.0, 9.0):
        assert log_ndtr(v) == pytest.approx(float(special.log_ndtr(v)), rel=1e-12, abs=1e-300)
