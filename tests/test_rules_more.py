"""MDA, Meamed, MoNNA and the pre-steps (bucketing, ARC, clipping) on every backend.

References: literal float64 transcriptions of each paper's definition (slow and obvious:
every subset for MDA, a sort per coordinate for Meamed), then ByzFL's own functions on the
same random data where ByzFL is installed (:mod:`tests.test_rules_byzfl`).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import hierfed
from hierfed import Layer1Aggregator, Layer1Config, Layer2Config
from hierfed.mda import MDA_MAX_WORK, mda_work

F32, F64 = np.float32, np.float64


def mda_literal(x: np.ndarray, f: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """El Mhamdi et al. 2018: the subset of n - f of least diameter (first found), averaged."""
    x = x.astype(F64)
    best, best_d = (), math.inf
    for subset in itertools.combinations(range(len(x)), len(x) - f):
        d = max((np.linalg.norm(x[i] - x[j]) for i in subset for j in subset), default=0.0)
        if d < best_d:
            best, best_d = subset, d
    return x[list(best)].mean(axis=0), best


def meamed_literal(x: np.ndarray, f: int) -> np.ndarray:
    """Xie et al. 2018: per coordinate, the mean of the n - f values closest to the median."""
    x = x.astype(F64)
    n, d = x.shape
    out = np.empty(d)
    for j in range(d):
        med = float(np.median(x[:, j]))
        kept = sorted(range(n), key=lambda i: (abs(x[i, j] - med), i))[: n - f]
        out[j] = np.mean([x[i, j] for i in kept])
    return out


def monna_literal(x: np.ndarray, f: int, trusted: np.ndarray) -> np.ndarray:
    """Farhadkhani et al. 2023: the mean of the n - f updates nearest to the trusted one."""
    x = x.astype(F64)
    near = sorted(range(len(x)), key=lambda i: (np.linalg.norm(x[i] - trusted), i))
    return x[near[: len(x) - f]].mean(axis=0)


def bucketing_literal(x: np.ndarray, s: int, seed: int) -> np.ndarray:
    """Karimireddy et al. 2022: a random order, buckets of s consecutive, their means."""
    order = np.random.default_rng(seed).permutation(len(x))
    return np.array([x[order[j : j + s]].astype(F64).mean(axis=0) for j in range(0, len(x), s)])


def arc_literal(x: np.ndarray, f: int) -> np.ndarray:
    """Allouah et al. 2024: clip the floor(2 (f/n)(n - f)) largest to the next largest norm."""
    x = x.astype(F64)
    n = len(x)
    k = math.floor(2 * (f / n) * (n - f))
    norms = np.linalg.norm(x, axis=1)
    order = sorted(range(n), key=lambda i: (-norms[i], i))
    threshold = norms[order[k]]
    out = x.copy()
    for i in order[:k]:
        out[i] = x[i] * min(1.0, threshold / norms[i])
    return out


def clip_literal(x: np.ndarray, c: float) -> np.ndarray:
    x = x.astype(F64)
    return np.array([v * min(1.0, c / np.linalg.norm(v)) for v in x])


def data(n: int, d: int, dtype: type, rng: np.random.Generator, f: int = 2) -> np.ndarray:
    x = rng.standard_normal((n, d))
    x[:f] = rng.normal(4.0, 3.0, (f, d))  # outliers, so the selections matter
    return x.astype(dtype)


def close(got: np.ndarray, want: np.ndarray, dtype: type) -> None:
    tol = 1e-6 if dtype == F32 else 1e-12
    np.testing.assert_allclose(np.asarray(got, F64), want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_rules_match_their_papers(backend, rng, dtype):
    for n, f in [(7, 2), (9, 3), (5, 0), (4, 3)]:
        x = data(n, 13, dtype, rng)
        want, subset = mda_literal(x, f)
        got = hierfed.aggregate(x, "mda", f=f)
        close(got.aggregate, want, dtype)
        assert got.selected == subset
        close(hierfed.meamed(x, f), meamed_literal(x, f), dtype)
        trusted = rng.standard_normal(13)
        close(hierfed.monna(x, f, trusted), monna_literal(x, f, trusted), dtype)


def test_meamed_with_ties_and_weights(backend):
    x = np.array([[0.0], [1.0], [1.0], [2.0], [9.0]])  # median 1; distances 1, 0, 0, 1, 8
    assert hierfed.meamed(x, 2)[0] == pytest.approx((1.0 + 1.0 + 0.0) / 3)  # tie: lower index
    w = np.array([1.0, 1.0, 1.0, 3.0, 1.0])
    assert hierfed.meamed(x, 1, w)[0] == pytest.approx((0 + 1 + 1 + 6) / 6)
    assert hierfed.aggregate(x, "meamed", f=1, weights=w).aggregate[0] == pytest.approx(8 / 6)


def test_mda_and_monna_weights_and_forms(backend, rng):
    x = data(6, 5, F64, rng)
    w = rng.uniform(0.5, 2.0, 6)
    _, subset = mda_literal(x, 2)
    np.testing.assert_allclose(
        hierfed.mda(x, 2, w), np.average(x[list(subset)], axis=0, weights=w[list(subset)])
    )
    models = [[row[:2].reshape(2, 1), row[2:]] for row in x]  # per-layer models
    got = hierfed.mda(models, 2)
    np.testing.assert_allclose(np.concatenate([got[0].ravel(), got[1]]), mda_literal(x, 2)[0])
    trusted = [x[3, :2].reshape(2, 1), x[3, 2:]]
    got = hierfed.monna(models, 2, trusted)
    np.testing.assert_allclose(np.concatenate([got[0].ravel(), got[1]]), monna_literal(x, 2, x[3]))


def test_rules_refuse_bad_input(backend, rng):
    x = data(6, 4, F64, rng)
    for rule in ("mda", "meamed"):
        with pytest.raises(ValueError, match="0 <= f < n"):
            hierfed.aggregate(x, rule, f=6)
        with pytest.raises(TypeError, match="f must be an int"):
            hierfed.aggregate(x, rule, f=1.5)
    with pytest.raises(TypeError, match="trusted"):
        hierfed.aggregate(x, "monna", f=1)
    with pytest.raises(ValueError, match="trusted has shape"):
        hierfed.monna(x, 1, np.zeros(3))
    with pytest.raises(ValueError, match="trusted contains a non-finite"):
        hierfed.monna(x, 1, np.full(4, np.nan))
    bad = x.copy()
    bad[4, 1] = np.inf
    for call in (
        lambda: hierfed.mda(bad, 1),
        lambda: hierfed.meamed(bad, 1),
        lambda: hierfed.monna(bad, 1, np.zeros(4)),
    ):
        with pytest.raises(ValueError, match=r"updates\[4\] contains a non-finite"):
            call()


def test_mda_refuses_past_its_bound():
    assert mda_work(30, 5) == math.comb(30, 5) * 25**2 > MDA_MAX_WORK >= mda_work(30, 4)
    with pytest.raises(ValueError, match="C\\(n, f\\) \\(n - f\\)\\^2 = 89066250 distance"):
        hierfed.mda(np.zeros((30, 2)), 5)
    hierfed.mda(np.zeros((30, 2)), 4)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_pre_steps_match_their_papers(backend, rng, dtype):
    x = data(11, 7, dtype, rng)
    close(hierfed.bucketing(x, 3, seed=5), bucketing_literal(x, 3, 5), dtype)
    close(hierfed.adaptive_robust_clipping(x, 3), arc_literal(x, 3), dtype)
    # ARC leaves the updates it does not clip exactly as they were
    k = math.floor(2 * 3 * 8 / 11)
    untouched = np.argsort(-np.linalg.norm(x.astype(F64), axis=1), kind="stable")[k:]
    np.testing.assert_array_equal(hierfed.adaptive_robust_clipping(x, 3)[untouched], x[untouched])
    got = hierfed.aggregate(x, "mean", pre="clip", clip_norm=1.5).aggregate
    close(got, clip_literal(x, 1.5).mean(axis=0), dtype)


def test_pre_steps_compose_in_order(backend, rng):
    x = data(12, 6, F64, rng)
    buckets = bucketing_literal(x, 2, 3)
    got = hierfed.aggregate(x, "krum", pre=("bucketing", "nnm"), s=2, seed=3, f=1)
    want = hierfed.aggregate(hierfed.nearest_neighbor_mixing(buckets, 1), "krum", f=1)
    np.testing.assert_allclose(got.aggregate, want.aggregate, rtol=1e-12)
    assert got.n_inputs == 12 and got.selected is None  # the buckets reached the rule
    got = hierfed.aggregate(x, "median", pre=["arc", "clip"], f=2, clip_norm=1.0).aggregate
    np.testing.assert_allclose(got, np.median(clip_literal(arc_literal(x, 2), 1.0), axis=0))
    got = hierfed.aggregate(x, "mda", pre="arc", f=2)
    assert got.selected == mda_literal(arc_literal(x, 2), 2)[1]


def test_pre_steps_refuse_bad_input(backend, rng):
    x = data(8, 3, F64, rng)
    with pytest.raises(TypeError, match=r"pre='bucketing'\) needs s"):
        hierfed.aggregate(x, "mean", pre="bucketing")
    with pytest.raises(TypeError, match=r"pre='clip'\) needs clip_norm"):
        hierfed.aggregate(x, "mean", pre=("arc", "clip"), f=1)
    with pytest.raises(ValueError, match="pre must be None or one of"):
        hierfed.aggregate(x, "mean", pre=("nnm", "bucket"), f=1)
    with pytest.raises(TypeError, match="pre must be None"):
        hierfed.aggregate(x, "mean", pre=3)
    with pytest.raises(ValueError, match="s must be >= 1"):
        hierfed.bucketing(x, 0)
    with pytest.raises(ValueError, match="weights cannot follow"):
        hierfed.aggregate(x, "mean", pre="bucketing", s=2, weights=np.ones(8))
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        hierfed.aggregate(x, "mean", pre="clip", clip_norm=0.0)
    with pytest.raises(TypeError, match="clip_norm must be a real number"):
        hierfed.aggregate(x, "mean", pre="clip", clip_norm="1")
    with pytest.raises(ValueError, match="arc needs 0 <= f < n"):
        hierfed.adaptive_robust_clipping(x, 8)
    with pytest.raises(ValueError, match="krum needs n >= 2f \\+ 3"):
        hierfed.aggregate(x, "krum", pre="bucketing", s=2, f=1)  # 4 buckets for 5 needed
    bad = x.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match=r"updates\[5\] contains a non-finite"):
        hierfed.bucketing(bad, 2)
    with pytest.raises(ValueError, match=r"updates\[5\] contains a non-finite"):
        hierfed.adaptive_robust_clipping(bad, 2)


def test_layer1_and_layer2_run_the_new_rules():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [1.1, 0.0], [-8.0, 9.0], [1.0, 0.2]])
    layer = Layer1Aggregator(
        Layer1Config("monna", min_updates=5, apply_local_noise=False, method_params={"f": 1})
    )
    first = layer.aggregate(x, basket_id="b")  # trusted: zeros
    np.testing.assert_allclose(first.aggregate, monna_literal(x, 1, np.zeros(2)))
    second = layer.aggregate(x + 0.5, basket_id="b")  # trusted: the basket's previous model
    np.testing.assert_allclose(second.aggregate, monna_literal(x + 0.5, 1, first.aggregate))
    cfg = Layer1Config(
        "mda", min_updates=5, apply_local_noise=False, method_params={"f": 1}, pre=("arc",)
    )
    model = Layer1Aggregator(cfg).aggregate(x)
    np.testing.assert_allclose(model.aggregate, mda_literal(arc_literal(x, 1), 1)[0])
    cfg = Layer1Config(
        "krum",
        min_updates=5,
        apply_local_noise=False,
        method_params={"f": 1, "s": 2},
        pre="bucketing",
    )
    assert cfg.min_inputs() == 9  # 5 buckets of 2 for Krum's 2f + 3
    with pytest.raises(ValueError, match="needs at least 9 updates"):
        Layer1Aggregator(cfg).aggregate(x)
    Layer2Config(use_secure_aggregation=False, robust_method="meamed", robust_params={"f": 1})


def test_sensitivity_of_the_new_rules():
    from hierfed.sensitivity import aggregate_sensitivity

    assert aggregate_sensitivity("mda", 9, 1.0, f=2) == 2.0
    assert aggregate_sensitivity("monna", 9, 1.0, f=2) == 2.0
    assert aggregate_sensitivity("meamed", 9, 1.0, f=2) == pytest.approx(2 * math.sqrt(9 / 7))
    assert aggregate_sensitivity("mda", 9, 1.0, f=2, pre=("bucketing",)) == 2 * 3.0
