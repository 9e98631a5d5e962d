"""Edge cases of issue 18's "smaller" list: each failed (NaN, a wrong delta, a huge
allocation, a mask ignored) on the code before."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import hierfed
from hierfed.layers import BasketModel, Layer2Aggregator, Layer2Config
from hierfed.privacy import RDPAccountant, gaussian_delta


def test_an_accountant_with_nothing_spent_gives_delta_zero() -> None:
    assert RDPAccountant().get_delta(0.0) == 0.0  # was 3.6e-4
    assert RDPAccountant().get_delta(1.0) == 0.0
    acc = RDPAccountant()
    acc.step(1.0, sample_rate=0.0, steps=5)  # a step that samples nobody spends nothing
    assert acc.get_delta(0.0) == 0.0
    acc.step(1.0)
    assert 0 < acc.get_delta(1.0) < 1  # something spent: no longer zero


@pytest.mark.parametrize("ratio", [1e-100, 1e-154, 1e-155, 1e-160, 1e-200, 1e-300])
@pytest.mark.parametrize("eps", [0.0, 0.5, 3.0])
def test_gaussian_delta_for_tiny_sensitivity_over_sigma(ratio: float, eps: float) -> None:
    for sigma, sens in ((1.0, ratio), (1.0 / ratio, 1.0)):
        got = gaussian_delta(sigma, eps, sens)
        assert not math.isnan(got)
        # Theorem 8 by scipy, in log space: Phi(a) - e^eps Phi(b)
        u = sens / sigma
        a, b = u / 2 - eps / u, -u / 2 - eps / u
        la, lb = special.log_ndtr(a), special.log_ndtr(b)
        want = 0.0 if la == -np.inf or eps + lb >= la else math.exp(la) * -math.expm1(eps + lb - la)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_huge_renyi_orders_are_refused_before_any_allocation() -> None:
    for orders in ([2e8], [1e12], [2.0, 1e6]):
        with pytest.raises(ValueError, match="orders must be <= 100000"):
            RDPAccountant(orders=orders)
    with pytest.raises(ValueError, match="orders must be <= 100000"):
        hierfed.privacy.compute_rdp(1.0, 0.5, 1, orders=[3e8])
    acc = RDPAccountant(orders=[100_000.0])  # the largest allowed one works
    acc.step(50.0, 0.01)
    assert math.isfinite(acc.get_epsilon(1e-5))


MASKED = np.ma.array(np.arange(12.0).reshape(4, 3), mask=[[0, 0, 0]] * 3 + [[1, 1, 1]])


@pytest.mark.parametrize(
    "call",
    [
        lambda: hierfed.mean(MASKED),
        lambda: hierfed.median(list(MASKED)),
        lambda: hierfed.trimmed_mean([np.zeros(3), MASKED[3]], 0.1),
        lambda: hierfed.krum(MASKED, f=0),
        lambda: hierfed.mean(MASKED.data, weights=np.ma.array([1, 1, 1, 1.0], mask=[0, 0, 0, 1])),
        lambda: hierfed.centered_clipping(MASKED.data, MASKED[3], 1.0),
        lambda: hierfed.aggregate([[MASKED[0]], [MASKED[3]]], "mean"),
    ],
)
def test_masked_arrays_are_refused_by_the_aggregators(call) -> None:
    with pytest.raises(TypeError, match="masked array; its mask would be ignored"):
        call()


def test_masked_arrays_are_refused_by_layer2_and_the_federation() -> None:
    models = [BasketModel(b, MASKED[i], 3, 0, 0.0, 1.0) for i, b in enumerate("ab")]
    cfg = Layer2Config(use_secure_aggregation=False, central_dp_epsilon=None)
    with pytest.raises(TypeError, match=r"basket_models\[0\].aggregate is a numpy masked"):
        Layer2Aggregator(cfg).aggregate(models)
    fed = hierfed.HierarchicalFederation(generator=hierfed.NoiseGenerator(seed=0, secure=False))
    fed.register_client("c", "d")
    with pytest.raises(TypeError, match="update of 'c' is a numpy masked array"):
        fed.submit_update("c", MASKED[3], 0)
    assert fed.get_stats()["rejected"] == {"type": 1} and len(fed.buffer) == 0
    with pytest.raises(TypeError, match="initial_model is a numpy masked array"):
        hierfed.HierarchicalFederation(initial_model=MASKED[3])
