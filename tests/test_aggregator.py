"""Every backend against the numpy reference and independent references.

Independent references: ``np.average``, ``scipy.stats.trim_mean``, ``np.median`` and slow
per-coordinate Python transcriptions of the weighted trimmed mean and weighted median (below,
written from DESIGN.md without the package's code). Order statistics must match exactly; sums
to rtol 1e-6 (float32) or 1e-12 (float64) of a float64 reference, with an atol scaled to the
magnitude of the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from scipy import stats

import hierfed
from hierfed import _backend

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
KINDS = ["normal", "ties", "equal", "offset"]
# (n, d): n at its minimum, d = 1, d not a multiple of 16, one d a multiple of 16.
SHAPES = [(1, 1), (1, 7), (2, 17), (5, 1), (20, 1003), (33, 16), (51, 7)]
WEIGHT_KINDS = ["positive", "zeros", "integers"]
WSHAPES = [(1, 3), (2, 17), (7, 1), (20, 33)]


# ----------------------------------------------------------------------------- helpers


def make(kind: str, n: int, d: int, dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """An (n, d) array of one of the test distributions, in ``dtype``."""
    if kind == "normal":
        x = rng.standard_normal((n, d))
    elif kind == "ties":
        x = rng.integers(-3, 4, size=(n, d)).astype(F64)
    elif kind == "equal":
        x = np.tile(rng.standard_normal(d), (n, 1))
    elif kind == "offset":
        x = 1e4 + 1e-3 * rng.standard_normal((n, d))
    else:  # pragma: no cover - a typo in a parametrisation
        raise AssertionError(kind)
    return x.astype(dtype)


def make_weights(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Non-negative weights, not all zero: positive reals, some zeros, or small integers."""
    if kind == "positive":
        w = rng.uniform(0.1, 5.0, n)
    elif kind == "zeros":
        w = rng.uniform(0.1, 5.0, n)
        w[rng.random(n) < 0.35] = 0.0
    elif kind == "integers":
        w = rng.integers(0, 5, n).astype(F64)
    else:  # pragma: no cover
        raise AssertionError(kind)
    if not w.any():
        w[rng.integers(n)] = 1.0
    return w


def rtol_of(dtype: Any) -> float:
    """The project's tolerance for sums: 1e-6 in float32, 1e-12 in float64."""
    return 1e-6 if np.dtype(dtype) == F32 else 1e-12


def scale_of(x: np.ndarray) -> float:
    """Magnitude of the data, for the absolute part of the tolerance."""
    return max(float(np.max(np.abs(np.asarray(x, F64)))), 1e-300)


def assert_sum_close(got: np.ndarray, ref64: Any, dtype: Any, scale: float) -> None:
    """``got`` (of ``dtype``) equals the float64 reference cast to ``dtype``, to tolerance."""
    expected = np.asarray(ref64, dtype=F64).astype(dtype)
    assert got.dtype == np.dtype(dtype)
    assert got.shape == expected.shape
    rtol = rtol_of(dtype)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale)


def assert_exact(got: np.ndarray, expected: Any, dtype: Any) -> None:
    """Order statistics: bit-for-bit equal (up to the sign of zero), in ``dtype``."""
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, np.asarray(expected).astype(dtype), strict=True)


