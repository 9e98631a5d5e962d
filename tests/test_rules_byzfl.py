"""The new rules, pre-steps and attacks against ByzFL's own functions on random data.

Skipped where ByzFL (and the torch it needs) is not installed. Convention differences, the
only ones allowed: ByzFL's MoNNA takes the index of the trusted update where hierfed takes
the vector; ByzFL's rules refuse ``2f >= n`` where hierfed's accept any ``f < n``; ByzFL's
bucketing shuffles with its own generator, so it is run here with hierfed's permutation.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierfed
from hierfed.simulation import attacks

byzfl = pytest.importorskip("byzfl")

F64 = np.float64


def data(rng: np.random.Generator, n: int = 11, d: int = 17) -> np.ndarray:
    x = rng.standard_normal((n, d))
    x[:3] = rng.normal(3.0, 2.0, (3, d))
    return x


def test_rules_match_byzfl(backend, rng):
    for _ in range(3):
        x = data(rng)
        for f in (1, 3, 5):
            np.testing.assert_allclose(hierfed.mda(x, f), byzfl.MDA(f=f)(x.copy()), rtol=1e-12)
            np.testing.assert_allclose(hierfed.meamed(x, f), byzfl.Meamed(f=f)(x.copy()))
            np.testing.assert_allclose(
                hierfed.monna(x, f, x[4]), byzfl.MoNNA(f=f, idx=4)(x.copy()), rtol=1e-12
            )


def test_pre_steps_match_byzfl(backend, rng, monkeypatch):
    from byzfl.aggregators import preaggregators

    for _ in range(3):
        x = data(rng)
        for f in (1, 3, 5):
            np.testing.assert_allclose(
                hierfed.adaptive_robust_clipping(x, f), byzfl.ARC(f=f)(x.copy()), rtol=1e-12
            )
        np.testing.assert_allclose(
            hierfed.clip_by_l2_norm(x, 2.0), byzfl.Clipping(c=2.0)(x.copy()), rtol=1e-12
        )
        order = np.random.default_rng(7).permutation(len(x))

        class Ours:  # ByzFL's random tool, shuffling as hierfed.bucketing(seed=7) does
            def __init__(self, vectors: object, order: np.ndarray = order) -> None:
                self.order = order

            def permutation(self, vectors: np.ndarray) -> np.ndarray:
                return vectors[self.order]

        monkeypatch.setattr(preaggregators, "random_tool", Ours)
        for s in (2, 3, 11):
            np.testing.assert_allclose(
                hierfed.bucketing(x, s, seed=7), byzfl.Bucketing(s=s)(x.copy()), rtol=1e-12
            )


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("trimmed_mean", lambda f: byzfl.TrMean(f=f)),
        ("median", lambda f: byzfl.Median()),
        ("meamed", lambda f: byzfl.Meamed(f=f)),
    ],
)
def test_optimal_attacks_match_byzfl(rng, ours, theirs):
    honest = data(rng, n=9, d=12)
    f = 2

    def rule(v: np.ndarray) -> np.ndarray:
        params = {"n_trim": f} if ours == "trimmed_mean" else {"f": f}
        if ours == "median":
            params = {}
        return np.asarray(hierfed.aggregate(v, ours, **params).aggregate)

    got = attacks.optimal_ipm(honest, f, rule)
    want = byzfl.Optimal_InnerProductManipulation(agg=theirs(f), pre_agg_list=[], f=f)(honest)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    got = attacks.optimal_alie(honest, f, rule)
    want = byzfl.Optimal_ALittleIsEnough(agg=theirs(f), pre_agg_list=[], f=f)(honest)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_array_equal(attacks.mimic(honest, 3), byzfl.Mimic(epsilon=3)(honest))
    np.testing.assert_array_equal(attacks.inf(12), byzfl.Inf()(honest))
