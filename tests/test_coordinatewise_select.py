"""The median and trimmed means at hundreds of updates, where the kernels select instead of
sorting (the C++ kernels from n = 257 for the median and the unweighted trimmed means beyond
the pop network's k <= 8, 256 weighted; the numba twins from 2048, lowered to 256 here so that
the same cases reach them), and at n = 200 just below: every backend against independent
references.

References: ``np.median`` (exact), a full sort in float64 (unweighted trimmed mean) and a
stable (value, index) sort with ``math.fsum`` (weighted trimmed mean). Order statistics must
match exactly, sums to rtol 1e-6 (float32) or 1e-12 (float64). The inputs are the hard cases
of a selection: heavy ties (3 or 7 distinct values), all-equal columns, huge outliers and offsets,
zero weights, one coordinate, non-contiguous rows, one and two threads, and data built so that
the sample-based bracket holds hundreds of ties (the kernels' fallback to sorting).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import hierfed

F32, F64 = np.float32, np.float64


@pytest.fixture(autouse=True)
def numba_selects_from_256(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numba entry points take their selection kernels from n = 256 in these tests."""
    try:
        from hierfed._kernels.numba import coordinatewise as numba_coordinatewise
    except ImportError:  # no numba: nothing to lower
        return
    monkeypatch.setattr(numba_coordinatewise, "SELECT_MIN_N", 256)


KINDS = ["normal", "ties3", "ints", "equal", "outliers", "offset", "huge_offset"]