def on_numpy(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on the numpy reference backend."""
    with _backend.using("numpy"):
        return fn(*args, **kwargs)


def slow_trimmed_mean(x: np.ndarray, k: int, weights: Any = None) -> np.ndarray:
    """Per coordinate: sort (value, index) pairs, drop ``k`` each end, weighted mean of the rest.

    A coordinate whose kept weights are all zero is NaN.
    """
    n, d = x.shape
    w = [1.0] * n if weights is None else [float(v) for v in weights]
    out = []
    for j in range(d):
        pairs = sorted((float(x[i, j]), i) for i in range(n))
        kept = pairs[k : n - k]
        num = math.fsum(w[i] * v for v, i in kept)
        den = math.fsum(w[i] for _, i in kept)
        out.append(num / den if den > 0 else math.nan)
    return np.array(out)


def slow_weighted_median(x: np.ndarray, weights: Any = None) -> np.ndarray:
    """Per coordinate, with exact (rational) cumulative weights C over (value, index) order.

    ``lo`` is the first value with 2C >= W, ``hi`` the first with 2C > W; returns (lo + hi) / 2
    computed in float64 and cast to the input dtype.
    """
    n, d = x.shape
    w = [Fraction(1)] * n if weights is None else [Fraction(float(v)) for v in weights]
    total = sum(w, Fraction(0))
    out = []
    for j in range(d):
        pairs = sorted((float(x[i, j]), i) for i in range(n))
        c = Fraction(0)
        lo = hi = None
        for v, i in pairs:
            c += w[i]
            if lo is None and 2 * c >= total:
                lo = v
            if 2 * c > total:
                hi = v
                break
        assert lo is not None and hi is not None
        out.append(0.5 * (lo + hi))
    return np.array(out, dtype=F64).astype(x.dtype)


def sorted_slice_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Unweighted trimmed mean by a full sort, in float64."""
    n = x.shape[0]
    return np.sort(x.astype(F64), axis=0)[k : n - k].mean(axis=0)


# ----------------------------------------------------------------------------- self-checks


def test_slow_references_on_hand_computed_cases() -> None:
    """The slow references give the hand-computed answers they are trusted for."""
    x = np.array([[3.0], [1.0], [2.0], [10.0]])
    np.testing.assert_array_equal(slow_weighted_median(x), [2.5])
    np.testing.assert_array_equal(slow_weighted_median(x, [1, 1, 1, 5]), [10.0])
    np.testing.assert_array_equal(slow_weighted_median(x, [1, 1, 2, 0]), [2.0])
    np.testing.assert_array_equal(slow_weighted_median(x, [0.1] * 4), [2.5])
    np.testing.assert_array_equal(slow_trimmed_mean(x, 1), [2.5])
    np.testing.assert_array_equal(slow_trimmed_mean(x, 1, [1, 1, 3, 1]), [2.25])
    ties = np.array([[1.0], [1.0], [1.0], [5.0]])
    # Equal values: the lower index counts as the smaller, so k=1 drops row 0 and row 3.
    np.testing.assert_array_equal(slow_trimmed_mean(ties, 1, [100, 1, 1, 1]), [1.0])
    assert np.isnan(slow_trimmed_mean(ties, 1, [1, 0, 0, 1])[0])


# ----------------------------------------------------------------------------- unweighted


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_mean_matches_np_average(backend, kind, dtype, shape, rng):
    """mean equals np.average on float64 data, and the numpy reference."""
    x = make(kind, *shape, dtype, rng)
    got = hierfed.mean(x)
    assert_sum_close(got, np.average(x.astype(F64), axis=0), dtype, scale_of(x))
    if backend != "numpy":
        assert_sum_close(got, on_numpy(hierfed.mean, x), dtype, scale_of(x))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_trimmed_mean_matches_scipy(backend, kind, dtype, shape, rng):
    """trimmed_mean equals scipy.stats.trim_mean on float64 data, and the numpy reference."""
    x = make(kind, *shape, dtype, rng)
    for ratio in (0.1, 0.25, 0.45):
        got = hierfed.trimmed_mean(x, ratio)
        ref = stats.trim_mean(x.astype(F64), ratio, axis=0)
        assert_sum_close(got, ref, dtype, scale_of(x))
        if backend != "numpy":
            assert_sum_close(got, on_numpy(hierfed.trimmed_mean, x, ratio), dtype, scale_of(x))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_median_equals_np_median_exactly(backend, kind, dtype, shape, rng):
    """median is bit-for-bit np.median, and the numpy reference."""
    x = make(kind, *shape, dtype, rng)
    got = hierfed.median(x)
    assert_exact(got, np.median(x, axis=0), dtype)
    if backend != "numpy":
        assert_exact(got, on_numpy(hierfed.median, x), dtype)


@pytest.mark.parametrize("k", [1, 2, 4, 8, 9, 12, 20])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["normal", "ties", "offset"])
def test_n_trim_small_and_large(backend, kind, dtype, k, rng):
    """Both algorithm paths (k <= 8 and k > 8) give the sorted-slice mean."""
    x = make(kind, 41, 19, dtype, rng)
    got = hierfed.trimmed_mean(x, n_trim=k)
    assert_sum_close(got, sorted_slice_mean(x, k), dtype, scale_of(x))
    if backend != "numpy":
        assert_sum_close(got, on_numpy(hierfed.trimmed_mean, x, n_trim=k), dtype, scale_of(x))


