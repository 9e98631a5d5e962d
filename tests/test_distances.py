"""Pairwise squared distances on every backend.

References: a float64 double loop over pairs (written here), exact integer arithmetic for
integer-valued data, and the float32 Gram formula as the counter-example the kernels avoid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hierfed
from hierfed import _backend

F32, F64 = np.float32, np.float64
SHAPES = [(2, 1), (3, 129), (5, 127), (7, 1000), (20, 300), (4, 5000)]


def slow_distances(x: np.ndarray) -> np.ndarray:
    """Float64 squared distances, one pair at a time."""
    x = np.asarray(x, F64).reshape(len(x), -1)
    n = len(x)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = float(np.sum((x[i] - x[j]) ** 2))
    return out


def as_kind(x: np.ndarray, kind: str) -> Any:
    """The same updates as an array, a list of rows, or per-layer models (3 layers)."""
    if kind == "array":
        return x
    if kind == "list":
        return list(x)
    cut = [0, x.shape[1] // 3, x.shape[1] // 3 + 1, x.shape[1]]
    return [[row[cut[k] : cut[k + 1]].copy() for k in range(3)] for row in x]


def assert_structure(d: np.ndarray, n: int) -> None:
    assert d.dtype == F64 and d.shape == (n, n)
    np.testing.assert_array_equal(d, d.T, strict=True)
    assert (np.diag(d) == 0).all()


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["array", "list", "models"])
def test_matches_float64_reference(backend, dtype, shape, kind, rng):
    x = rng.standard_normal(shape).astype(dtype)
    got = hierfed.pairwise_sq_distances(as_kind(x, kind))
    assert_structure(got, shape[0])
    rtol = 1e-6 if dtype == F32 else 1e-13
    np.testing.assert_allclose(got, slow_distances(x), rtol=rtol, atol=0)


def test_offset_case_within_1e6_where_the_gram_formula_fails(backend, rng):
    """Updates sharing a 1e4 offset, spread 1e-2 (float32): the issue's case."""
    x = (1e4 + rng.uniform(-1e-2, 1e-2, (20, 20000))).astype(F32)
    ref = slow_distances(x)
    got = hierfed.pairwise_sq_distances(x)
    assert_structure(got, 20)
    off = ~np.eye(20, dtype=bool)
    assert np.max(np.abs(got - ref)[off] / ref[off]) <= 1e-6
    sq = np.einsum("ij,ij->i", x, x)
    gram = sq[:, None] + sq[None, :] - 2 * (x @ x.T)  # float32, as Flower's newer distances
    assert np.max(np.abs(gram - ref)[off] / ref[off]) > 0.1


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 9),
    st.integers(1, 700),
    st.sampled_from([F32, F64]),
    st.integers(0, 2**32 - 1),
)
def test_integer_data_is_exact(n, d, dtype, seed):
    """Small integers: every partial sum is exact, so the result equals integer arithmetic."""
    x = np.random.default_rng(seed).integers(-20, 21, (n, d))
    exact = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    for name in _backend.available_backends():
        with _backend.using(name):
            got = hierfed.pairwise_sq_distances(x.astype(dtype))
        np.testing.assert_array_equal(got, exact.astype(F64), strict=True)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shape", [(9, 3001), (300, 260)])
def test_same_bits_on_every_fast_backend_and_thread_count(dtype, shape, rng, restore_threads):
    """The summation recipe fixes every operation: C++ and numba agree bit for bit (n=300:
    the rows' blocks of 128 kept in cache, and row groups split among 1 to 3 threads)."""
    x = (rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)).astype(dtype)
    models = as_kind(x, "models")
    results = []
    for name in [b for b in _backend.available_backends() if b != "numpy"]:
        with _backend.using(name):
            for threads in (1, 2, 3):
                hierfed.set_num_threads(threads)
                results.append(hierfed.pairwise_sq_distances(x))
                results.append(hierfed.pairwise_sq_distances(models))
    if not results:
        pytest.skip("no compiled or numba backend")
    for r in results[2::2]:
        np.testing.assert_array_equal(r, results[0], strict=True)
    for r in results[3::2]:
        np.testing.assert_array_equal(r, results[1], strict=True)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_duplicates_are_exactly_zero(backend, dtype, rng):
    x = rng.standard_normal((6, 777)).astype(dtype)
    x[4] = x[1]
    x[5] = x[1]
    got = hierfed.pairwise_sq_distances(x)
    assert got[1, 4] == got[1, 5] == got[4, 5] == 0.0
    assert got[0, 1] == got[0, 4] == got[0, 5]  # equal rows give equal bits
    assert got[0, 1] > 0


