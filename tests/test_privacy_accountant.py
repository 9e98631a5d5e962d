"""RDP accountant against numerical integration of the Renyi divergence (scipy quad), the
closed forms, and dp_accounting (when installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from hierfed.privacy import DEFAULT_ORDERS, RDPAccountant, compute_rdp, rdp_to_epsilon

ORDERS = [1.5, 2.0, 3.7, 10.0, 64.0]
SETTINGS = [(0.01, 1.1), (0.1, 0.8), (0.2, 2.0), (0.001, 0.5), (0.5, 3.0), (0.05, 5.0)]


def quad_rdp(q: float, sigma: float, alpha: float) -> float:
    """(1/(alpha-1)) log of int phi_sigma(z) ((1-q) + q exp((2z-1)/(2 sigma^2)))^alpha dz,
    integrated numerically around the integrand's peak in scaled form."""

    def log_f(z: np.ndarray) -> np.ndarray:
        mix = np.logaddexp(math.log1p(-q), math.log(q) + (2 * z - 1) / (2 * sigma**2))
        return -(z**2) / (2 * sigma**2) - 0.5 * math.log(2 * math.pi * sigma**2) + alpha * mix

    grid = np.linspace(-60 * sigma, 60 * sigma + 30 * alpha, 400_001)
    vals = log_f(grid)
    top, peak = float(vals.max()), float(grid[vals.argmax()])

    def f(z: float) -> float:
        return math.exp(float(log_f(np.array([z]))[0]) - top)

    opts = {"epsabs": 0.0, "epsrel": 1e-13, "limit": 500}
    left = integrate.quad(f, -np.inf, peak, **opts)[0]
    right = integrate.quad(f, peak, np.inf, **opts)[0]
    return (top + math.log(left + right)) / (alpha - 1)


@pytest.mark.parametrize(("q", "sigma"), SETTINGS)
def test_rdp_matches_numerical_integration(q: float, sigma: float) -> None:
    got = compute_rdp(sigma, q, 1, ORDERS)
    for alpha, value in zip(ORDERS, got, strict=True):
        assert value == pytest.approx(quad_rdp(q, sigma, alpha), rel=1e-6)


def test_closed_forms_and_composition() -> None:
    orders = [1.25, 2.0, 7.5, 100.0]
    np.testing.assert_allclose(
        compute_rdp(1.7, 1.0, 3, orders), [3 * a / (2 * 1.7**2) for a in orders], rtol=1e-15
    )
    # order 2 in closed form: log(1 + q^2 (e^(1/s^2) - 1)), accurate even when tiny
    for q, sigma in [(1e-6, 100.0), (0.01, 1.1), (0.3, 0.5)]:
        want = math.log1p(q * q * math.expm1(1 / sigma**2))
        assert compute_rdp(sigma, q, 1, [2.0])[0] == pytest.approx(want, rel=1e-13)
    assert (compute_rdp(1.0, 0.0, 10, orders) == 0).all()
    assert np.isinf(compute_rdp(0.0, 0.5, 1, orders)).all()
    assert (compute_rdp(1.0, 0.5, 0, orders) == 0).all()
    acc = RDPAccountant(orders)
    acc.step(1.1, 0.01, 40)
    acc.step(2.0, 0.05, 10)
    want = compute_rdp(1.1, 0.01, 40, orders) + compute_rdp(2.0, 0.05, 10, orders)
    np.testing.assert_allclose(acc.rdp, want, rtol=1e-15)
    assert acc.history == [(1.1, 0.01, 40), (2.0, 0.05, 10)]
    # subsampling only helps, and RDP grows with the order
    rdp = compute_rdp(1.0, 0.1, 1, DEFAULT_ORDERS)
    assert (rdp <= np.asarray(DEFAULT_ORDERS) / 2 + 1e-12).all()
    assert (np.diff(rdp) >= -1e-12).all()


def test_default_orders_cover_opacus_and_reach_1024() -> None:
    opacus = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    assert all(any(abs(a - b) < 1e-12 for b in DEFAULT_ORDERS) for a in opacus)
    assert max(DEFAULT_ORDERS) >= 1024 and min(DEFAULT_ORDERS) > 1