@pytest.mark.parametrize("n", [2, 3, 4, 15, 16, 17, 31, 32, 33, 64, 65, 100, 129])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_many_update_counts(backend, dtype, n, rng):
    """Update counts around powers of two (sorting networks are padded to them)."""
    for kind in ("normal", "ties"):
        x = make(kind, n, 37, dtype, rng)
        assert_exact(hierfed.median(x), np.median(x, axis=0), dtype)
        w = make_weights("integers", n, rng)
        assert_exact(hierfed.median(x[:, :9], weights=w), slow_weighted_median(x[:, :9], w), dtype)
        for k in sorted({(n - 1) // 2, min(8, (n - 1) // 2), n // 4}):
            got = hierfed.trimmed_mean(x, n_trim=k)
            assert_sum_close(got, sorted_slice_mean(x, k), dtype, scale_of(x))
        k = (n - 1) // 3
        wp = make_weights("positive", n, rng)
        got = hierfed.trimmed_mean(x[:, :9], n_trim=k, weights=wp)
        assert_sum_close(got, slow_trimmed_mean(x[:, :9], k, wp), dtype, scale_of(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_subnormal_values(backend, dtype):
    """Subnormal inputs are not flushed to zero."""
    tiny = 1e-40 if dtype == F32 else 5e-320
    x = (np.arange(1.0, 8.0)[:, None] * np.array([1.0, 2.0, 3.0, -1.0]) * tiny).astype(dtype)
    assert np.all(x != 0)
    assert_exact(hierfed.median(x), np.median(x, axis=0), dtype)
    assert_exact(hierfed.trimmed_mean(x, n_trim=3), np.median(x, axis=0), dtype)
    np.testing.assert_array_equal(hierfed.mean(x), np.mean(x.astype(F64), axis=0).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_single_update_is_returned_exactly(backend, kind, dtype, rng):
    """n = 1: mean, median and trimmed mean (k = 0) return the update itself."""
    x = make(kind, 1, 23, dtype, rng)
    assert_exact(hierfed.mean(x), x[0], dtype)
    assert_exact(hierfed.median(x), x[0], dtype)
    assert_exact(hierfed.trimmed_mean(x, 0.4), x[0], dtype)
    assert_exact(hierfed.median(x, weights=[0.3]), x[0], dtype)


@pytest.mark.parametrize("k", [0, 1, 3, 8, 9, 12])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", ["normal", "ties", "offset"])
def test_trimmed_mean_minimum_n_is_the_median(backend, kind, dtype, k, rng):
    """n = 2k + 1 keeps one value per coordinate: the median, exactly."""
    x = make(kind, 2 * k + 1, 37, dtype, rng)
    assert_exact(hierfed.trimmed_mean(x, n_trim=k), np.median(x, axis=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_trim_zero_equals_mean(backend, dtype, rng):
    """k = 0 (by n_trim or trim_ratio) is the plain mean, weighted or not."""
    x = make("normal", 13, 29, dtype, rng)
    w = make_weights("zeros", 13, rng)
    for kwargs in ({"n_trim": 0}, {"trim_ratio": 0.0}, {"trim_ratio": 0.05}):
        assert_sum_close(hierfed.trimmed_mean(x, **kwargs), hierfed.mean(x), dtype, scale_of(x))
        assert_sum_close(
            hierfed.trimmed_mean(x, weights=w, **kwargs),
            np.average(x.astype(F64), axis=0, weights=w),
            dtype,
            scale_of(x),
        )


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("mean", {}), ("trimmed_mean", {"n_trim": 0}), ("trimmed_mean", {"n_trim": 100})],
    ids=["mean", "trimmed_mean_k0", "trimmed_mean_k100"],
)
def test_float32_sums_accumulate_in_float64(backend, name, kwargs):
    """float32 sums are accumulated in float64: tiny values next to +-1 are not lost."""
    tiny = np.float32(2.0**-20)
    col = np.concatenate([-np.ones(250), np.full(501, tiny), np.ones(250)]).astype(F32)
    x = np.stack([col, col[::-1], -col], axis=1)  # (1001, 3)
    got = getattr(hierfed, name)(x, **kwargs)
    k = kwargs.get("n_trim", 0)
    expected = sorted_slice_mean(x, k).astype(F32)
    assert got.dtype == np.dtype(F32)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)


# ----------------------------------------------------------------------------- Byzantine rows


def byzantine(n: int, d: int, n_hi: int, n_lo: int, dtype: Any, rng: np.random.Generator):
    """Honest normal rows with ``n_hi`` rows of +1e30 and ``n_lo`` rows of -1e30 mixed in."""
    x = (0.5 + 2.0 * rng.standard_normal((n, d))).astype(dtype)
    honest_scale = scale_of(x)
    rows = rng.choice(n, n_hi + n_lo, replace=False)
    x[rows[:n_hi]] = 1e30
    x[rows[n_hi:]] = -1e30
    # Some Byzantine values on the other side in a few coordinates, to mix orders.
    x[rows[0], ::5] = -1e30
    return x, honest_scale, np.setdiff1d(np.arange(n), rows)


@pytest.mark.parametrize("k", [3, 12])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_trimmed_mean_removes_byzantine_values(backend, dtype, k, rng):
    """+-1e30 rows are trimmed away without disturbing the honest values."""
    n = 3 * k + 4
    x, honest_scale, honest = byzantine(n, 1003, k, k - 1, dtype, rng)
    got = hierfed.trimmed_mean(x, n_trim=k)
    assert_sum_close(got, sorted_slice_mean(x, k), dtype, honest_scale)
    scipy_ref = stats.trim_mean(x.astype(F64), (k + 0.5) / n, axis=0)
    assert_sum_close(got, scipy_ref, dtype, honest_scale)
    assert np.all(got >= x[honest].min(axis=0)) and np.all(got <= x[honest].max(axis=0))
    via_ratio = hierfed.trimmed_mean(x, (k + 0.5) / n)
    assert_sum_close(via_ratio, scipy_ref, dtype, honest_scale)


@pytest.mark.parametrize("k", [3, 12])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_weighted_trimmed_mean_removes_byzantine_values(backend, dtype, k, rng):
    """Weighted: the slow reference, to tolerance scaled to the honest values."""
    n = 3 * k + 4
    x, honest_scale, _ = byzantine(n, 33, k, k - 1, dtype, rng)
    w = make_weights("positive", n, rng)
    got = hierfed.trimmed_mean(x, n_trim=k, weights=w)
    assert_sum_close(got, slow_trimmed_mean(x, k, w), dtype, honest_scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_median_ignores_byzantine_values(backend, dtype, rng):
    """median with +-1e30 rows is still np.median exactly (and the weighted reference)."""
    x, _, _ = byzantine(25, 1003, 5, 4, dtype, rng)
    assert_exact(hierfed.median(x), np.median(x, axis=0), dtype)
    w = make_weights("integers", 25, rng)
    assert_exact(hierfed.median(x[:, :40], weights=w), slow_weighted_median(x[:, :40], w), dtype)


# ----------------------------------------------------------------------------- weighted


@pytest.mark.parametrize("shape", WSHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_mean_matches_np_average(backend, kind, dtype, shape, rng):
    """Weighted mean equals np.average(weights=...) on float64 data."""
    x = make(kind, *shape, dtype, rng)
    for wkind in WEIGHT_KINDS:
        w = make_weights(wkind, shape[0], rng)
        got = hierfed.mean(x, weights=w)
        assert_sum_close(got, np.average(x.astype(F64), axis=0, weights=w), dtype, scale_of(x))
        if backend != "numpy":
            assert_sum_close(got, on_numpy(hierfed.mean, x, weights=w), dtype, scale_of(x))


@pytest.mark.parametrize("shape", WSHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_median_matches_slow_reference(backend, kind, dtype, shape, rng):
    """Weighted median equals the slow (value, index) transcription exactly."""
    x = make(kind, *shape, dtype, rng)
    for wkind in WEIGHT_KINDS:
        w = make_weights(wkind, shape[0], rng)
        got = hierfed.median(x, weights=w)
        assert_exact(got, slow_weighted_median(x, w), dtype)
        if backend != "numpy":
            assert_exact(got, on_numpy(hierfed.median, x, weights=w), dtype)


@pytest.mark.parametrize("shape", WSHAPES, ids=str)
@pytest.mark.parametrize("wkind", WEIGHT_KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_trimmed_mean_matches_slow_reference(backend, kind, dtype, wkind, shape, rng):
    """Weighted trimmed mean equals the slow reference (ties: lower index is smaller).

    k is small (<= 2) and as large as n allows. Where the slow reference finds a coordinate
    whose kept weights are all zero, the package must raise ValueError instead.
    """
    n = shape[0]
    x = make(kind, *shape, dtype, rng)
    w = make_weights(wkind, n, rng)
    for k in sorted({min(2, (n - 1) // 2), (n - 1) // 2}):
        ref = slow_trimmed_mean(x, k, w)
        if np.isnan(ref).any():
            with pytest.raises(ValueError, match="weight zero"):
                hierfed.trimmed_mean(x, n_trim=k, weights=w)
            continue
        got = hierfed.trimmed_mean(x, n_trim=k, weights=w)
        assert_sum_close(got, ref, dtype, scale_of(x))
        if backend != "numpy":
            expected = on_numpy(hierfed.trimmed_mean, x, n_trim=k, weights=w)
            assert_sum_close(got, expected, dtype, scale_of(x))


@pytest.mark.parametrize(
    ("column", "weights", "expected"),
    [
        # tie at the low cut: (2, row 0) is the smaller and is dropped, row 1 is kept
        ([2, 2, 3, 4, 9], [1, 10, 1, 1, 1], 27 / 12),
        # tie at the high cut: (7, row 4) is the larger and is dropped, row 3 is kept
        ([0, 1, 2, 7, 7], [1, 1, 1, 10, 1], 73 / 12),
        # tied rows not adjacent: row 0 is dropped, row 2 kept
        ([2, 9, 2, 3, 4], [10, 1, 1, 1, 1], 3.0),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_weighted_trimmed_mean_breaks_ties_by_index(backend, dtype, column, weights, expected):
    """Among equal values the lower index counts as the smaller (k = 1, n = 5)."""
    x = np.array(column, dtype=dtype)[:, None]
    got = hierfed.trimmed_mean(x, n_trim=1, weights=weights)
    np.testing.assert_allclose(got, [expected], rtol=rtol_of(dtype))
    assert_sum_close(got, slow_trimmed_mean(x, 1, weights), dtype, 1.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_weighted_median_hand_cases(backend, dtype):
    """Weighted median on cases computed by hand, zero weights included."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]], dtype=dtype)
    cases = [
        ([1, 1, 1, 1], 2.5),
        ([1, 1, 1, 5], 4.0),
        ([3, 1, 1, 1], 1.5),  # cumulative weight reaches exactly half at 1.0
        ([1, 1, 0, 2], 3.0),  # exactly half at 2.0; the next positive-weight value is 4.0
        ([0, 0, 0, 1], 4.0),
        ([1, 0, 0, 1], 2.5),
        ([0.25, 0.25, 0.25, 0.25], 2.5),
    ]
    for w, expected in cases:
        assert_exact(hierfed.median(x, weights=w), [expected], dtype)


@pytest.mark.parametrize("c", [1.0, 0.5, 0.1, 1.0 / 3.0, 3.22234078916115])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_median_with_equal_weights_is_unweighted(backend, dtype, c, rng):
    """Equal weights (any value) give np.median exactly: exactly half is exactly half.

    E.g. ten weights of 0.1 reach exactly half the total after five values.
    """
    for n in (2, 4, 8, 10, 16):
        x = make("normal", n, 31, dtype, rng)
        assert_exact(hierfed.median(x, weights=[c] * n), np.median(x, axis=0), dtype)


@pytest.mark.parametrize("c", [1.0, 0.1, 3.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_means_with_equal_weights_are_unweighted(backend, dtype, c, rng):
    """Equal weights give the unweighted mean and trimmed mean."""
    x = make("normal", 10, 31, dtype, rng)
    w = [c] * 10
    assert_sum_close(hierfed.mean(x, weights=w), hierfed.mean(x), dtype, scale_of(x))
    assert_sum_close(
        hierfed.trimmed_mean(x, 0.2, weights=w), hierfed.trimmed_mean(x, 0.2), dtype, scale_of(x)
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_integer_weights_equal_repeated_rows(backend, dtype, rng):
    """Integer weights equal repeating each row that many times (mean; median exactly)."""
    x = make("ties", 9, 41, dtype, rng)
    w = np.array([0, 1, 2, 3, 1, 0, 4, 1, 2])
    rep = np.repeat(x, w, axis=0)
    assert_sum_close(hierfed.mean(x, weights=w), hierfed.mean(rep), dtype, scale_of(x))
    assert_exact(hierfed.median(x, weights=w), np.median(rep, axis=0), dtype)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("mean", {}), ("median", {}), ("trimmed_mean", {"n_trim": 1})],
    ids=["mean", "median", "trimmed_mean"],
)
def test_huge_weights_with_a_finite_total_do_not_overflow(backend, name, kwargs, rng):
    """Weights are accepted while their total is finite; they must then not overflow.

    Scaling all weights by one factor must not change the aggregate.
    """
    x = 100.0 * rng.standard_normal((5, 9))
    w = rng.uniform(1.0, 3.0, 5)
    fn = getattr(hierfed, name)
    small = fn(x, weights=w, **kwargs)
    huge = fn(x, weights=w * 1e307, **kwargs)
    assert np.isfinite(huge).all()
    np.testing.assert_allclose(huge, small, rtol=1e-12, atol=1e-12 * scale_of(x))


@pytest.mark.parametrize("name", ["mean", "trimmed_mean"])
def test_an_aggregate_that_overflows_float64_raises(backend, name):
    """Finite float64 values whose float64 sum overflows are refused, never returned as inf."""
    x = np.full((3, 4), 1.5e308)
    x[1] = 1.7e308
    with pytest.raises(ValueError, match=r"overflows float64"):
        getattr(hierfed, name)(x, **({"n_trim": 0} if name == "trimmed_mean" else {}))


def test_an_overflow_to_nan_raises_too(backend):
    """Found by fuzzing: sums overflowing both ways (+inf and -inf partial sums, here in
    numpy's pairwise summation) give NaN, which the overflow check (inf only) let through."""
    x = np.array(
        [1.4854047048601453e308, 1.2983614815909792e308, 9.6608678034422533e307,
         7.1440393780222297e307, 5.2673734521433691e306, 3.6733684130780992e307,
         -1.5194627823819746e308, 1.3888713944678897e308, -1.2159566548882981e308,
         7.0427246261810246e307, -7.6158568783377194e307]
    ).reshape(11, 1)  # fmt: skip
    for check_finite in (True, False):
        with pytest.raises(ValueError, match=r"overflows float64"):
            hierfed.trimmed_mean(x, 0.1, check_finite=check_finite)
    w = np.ones(11)
    w[0] = 0.0  # zero weights (a NaN may then be 0/0); weights scaled below 1: no overflow
    kept = np.sort(x[:, 0])[1:-1]
    kept_w = np.array([w[int(np.flatnonzero(x[:, 0] == v)[0])] for v in kept])
    want = math.fsum(kept_w * (kept / 4)) / kept_w.sum() * 4
    try:
        got = hierfed.trimmed_mean(x, 0.1, weights=w)
    except ValueError as exc:  # the reference's pairwise sums may overflow on the way
        assert backend == "numpy" and "overflows float64" in str(exc)
    else:
        np.testing.assert_allclose(got, [want], rtol=1e-12)


def test_median_near_the_float64_maximum_does_not_overflow(backend):
    """The two middle values are halved before they are added."""
    x = np.array([[1.5e308], [1.7e308], [1.5e308], [1.7e308]])
    np.testing.assert_array_equal(hierfed.median(x), [1.6e308])
    np.testing.assert_array_equal(hierfed.median(x[:3]), [1.5e308])
    np.testing.assert_array_equal(hierfed.median(x, [1, 1, 1, 1]), [1.6e308])


def test_aggregate_ignores_a_signature_set_on_the_public_rule(monkeypatch, rng) -> None:
    """Sphinx's autodoc_preserve_defaults sets ``__signature__`` on documented functions with
    placeholder defaults; ``aggregate`` must still pass the rule its real defaults."""
    import inspect

    x = rng.standard_normal((11, 5))
    for name in ("trimmed_mean", "bulyan"):
        public = getattr(hierfed, name)
        sig = inspect.signature(public)
        placeholders = [
            p if p.default is inspect.Parameter.empty else p.replace(default=object())
            for p in sig.parameters.values()
        ]
        monkeypatch.setattr(
            public, "__signature__", sig.replace(parameters=placeholders), raising=False
        )
        params = {"f": 2} if name == "bulyan" else {}
        got = hierfed.aggregate(x, name, **params).aggregate
        np.testing.assert_array_equal(got, np.asarray(public(x, **params)))
