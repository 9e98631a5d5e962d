"""The bucket-mean kernel (mixing family) and ``hierfed.bucketing`` on it, on every backend.

Each backend against the numpy reference (the same bits: float64 sums in the given order), the
reference against a slow obvious definition and against exact sums (``math.fsum``), and the
public function against the definition of Karimireddy et al. 2022 and ByzFL's ``Bucketing``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import hierfed
from hierfed import _backend
from hierfed._kernels.numpy import mixing as reference
from hierfed.preaggregation import bucket_order

F32, F64 = np.float32, np.float64


def slow_bucket_means(x: np.ndarray, order: np.ndarray, s: int) -> np.ndarray:
    """Bucket b: rows order[b*s : b*s + s], added one by one in float64 from 0, / count."""
    out = []
    for p in range(0, len(x), s):
        members = order[p : p + s]
        acc = np.zeros(x.shape[1])
        for i in members:
            acc = acc + x[i].astype(F64)
        out.append((acc / len(members)).astype(x.dtype))
    return np.array(out)


def run(kernel, rows: list[np.ndarray], order: np.ndarray, s: int) -> tuple[bool, np.ndarray]:
    m = -(-len(rows) // s)
    out = np.empty((m, rows[0].size), rows[0].dtype)
    seen = kernel([rows], order.astype(np.int64), s, [out], 2)
    return bool(seen), out


CASES = [(1, 5, 1), (1, 3, 4), (2, 1, 2), (7, 1, 3), (10, 1000, 2), (11, 300, 4), (1000, 3, 7)]


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("n", "d", "s"), CASES)
def test_kernel_matches_reference_and_definition(backend, rng, dtype, n, d, s):
    x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 100.0, (n, 1))).astype(dtype)
    order = rng.permutation(n)
    seen, got = run(_backend.kernels().bucket_means, list(x), order, s)
    ref_seen, want = run(reference.bucket_means, list(x), order, s)
    assert not seen and not ref_seen
    np.testing.assert_array_equal(got, want)  # the same bits on every backend
    np.testing.assert_array_equal(want, slow_bucket_means(x, order, s))
    exact = [  # the true means, rounded once: the float64 sums are within a few ulps
        [math.fsum(float(x[i, j]) for i in order[p : p + s]) / len(order[p : p + s])]
        for p in range(0, n, s)
        for j in range(min(d, 3))
    ]
    first = want[:, : min(d, 3)].astype(F64).reshape(-1, 1)
    np.testing.assert_allclose(first, exact, rtol=1e-6 if dtype == F32 else 1e-13, atol=1e-300)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_kernel_on_strided_rows_and_segments(backend, rng, dtype):
    base = rng.standard_normal((30, 257)).astype(dtype)
    rows = list(base[::3])  # rows 3 apart in memory: any row stride
    order = rng.permutation(10)
    _, got = run(_backend.kernels().bucket_means, rows, order, 3)
    np.testing.assert_array_equal(got, slow_bucket_means(base[::3], order, 3))
    # two segments (a per-layer model): each its own output, the same buckets
    segs = [[r[:100] for r in rows], [r[100:].copy() for r in rows]]
    outs = [np.empty((4, 100), dtype), np.empty((4, 157), dtype)]
    assert not _backend.kernels().bucket_means(segs, order, 3, outs, 2)
    np.testing.assert_array_equal(np.concatenate(outs, axis=1), got)


def test_kernel_huge_offsets_and_non_finite(backend):
    k = _backend.kernels().bucket_means
    # float32 values 1e7 apart from their mean's digits: float32 sums would lose them
    x = (np.float32(1.6e7) + np.arange(8, dtype=F32)[:, None] * np.ones((1, 5), F32)).astype(F32)
    _, got = run(k, list(x), np.arange(8), 8)
    assert got[0, 0] == np.float32(1.6e7 + 3.5)
    # float64 near its maximum: the sum overflows, which the kernel reports
    big = np.full((4, 3), 1.5e308)
    assert run(k, list(big), np.arange(4), 2)[0]
    for bad in (np.inf, -np.inf, np.nan):
        y = np.ones((5, 70))
        y[3, 66] = bad
        seen, got = run(k, list(y), np.array([3, 0, 1, 2, 4]), 2)
        assert seen
        assert np.isfinite(got[1:]).all()  # only row 3's bucket (the first) meets it


@pytest.mark.parametrize(
    ("order", "s", "match"),
    [
        (np.array([0, 1, 1]), 2, "permutation"),
        (np.array([0, 1, 3]), 2, "permutation"),
        (np.array([0, 1, -1]), 2, "permutation"),
        (np.array([0, 1]), 2, "order"),
        (np.array([0, 1, 2]), 0, "s must"),
    ],
)
def test_kernel_refuses_bad_arguments(backend, order, s, match):
    """The compiled kernels read raw memory at ``order``'s indices: they check it (the numpy
    reference, which only validated callers reach, does not)."""
    if backend == "numpy":
        pytest.skip("the reference takes validated arguments")
    rows = list(np.ones((3, 4)))
    outs = [np.empty((max(1, -(-3 // max(s, 1))), 4))]
    with pytest.raises(ValueError, match=match):
        _backend.kernels().bucket_means([rows], order.astype(np.int64), s, outs, 1)


def test_bucketing_is_its_definition(backend, rng):
    """Karimireddy et al. 2022 with hierfed's permutation, every input form, n mod s > 0."""
    for dtype in (F32, F64):
        x = rng.standard_normal((11, 6)).astype(dtype)
        perm = np.random.default_rng(5).permutation(11)
        want = [x[perm[p : p + 3]].astype(F64).mean(axis=0) for p in range(0, 11, 3)]
        got = hierfed.bucketing(x, 3, seed=5)
        assert got.shape == (4, 6) and got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == F32 else 1e-14)
        listed = hierfed.bucketing(list(x), 3, seed=5)
        np.testing.assert_array_equal(np.array(listed), got)
        models = hierfed.bucketing([[r[:2].reshape(2, 1), r[2:]] for r in x], 3, seed=5)
        np.testing.assert_array_equal(
            np.array([np.concatenate([m[0].ravel(), m[1]]) for m in models]), got
        )
    order = bucket_order(11, 3, 5)
    assert sorted(order.tolist()) == list(range(11))
    assert [set(order[p : p + 3]) for p in range(0, 11, 3)] == [
        set(perm[p : p + 3]) for p in range(0, 11, 3)
    ]


