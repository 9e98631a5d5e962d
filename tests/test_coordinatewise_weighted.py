"""The weighted trimmed mean and the weighted median at every n (3 to 1000 updates): every
backend against the numpy reference and independent slow references.

The weighted trimmed mean takes its thresholds from the unweighted kernels (pop network,
value network, selection) and resolves ties at them by row order; the weighted median sorts
(value, row index) pairs and sums the weights lane-parallel, or (C++ from n = 64, numba from
256) selects by weight and sends blocks whose two sides tie to rounding to the networks.
References: the numpy backend (the definition: the weighted median exactly, bit for bit)
and a stable (value, index) sort with ``math.fsum`` (the weighted trimmed mean, to rounding).
Inputs: heavy ties (3 distinct values), all-equal columns, outliers, huge offsets, weights with
zeros, d = 1 and a partial last block, non-contiguous rows, float32 and float64, 1 and 2
threads.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import hierfed
from hierfed import _backend

F32, F64 = np.float32, np.float64
KINDS = ["normal", "ties3", "equal", "outliers", "offset"]
# n and d: below and above the selection threshold (256), odd and even n, d = 1 and d not a
# multiple of any vector width.
SHAPES = [(3, 5), (10, 37), (20, 1), (50, 19), (200, 9), (1000, 7)]


def make(kind: str, n: int, d: int, dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """An (n, d) input of one of the hard cases, in ``dtype``."""
    if kind == "normal":
        x = rng.standard_normal((n, d))
    elif kind == "ties3":
        x = rng.choice([-1.5, 0.25, 2.0], size=(n, d))
    elif kind == "equal":
        x = np.tile(rng.standard_normal(d), (n, 1))
    elif kind == "outliers":  # rows at +-1e30 (trimmed by the k used below)
        x = rng.standard_normal((n, d))
        x[: max(1, n // 20)] = 1e30
        x[max(1, n // 20) : max(2, n // 10)] = -1e30
    elif kind == "offset":
        x = 1e6 + rng.standard_normal((n, d))
    else:  # pragma: no cover - a typo in a parametrisation
        raise AssertionError(kind)
    return x.astype(dtype)


def weights_with_zeros(n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.uniform(0.1, 3.0, n)
    w[rng.random(n) < 0.3] = 0.0
    w[0] = 1.0  # never all zero
    return w


def slow_weighted_trimmed_mean(x: np.ndarray, k: int, w: np.ndarray) -> np.ndarray:
    """Per column: stable (value, index) order, ranks k..n-k-1 kept, fsum of w x over fsum w."""
    n = x.shape[0]
    out = []
    for col in x.T.astype(F64):
        kept = np.argsort(col, kind="stable")[k : n - k]
        ws = math.fsum(w[kept])
        out.append(math.fsum(w[kept] * col[kept]) / ws if ws > 0 else math.nan)
    return np.array(out)


def assert_close(got: np.ndarray, want: np.ndarray, x: np.ndarray) -> None:
    rtol = 1e-6 if x.dtype == F32 else 1e-12
    scale = float(np.abs(x[np.abs(x) < 1e29]).max(initial=1.0))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


def reference_median(x: Any, w: np.ndarray) -> np.ndarray:
    with _backend.using("numpy"):
        return hierfed.median(x, weights=w)


def trims(n: int, kind: str) -> list[int]:
    """k = 0, the pop network's k <= 8, a sorting network's or a selection's larger k."""
    ks = {1, min(8, (n - 1) // 2), n // 10, (n - 1) // 2}
    if kind != "outliers":  # k = 0 keeps the outliers, whose sums cancel
        ks.add(0)
    return sorted(k for k in ks if kind != "outliers" or k >= max(2, n // 10))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_trimmed_mean_at_every_n(backend, kind, dtype, rng):
    for n, d in SHAPES:
        x = make(kind, n, d, dtype, rng)
        w = weights_with_zeros(n, rng)
        for k in trims(n, kind):
            want = slow_weighted_trimmed_mean(x, k, w)
            if not np.isfinite(want).all():  # some coordinate kept only zero weights
                with pytest.raises(ValueError, match="weight zero"):
                    hierfed.trimmed_mean(x, n_trim=k, weights=w)
                continue
            got = hierfed.trimmed_mean(x, n_trim=k, weights=w)
            assert got.dtype == dtype
            assert_close(got, want, x)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_median_at_every_n_is_the_reference_exactly(backend, kind, dtype, rng):
    for n, d in SHAPES:
        x = make(kind, n, d, dtype, rng)
        for w in (weights_with_zeros(n, rng), 0.9 ** rng.integers(0, 6, n), np.full(n, 0.1)):
            got = hierfed.median(x, weights=w)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, reference_median(x, w), strict=True)
        # equal weights: exactly the unweighted median (bit-equal sums on both sides)
        np.testing.assert_array_equal(
            hierfed.median(x, weights=np.full(n, 0.1)), np.median(x, axis=0).astype(dtype)
        )


def test_weighted_median_against_a_slow_definition(backend, rng):
    """An independent reference: per column, sorted by (value, index), the first rank whose
    weight at or below reaches the weight above, and the first that exceeds it."""
    n, d = 41, 23
    x = rng.choice([-1.0, 0.0, 3.0, 7.5], size=(n, d)).astype(F64)
    w = rng.integers(0, 4, n).astype(F64)  # small integers: every sum exact, ties at half
    w[0] = 1.0
    want = []
    for col in x.T:
        order = np.argsort(col, kind="stable")
        ws = [float(v) for v in w[order]]
        lo = next(q for q in range(n) if sum(ws[: q + 1]) >= sum(ws[q + 1 :]))
        hi = next(q for q in range(n) if sum(ws[: q + 1]) > sum(ws[q + 1 :]))
        want.append((col[order[lo]] + col[order[hi]]) / 2)
    np.testing.assert_array_equal(hierfed.median(x, weights=w), np.array(want))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_ties_at_both_thresholds_keep_the_stable_order(backend, dtype):
    """All values tied at the thresholds, below the selection's n too: the rows kept among
    equal values are those a stable sort puts inside ranks [k, n - k)."""
    for n, k in ((40, 5), (40, 12), (120, 30)):
        col = np.repeat([1.0, 2.0, 3.0, 4.0], n // 4)
        w = np.arange(1.0, n + 1.0)
        x = np.stack([col, col[::-1], np.roll(col, 7)], axis=1).astype(dtype)
        got = hierfed.trimmed_mean(x, n_trim=k, weights=w)
        assert_close(got, slow_weighted_trimmed_mean(x, k, w), x)
        np.testing.assert_array_equal(hierfed.median(x, weights=w), reference_median(x, w))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_non_contiguous_and_threads(backend, dtype, rng, restore_threads):
    x = rng.standard_normal((30, 301)).astype(dtype)
    w = weights_with_zeros(30, rng)
    strided = [r[::3] for r in x]
    want = x[:, ::3]
    for threads in (1, 2):
        hierfed.set_num_threads(threads)
        np.testing.assert_array_equal(hierfed.median(strided, weights=w), reference_median(want, w))
        assert_close(
            hierfed.trimmed_mean(np.asfortranarray(x), n_trim=3, weights=w),
            slow_weighted_trimmed_mean(x, 3, w),
            x,
        )


def test_sums_near_the_float64_maximum_below_the_selection(backend):
    """Kept values near 1.8e308 of both signs at n < 256: the kernels sum in the reference's
    rank order (which overflows), so the call is refused as the reference refuses it."""
    n = 40
    big = 1.7e308 - np.arange(n) * 1e300
    col = np.where(np.arange(n) % 2 == 0, big, -big)
    x = np.stack([col, col[::-1]], axis=1)
    w = np.linspace(1.0, 2.0, n)
    for k in (3, 12):
        with pytest.raises(ValueError, match="overflow"):
            hierfed.trimmed_mean(x, n_trim=k, weights=w)


def selection_weights(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Weights for the weighted median's selection by weight (n >= 64 in C++)."""
    if kind == "staleness":
        return 0.9 ** rng.integers(0, 5, n).astype(F64)
    if kind == "zeros":
        return weights_with_zeros(n, rng)
    if kind == "one":  # all but one zero: the median is that row's value
        w = np.zeros(n)
        w[n // 3] = 2.5
        return w
    if kind == "halves":  # small integers: the two sides tie exactly at many crossings
        return rng.integers(1, 3, n).astype(F64)
    if kind == "skewed":  # one row holds almost half the weight, the rest spans 1e-12..1
        w = 10.0 ** rng.uniform(-12, 0, n)
        w[n // 2] = w.sum() * 0.999
        return w
    raise AssertionError(kind)  # pragma: no cover - a typo in a parametrisation


@pytest.mark.parametrize("dtype", [F32, F64])
def test_weighted_median_selection_is_the_reference_exactly(backend, dtype, rng):
    """The selection by weight (C++ from n = 64) on the hard cases: heavy ties, all-equal
    columns, huge offsets, weights with zeros, all but one zero, ties of the two sides at the
    half-weight crossing, weights spanning 12 decades; bit for bit the numpy reference."""
    kinds = ("normal", "ties3", "equal", "offset")
    for n, d in ((50, 37), (64, 33), (65, 17), (200, 40), (1000, 19)):
        for kind in kinds:
            x = make(kind, n, d, dtype, rng)
            if kind == "offset":  # near the float's top: sums of values would overflow
                x = x / 1e6 * (1e37 if dtype == F32 else 1e306)
            for wk in ("staleness", "zeros", "one", "halves", "skewed"):
                w = selection_weights(wk, n, rng)
                got = hierfed.median(x, weights=w)
                assert got.dtype == dtype
                np.testing.assert_array_equal(got, reference_median(x, w), strict=True)


def test_weighted_median_selection_crossing_inside_a_tie(backend):
    """The half weight reached inside a run of equal values, and exactly at the end of one
    (two sides equal: the median is the mean of the two values around the crossing)."""
    n = 128
    col = np.repeat([1.0, 2.0, 3.0, 4.0], n // 4)
    w = np.ones(n)
    w[:32] = 3.0  # weight 96 below 2.0, 32 each at 2.0, 3.0 and 4.0: 96 of 192 at half
    x = np.stack([col, col[::-1], np.roll(col, 5), np.roll(col, 40)], axis=1)
    for dtype in (F32, F64):
        xs = x.astype(dtype)
        got = hierfed.median(xs, weights=w)
        np.testing.assert_array_equal(got, reference_median(xs, w), strict=True)
    assert hierfed.median(x[:, :1], weights=w)[0] == 1.5  # sides equal: (1 + 2) / 2


@pytest.mark.parametrize("dtype", [F32, F64])
def test_weighted_median_selection_layouts_and_threads(backend, dtype, rng, restore_threads):
    """d = 1, a partial last block, non-contiguous rows, 1 and 2 threads, at n = 300."""
    n = 300
    w = 0.9 ** rng.integers(0, 5, n).astype(F64)
    x = rng.standard_normal((n, 203)).astype(dtype)
    for threads in (1, 2):
        hierfed.set_num_threads(threads)
        for xs in (x[:, :1], x[:, :45], [r[::3] for r in x], np.asfortranarray(x)):
            want = reference_median(np.asarray(xs), w)
            np.testing.assert_array_equal(hierfed.median(xs, weights=w), want, strict=True)


def window_weights(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Weights that put the weighted median at the edges of the ranks the weights alone allow
    (C++ prunes its value network to them): nearly equal ones (a window of a rank or two), two
    levels whose half total falls exactly on a rank (sides equal), one dominant weight (the
    window spans every rank), zeros, and the federation's 0.9**s."""
    near = 1.0 + rng.uniform(0.0, 1e-12, n)
    levels = np.where(np.arange(n) % 2 == 0, 1.0, 2.0)
    dominant = np.full(n, 1e-3)
    dominant[n // 3] = 1.0
    zeros = np.ones(n)
    zeros[: n // 2] = 0.0
    return [near, levels, dominant, zeros, 0.9 ** rng.integers(0, 5, n).astype(F64)]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", ["normal", "ties3", "equal"])
def test_weighted_median_at_the_window_edges_is_the_reference_exactly(backend, kind, dtype, rng):
    for n in (*range(2, 24), 31, 32, 33, 47, 63):
        x = make(kind, n, 37, dtype, rng)
        for w in window_weights(n, rng):
            got = hierfed.median(x, weights=w)
            np.testing.assert_array_equal(got, reference_median(x, w), strict=True)