def test_float32_overflow_and_underflow_fall_back_to_float64(backend, rng):
    """Squares past float32's range, and distances so small float32 squares underflow."""
    big = (rng.standard_normal((4, 300)) * 1e21).astype(F32)
    tiny = (rng.standard_normal((4, 300)) * 1e-25).astype(F32)
    for x in (big, tiny, np.vstack([big[:2], tiny[:2]])):
        got = hierfed.pairwise_sq_distances(x)
        assert_structure(got, 4)
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, slow_distances(x), rtol=1e-6, atol=0)


def test_float64_overflow_raises(backend):
    x = np.array([[1e200, 0.0], [-1e200, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="overflow float64"):
        hierfed.pairwise_sq_distances(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_update_is_named(backend, bad, rng):
    x = rng.standard_normal((5, 40)).astype(F32)
    x[3, 17] = bad
    with pytest.raises(ValueError, match=r"updates\[3\] contains a non-finite"):
        hierfed.pairwise_sq_distances(x)
    unchecked = hierfed.pairwise_sq_distances(x, check_finite=False)
    assert not np.isfinite(unchecked[3, [0, 1, 2, 4]]).any()


def test_single_update(backend):
    np.testing.assert_array_equal(hierfed.pairwise_sq_distances(np.ones((1, 3))), [[0.0]])
    with pytest.raises(ValueError, match=r"updates\[0\]"):
        hierfed.pairwise_sq_distances(np.array([[1.0, np.nan]]))


def test_non_contiguous_input_and_list_untouched(backend, rng):
    base = rng.standard_normal((6, 200)).astype(F32)
    strided = base[:, ::2]
    np.testing.assert_allclose(
        hierfed.pairwise_sq_distances(strided), slow_distances(strided), rtol=1e-6
    )
    rows = list(base)
    before = [r.copy() for r in rows]
    hierfed.pairwise_sq_distances(rows)
    assert len(rows) == 6
    for r, b in zip(rows, before, strict=True):
        np.testing.assert_array_equal(r, b)


def test_plan_chunks_rows_in_4kib_and_bounds_units():
    from hierfed.distances import plan

    assert plan(50, [10**6], 4) == (1024, 32)
    assert plan(3, [5], 8) == (512, 1)  # one chunk: one unit
    # 5e5 pairs: one unit's partials (4 MB) within a thirty-second of the input; the threads
    # split the pairs instead of the coordinates
    assert plan(1000, [5 * 10**4], 4) == (1024, 1)
    assert plan(200, [2 * 10**5, 5 * 10**4], 8) == (512, 32)


def sixteenths_1e6(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Updates ``1e6 + k / 16`` (exact in float32 and float64) with heavy ties and duplicate
    rows, and their exact squared distances (integer arithmetic on the centred ``k``)."""
    k = rng.integers(-40, 41, (n, d))
    k[: n // 2] = rng.choice([-3, 0, 5], (n // 2, d))  # three distinct values
    k[n // 2 : n // 2 + 50] = k[7]  # fifty duplicates of one row
    sq = (k * k).sum(axis=1)
    exact = (sq[:, None] + sq[None, :] - 2 * (k @ k.T)) / 256.0
    return 1e6 + k / 16.0, exact


@pytest.mark.parametrize("dtype", [F32, F64])
def test_n1000_huge_offset_ties_and_duplicates_are_exact(backend, dtype, rng):
    """n=1000 (whole tiles, the last partial one, rows split among threads): a 1e6 offset
    with steps of 1/16, three-valued rows, fifty identical rows, a strided view; every partial
    sum is exact, so every backend returns the exact distances, and Krum and Bulyan choose
    as the float64 numpy reference does."""
    x, exact = sixteenths_1e6(rng, 1000, 46)
    wide = np.repeat(x, 2, axis=1).astype(dtype)
    strided = wide[:, ::2]  # non-contiguous rows
    got = hierfed.pairwise_sq_distances(strided)
    np.testing.assert_array_equal(got, exact, strict=True)
    assert (got[7, 500:550] == 0).all()
    f = 249
    with _backend.using("numpy"):
        want_krum = hierfed.krum_select(strided, f)
        want_bulyan = hierfed.bulyan(strided, f)
    choice, scores = hierfed.krum_select(strided, f)
    assert choice == want_krum[0]
    np.testing.assert_array_equal(scores, want_krum[1])
    np.testing.assert_array_equal(hierfed.bulyan(strided, f), want_bulyan)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_n1000_within_1e6_of_the_reference(backend, dtype, rng):
    """Random updates at n=1000 and d=1 and 300: within 1e-6 (float32) of float64."""
    for d in (1, 300):
        x = rng.standard_normal((1000, d)).astype(dtype)
        with _backend.using("numpy"):
            want = hierfed.pairwise_sq_distances(x)
        got = hierfed.pairwise_sq_distances(x)
        assert_structure(got, 1000)
        rtol = 1e-6 if dtype == F32 else 1e-13
        np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