def test_conversion_is_balle_et_al_2020() -> None:
    orders, rdp = [2.0, 8.0, 32.0], [0.5, 1.2, 4.0]
    delta = 1e-6
    each = [
        r + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
        for a, r in zip(orders, rdp, strict=True)
    ]
    eps, order = rdp_to_epsilon(orders, rdp, delta)
    assert eps == pytest.approx(min(each), rel=1e-15) and order == orders[int(np.argmin(each))]
    acc = RDPAccountant()
    acc.step(1.0, 0.02, 500)
    eps, order = acc.get_privacy_spent(1e-5)
    assert acc.get_epsilon(1e-5) == eps and order in DEFAULT_ORDERS
    assert acc.get_delta(eps) == pytest.approx(1e-5, rel=1e-6)
    assert RDPAccountant().get_epsilon(1e-5) == 0.0


def test_dp_accounting_agrees_at_integer_orders_and_overestimates_fractional() -> None:
    dpa = pytest.importorskip("dp_accounting")
    from dp_accounting import rdp as dp_rdp

    for q, sigma in SETTINGS:
        event = dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma))
        ints = [2.0, 3.0, 10.0, 64.0, 500.0]
        ref = dp_rdp.RdpAccountant(ints)
        ref.compose(event)
        np.testing.assert_allclose(compute_rdp(sigma, q, 1, ints), ref._rdp, rtol=1e-10)
        fracs = [1.5, 3.7, 10.5]
        ref = dp_rdp.RdpAccountant(fracs)
        ref.compose(event)
        ours = compute_rdp(sigma, q, 1, fracs)
        assert (ours <= np.asarray(ref._rdp) * (1 + 1e-12)).all()


def test_pld_accountant_and_dp_event() -> None:
    pytest.importorskip("dp_accounting")
    from hierfed.privacy import PLDAccountant

    pld = PLDAccountant()
    pld.step(1.1, 0.01, 1000)
    rdp = RDPAccountant()
    rdp.step(1.1, 0.01, 1000)
    eps_pld, delta = pld.get_privacy_spent(1e-5)
    assert delta == 1e-5 and 0 < eps_pld < rdp.get_epsilon(1e-5)  # PLD is tighter
    event = rdp.to_dp_event()
    assert "PoissonSampledDpEvent" in repr(event) and "1000" in repr(event)
    assert pld.get_delta(eps_pld) == pytest.approx(1e-5, rel=0.05)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="orders must be finite and > 1"):
        RDPAccountant([1.0, 2.0])
    with pytest.raises(ValueError, match="sample_rate must be in"):
        compute_rdp(1.0, 1.5)
    with pytest.raises(ValueError, match="noise_multiplier must be >= 0"):
        RDPAccountant().step(-1.0)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        RDPAccountant().step(1.0, 0.1, -2)
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
        RDPAccountant().get_epsilon(0.0)


def test_add_rdp_composes_a_curve_as_step_does() -> None:
    by_step, by_curve = RDPAccountant(), RDPAccountant()
    by_step.step(1.3, sample_rate=0.02, steps=7)
    by_curve.add_rdp(compute_rdp(1.3, 0.02, 1, by_curve.orders), steps=7)
    np.testing.assert_allclose(by_curve.rdp, by_step.rdp, rtol=1e-15)
    assert by_curve.get_epsilon(1e-5) == pytest.approx(by_step.get_epsilon(1e-5), rel=1e-14)
    by_curve.add_rdp(np.full(by_curve.orders.shape, np.inf), steps=0)  # 0 steps: nothing spent
    np.testing.assert_array_equal(by_curve.rdp, by_step.rdp)


def test_add_rdp_refuses_bad_curves_and_dp_events() -> None:
    acc = RDPAccountant([2.0, 8.0])
    with pytest.raises(ValueError, match="one value per order"):
        acc.add_rdp([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=">= 0 at every order"):
        acc.add_rdp([0.1, -0.2])
    with pytest.raises(ValueError, match=">= 0 at every order"):
        acc.add_rdp([0.1, math.nan])
    with pytest.raises(ValueError, match="steps must be >= 0"):
        acc.add_rdp([0.1, 0.2], steps=-1)
    assert not acc.rdp.any()  # refused curves leave the accountant as it was
    acc.add_rdp([0.1, 0.2])
    with pytest.raises(ValueError, match="add_rdp"):
        acc.to_dp_event()
