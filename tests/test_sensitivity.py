"""The sensitivity bounds hold: no pair of neighbouring inputs moves an aggregate further.

For each rule, random and adversarial datasets of updates clipped to C are compared with the
same dataset with one update replaced (by its negation, a far point on the sphere, a copy of
another, zero); the aggregates' distance must never exceed ``aggregate_sensitivity``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hierfed import AggregationMethod, aggregate, clip_by_l2_norm
from hierfed.sensitivity import aggregate_sensitivity

C = 1.5

RULES = [
    (AggregationMethod.MEAN, {}),
    (AggregationMethod.TRIMMED_MEAN, {"trim_ratio": 0.2}),
    (AggregationMethod.MEDIAN, {}),
    (AggregationMethod.KRUM, {"f": 1}),
    (AggregationMethod.MULTI_KRUM, {"f": 1}),
    (AggregationMethod.BULYAN, {"f": 1}),
    (AggregationMethod.GEOMETRIC_MEDIAN, {}),
    (AggregationMethod.CENTERED_CLIPPING, {"tau": 0.5, "n_iter": 3}),
]


def _replacements(x: np.ndarray, i: int, rng: np.random.Generator) -> list[np.ndarray]:
    far = rng.normal(size=x.shape[1])
    far *= C / np.linalg.norm(far)
    return [-x[i], far, x[(i + 1) % len(x)], np.zeros(x.shape[1]), C * np.eye(x.shape[1])[0]]


def _run(
    x: np.ndarray,
    rule: AggregationMethod,
    params: dict,
    weights: np.ndarray | None,
    pre: str | None,
) -> np.ndarray:
    p = dict(params)
    if rule is AggregationMethod.CENTERED_CLIPPING:
        p["center"] = np.full(x.shape[1], 0.1)
    elif weights is not None and rule not in (AggregationMethod.KRUM,):
        p["weights"] = weights
    return np.asarray(aggregate(x, rule, pre, **p).aggregate, dtype=np.float64)


def _worst_move(rule, params, n, d, seed, weighted, pre=None) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    x = clip_by_l2_norm(rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=(n, 1)), C)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    if rule is AggregationMethod.KRUM:
        w = None
    bound = aggregate_sensitivity(
        rule,
        n,
        C,
        weights=w if rule is not AggregationMethod.CENTERED_CLIPPING else None,
        pre=pre,
        center_norm=0.1 * np.sqrt(d),
        **{k: v for k, v in params.items() if k in ("trim_ratio", "f")},
    )
    base = _run(x, rule, params, w, pre)
    worst = 0.0
    for i in range(n):
        for y in _replacements(x, i, rng):
            x2 = x.copy()
            x2[i] = y
            worst = max(worst, float(np.linalg.norm(_run(x2, rule, params, w, pre) - base)))
    return worst, bound


@pytest.mark.parametrize(("rule", "params"), RULES, ids=[r.value for r, _ in RULES])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_bound_holds_on_random_and_adversarial_neighbours(rule, params, weighted) -> None:
    for seed in range(3):
        worst, bound = _worst_move(rule, params, 9, 4, seed, weighted)
        assert worst <= bound * (1 + 1e-9), (rule, seed, worst, bound)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(5, 12), d=st.integers(1, 5), seed=st.integers(0, 2**31))
def test_trimmed_mean_bound_holds(n: int, d: int, seed: int) -> None:
    worst, bound = _worst_move(
        AggregationMethod.TRIMMED_MEAN, {"trim_ratio": 0.2}, n, d, seed, False
    )
    assert worst <= bound * (1 + 1e-9)


def test_trimmed_mean_bound_is_attained() -> None:
    """2C/(n-2k) is tight: with the others at -C, -C, C, C, one value moving from -C to C
    moves the kept middle from (-C, -C, C) to (-C, C, C)."""
    n, k = 5, 1
    x = np.array([[-C], [-C], [-C], [C], [C]])
    y = x.copy()
    y[0, 0] = C
    got = abs(
        aggregate(y, "trimmed_mean", n_trim=k).aggregate[0]
        - aggregate(x, "trimmed_mean", n_trim=k).aggregate[0]
    )
    bound = aggregate_sensitivity("trimmed_mean", n, C, n_trim=k)
    assert bound == pytest.approx(2 * C / 3)
    assert got == pytest.approx(bound)


def test_after_mixing_the_box_bound_is_used() -> None:
    worst, bound = _worst_move(
        AggregationMethod.TRIMMED_MEAN, {"trim_ratio": 0.2, "f": 1}, 9, 3, 0, False, pre="nnm"
    )
    assert bound == pytest.approx(2 * C * 3)
    assert worst <= bound


def test_equal_weights_count_as_unweighted() -> None:
    assert aggregate_sensitivity("mean", 10, 1.0, weights=[0.9] * 10) == pytest.approx(0.2)
    assert aggregate_sensitivity("trimmed_mean", 10, 1.0, weights=[2.0] * 10) == pytest.approx(
        2 / 8
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((AggregationMethod.MEAN, 0, 1.0), ValueError),
        (("mean", 3, -1.0), ValueError),
        (("nope", 3, 1.0), ValueError),
    ],
)
def test_bad_arguments(args, error) -> None:
    with pytest.raises(error):
        aggregate_sensitivity(*args)


@pytest.mark.parametrize("n_iter", [1, 3])
@pytest.mark.parametrize("center_norm", [0.0, 0.3, 100.0])
def test_centered_clipping_bound_does_not_grow_with_the_center(n_iter, center_norm) -> None:
    """Each iteration is 1-Lipschitz in its start and moves by <= 2 tau / n when one update
    is replaced: n_iter * 2 tau / n bounds the move however far the center is (the hull
    bound 2 max(C, |center|) grew with a noised center fed back round after round)."""
    n, d, tau = 9, 4, 0.5
    for seed in range(3):
        rng = np.random.default_rng(seed)
        x = clip_by_l2_norm(rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=(n, 1)), C)
        center = rng.normal(size=d)
        center *= center_norm / np.linalg.norm(center)
        bound = aggregate_sensitivity(
            AggregationMethod.CENTERED_CLIPPING, n, C, tau=tau, n_iter=n_iter, center=center
        )
        assert bound == pytest.approx(min(2 * max(C, center_norm), 2 * tau * n_iter / n))

        def cc(u, center=center):
            return np.asarray(
                aggregate(u, "centered_clipping", center=center, tau=tau, n_iter=n_iter).aggregate
            )

        base = cc(x)
        for i in range(n):
            for y in _replacements(x, i, rng):
                x2 = x.copy()
                x2[i] = y
                assert np.linalg.norm(cc(x2) - base) <= bound * (1 + 1e-9)