def test_bucketing_non_contiguous_and_errors(backend, rng):
    x = rng.standard_normal((9, 40))
    view = x[:, ::2]  # strided rows
    np.testing.assert_array_equal(
        hierfed.bucketing(view, 2, seed=1), hierfed.bucketing(view.copy(), 2, seed=1)
    )
    y = x.copy()
    y[4, 7] = np.nan
    with pytest.raises(ValueError, match=r"updates\[4\] contains a non-finite"):
        hierfed.bucketing(y, 2, seed=1)
    unchecked = hierfed.bucketing(y, 9, seed=1, check_finite=False)  # one bucket of all
    assert np.isnan(unchecked[0, 7]) and np.isfinite(np.delete(unchecked[0], 7)).all()
    with pytest.raises(ValueError, match="overflows float64"):
        hierfed.bucketing(np.full((4, 3), 1.5e308), 2, seed=0)
    with pytest.raises(ValueError, match="s must be >= 1"):
        hierfed.bucketing(x, 0)
    with pytest.raises(TypeError, match="s must be an int"):
        hierfed.bucketing(x, 2.0)
    with pytest.raises(TypeError, match="seed must be"):
        hierfed.bucketing(x, 2, seed=True)


def test_bucketing_matches_byzfl_float32_large_n(backend, rng, monkeypatch):
    """ByzFL's Bucketing on hierfed's permutation, float32, n = 1000 (its sums are float32:
    they agree to float32 rounding)."""
    byzfl = pytest.importorskip("byzfl")
    from byzfl.aggregators import preaggregators

    x = rng.normal(1.0, 1.0, (1000, 9)).astype(F32)
    order = np.random.default_rng(3).permutation(1000)

    class Ours:  # ByzFL's random tool, shuffling as hierfed.bucketing(seed=3) does
        def __init__(self, vectors: object) -> None:
            pass

        def permutation(self, vectors: np.ndarray) -> np.ndarray:
            return vectors[order]

    monkeypatch.setattr(preaggregators, "random_tool", Ours)
    for s in (1, 2, 7, 1000):
        got = hierfed.bucketing(x, s, seed=3)
        want = byzfl.Bucketing(s=s)(x.copy())
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