def make(kind: str, n: int, d: int, dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """An (n, d) input of one of the hard cases, in ``dtype``."""
    if kind == "normal":
        x = rng.standard_normal((n, d))
    elif kind == "ties3":
        x = rng.choice([-1.5, 0.25, 2.0], size=(n, d))
    elif kind == "ints":  # ties at both thresholds, brackets ending on tied values
        x = rng.integers(-3, 4, size=(n, d)).astype(np.float64)
    elif kind == "equal":
        x = np.tile(rng.standard_normal(d), (n, 1))
    elif kind == "outliers":  # 1/40 of the rows at 1e30, as many at -1e30 (all trimmed)
        x = rng.standard_normal((n, d))
        x[: n // 40] = 1e30
        x[n // 40 : n // 20] = -1e30
    elif kind == "offset":
        x = 1e6 + rng.standard_normal((n, d))
    elif kind == "huge_offset":  # float32: a few dozen distinct values, ties everywhere
        x = 1e30 * (1.0 + 1e-6 * rng.standard_normal((n, d)))
    else:  # pragma: no cover - a typo in a parametrisation
        raise AssertionError(kind)
    return x.astype(dtype)


def rtol_of(dtype: Any) -> float:
    return 1e-6 if dtype == F32 else 1e-12


def sorted_trimmed_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Drop the k smallest and largest per column after a full sort; the mean in float64."""
    return np.sort(x.astype(F64), axis=0)[k : x.shape[0] - k].mean(axis=0)


def slow_weighted_trimmed_mean(x: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """Per column: stable (value, index) order, ranks k..n-k-1 kept, fsum of w x over fsum w."""
    n = x.shape[0]
    out = []
    for col in x.T.astype(F64):
        kept = np.argsort(col, kind="stable")[k : n - k]
        out.append(math.fsum(w[kept] * col[kept]) / math.fsum(w[kept]))
    return np.array(out)


def assert_close(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    rtol = rtol_of(x.dtype)
    scale = float(np.abs(x[np.abs(x) < 1e29]).max(initial=1.0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_median_at_many_updates_is_np_median(backend, kind, dtype, rng):
    # odd and even n, d = 1, one full lane set, the first n that selects and one just below
    for n, d in ((1000, 37), (301, 1), (288, 16), (257, 16), (200, 5)):
        x = make(kind, n, d, dtype, rng)
        got = hierfed.median(x)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.median(x, axis=0).astype(dtype), strict=True)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_trimmed_mean_at_many_updates(backend, kind, dtype, rng):
    for n, d, k in (
        (1000, 37, 100),
        (1000, 5, 499),
        (600, 1, 60),
        (513, 16, 9),
        (300, 3, 20),
        (257, 16, 25),  # the first n that selects
        (200, 5, 20),  # the networks
    ):
        x = make(kind, n, d, dtype, rng)
        got = hierfed.trimmed_mean(x, n_trim=k)
        assert got.dtype == dtype
        assert_close(got, sorted_trimmed_mean(x, k), x)
    # n = 2k + 1 keeps one value per coordinate: the median, exactly
    x = make(kind, 513, 7, dtype, rng)
    np.testing.assert_array_equal(hierfed.trimmed_mean(x, n_trim=256), np.median(x, axis=0))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_trimmed_mean_at_many_updates(backend, kind, dtype, rng):
    for n, d in ((1000, 21), (257, 3), (256, 1)):
        x = make(kind, n, d, dtype, rng)
        w = rng.uniform(0.1, 3.0, n)
        w[rng.random(n) < 0.3] = 0.0  # weights with zeros
        ks = (0, n // 10, 7 * n // 20)
        for k in ks if kind != "outliers" else ks[1:]:  # k = 0 would cancel 1e30s
            got = hierfed.trimmed_mean(x, n_trim=k, weights=w)
            assert_close(got, slow_weighted_trimmed_mean(x, k, w), x)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_weighted_trimmed_mean_keeps_the_stable_order_among_ties(backend, dtype):
    """Ties at both thresholds: the rows kept among equal values are those a stable sort
    puts inside ranks [k, n - k), with the weights telling which rows they are."""
    n, k = 400, 100
    col = np.repeat([1.0, 2.0, 3.0, 4.0], n // 4)  # thresholds 2.0 and 3.0, all tied
    w = np.arange(1.0, n + 1.0)
    x = np.stack([col, col[::-1]], axis=1).astype(dtype)
    got = hierfed.trimmed_mean(x, n_trim=k, weights=w)
    assert_close(got, slow_weighted_trimmed_mean(x, k, w), x)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_one_and_two_threads_agree_bit_for_bit(backend, dtype, rng, restore_threads):
    """Blocks of coordinates go to threads whole, so the thread count changes nothing."""
    x = make("ints", 1000, 203, dtype, rng)  # ties: the brackets' hard case
    x[:, :100] = make("normal", 1000, 100, dtype, rng)
    w = rng.uniform(0.0, 2.0, 1000)
    calls = (
        lambda: hierfed.median(x),
        lambda: hierfed.trimmed_mean(x, n_trim=100),
        lambda: hierfed.trimmed_mean(x, n_trim=100, weights=w),
    )
    results = []
    for threads in (1, 2):
        hierfed.set_num_threads(threads)
        results.append([call() for call in calls])
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two, strict=True)
    np.testing.assert_array_equal(results[0][0], np.median(x, axis=0).astype(dtype))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_non_contiguous_updates(backend, dtype, rng):
    """Strided rows and a Fortran-order array give the same results as a C-order copy."""
    x = rng.standard_normal((600, 60)).astype(dtype)
    w = rng.uniform(0.0, 1.0, 600)
    strided = [r[::2] for r in x]
    want = x[:, ::2]
    np.testing.assert_array_equal(hierfed.median(strided), np.median(want, axis=0))
    assert_close(hierfed.trimmed_mean(strided, n_trim=60), sorted_trimmed_mean(want, 60), want)
    fortran = np.asfortranarray(x)
    np.testing.assert_array_equal(hierfed.median(fortran), np.median(x, axis=0))
    assert_close(
        hierfed.trimmed_mean(fortran, n_trim=60, weights=w),
        slow_weighted_trimmed_mean(x, 60, w),
        x,
    )


@pytest.mark.parametrize("dtype", [F32, F64])
def test_brackets_full_of_ties_fall_back_exactly(backend, dtype):
    """The sampled rows (every n/s-th) spread out, all the others one value between two of
    them: the bracket around the median holds ~900 equal values, too many to keep, so the
    kernel falls back to sorting; the result is still np.median and the sorted trimmed mean."""
    n, s = 1000, 64
    col = np.full(n, 0.3)
    sampled = (2 * np.arange(s) + 1) * n // (2 * s)
    col[sampled] = np.linspace(-10.0, 10.0, s)
    x = np.stack([col, -col, col + 5.0], axis=1).astype(dtype)
    np.testing.assert_array_equal(hierfed.median(x), np.median(x, axis=0))
    assert_close(hierfed.trimmed_mean(x, n_trim=100), sorted_trimmed_mean(x, 100), x)


def test_non_finite_input_at_many_updates_raises(backend, rng):
    x = rng.standard_normal((500, 40)).astype(F32)
    x[123, 17] = np.nan
    for call in (lambda: hierfed.median(x), lambda: hierfed.trimmed_mean(x, n_trim=50)):
        with pytest.raises(ValueError, match=r"non-finite|NaN|finite"):
            call()


def test_sums_near_the_float64_maximum_follow_the_reference(backend):
    """Kept values near 1.8e308 of both signs: a sum in rank order overflows (all negatives
    first), one in row order (alternating) would not. The kernels then sum in rank order as
    the reference does, so both refuse the call (found by fuzz/aggregator_targets.py)."""
    n = 300
    big = 1.7e308 - np.arange(n) * 1e300
    col = np.where(np.arange(n) % 2 == 0, big, -big)
    x = np.stack([col, col[::-1]], axis=1)
    w = np.linspace(1.0, 2.0, n)
    for weights in (None, w):
        numpy_reference = hierfed._backend.using("numpy")
        with (
            numpy_reference,
            np.errstate(over="ignore"),
            pytest.raises(ValueError, match="overflow"),
        ):
            hierfed.trimmed_mean(x, n_trim=20, weights=weights)
        with pytest.raises(ValueError, match="overflow"):
            hierfed.trimmed_mean(x, n_trim=20, weights=weights)
