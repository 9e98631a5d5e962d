"""Per-update L2 norms and clipping: every input form, every backend bit for bit, exact
norms after clipping, overflow and underflow, bad input."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hierfed
from hierfed import _backend
from hierfed.privacy import clip_by_l2_norm, l2_norms

DTYPES = [np.float32, np.float64]


def exact_norm(parts: list[np.ndarray]) -> Fraction:
    """The squared L2 norm of an update, exactly."""
    return sum((Fraction(float(v)) ** 2 for p in parts for v in p.reshape(-1)), Fraction(0))


def forms(x: np.ndarray) -> dict[str, Any]:
    """The same updates as an array, a list of rows and per-layer models (3 layers)."""
    d = x.shape[1]
    cut = [d // 3, d // 3 + max(1, d // 4)]
    models = [
        [row[: cut[0]].copy(), row[cut[0] : cut[1]].reshape(1, -1).copy(), row[cut[1] :].copy()]
        for row in x
    ]
    return {"array": x, "list": [row.copy() for row in x], "models": models}


def flatten(result: Any, kind: str) -> np.ndarray:
    if kind == "array":
        return np.asarray(result)
    if kind == "list":
        return np.stack(result)
    return np.stack([np.concatenate([layer.reshape(-1) for layer in m]) for m in result])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (5, 100), (4, 20_000), (2, 40_001)])
def test_norms_match_numpy_and_every_backend_bitwise(
    backend: str, dtype: Any, shape: tuple[int, int], rng: np.random.Generator
) -> None:
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    want = np.linalg.norm(x.astype(np.float64), axis=1)
    with _backend.using("numpy"):
        ref = {k: l2_norms(v) for k, v in forms(x).items()}
    for kind, upd in forms(x).items():
        got = l2_norms(upd)
        assert got.dtype == np.float64 and got.shape == (shape[0],)
        np.testing.assert_allclose(got, want, rtol=1e-13)
        if kind != "models":  # per-layer sums differ from one flat sum by rounding only
            np.testing.assert_array_equal(got, ref["array"])
        np.testing.assert_array_equal(got, ref[kind])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_norms_and_clipping_do_not_depend_on_threads(
    backend: str, threads: int, restore_threads: None, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((3, 70_000)).astype(np.float32)
    with _backend.using("numpy"):
        want_n = l2_norms(x)
        want_c = clip_by_l2_norm(x, 200.0)
    hierfed.set_num_threads(threads)
    np.testing.assert_array_equal(l2_norms(x), want_n)
    np.testing.assert_array_equal(clip_by_l2_norm(x, 200.0), want_c)
    # rows that start off a vector boundary (streaming stores align first)
    shifted = []
    for row in rng.standard_normal((4, 70_001)).astype(np.float32):
        shifted.append(row[1:])
    with _backend.using("numpy"):
        want_shifted = clip_by_l2_norm(shifted, 100.0)
    got_shifted = clip_by_l2_norm(shifted, 100.0)
    for g, w in zip(got_shifted, want_shifted, strict=True):
        np.testing.assert_array_equal(g, w)
    out_shifted = [np.empty(70_003, np.float32)[3:] for _ in range(4)]
    clip_by_l2_norm(shifted, 100.0, out=out_shifted)
    for g, w in zip(out_shifted, want_shifted, strict=True):
        np.testing.assert_array_equal(g, w)
    many = rng.standard_normal((9, 3000))
    with _backend.using("numpy"):
        want_many = clip_by_l2_norm(many, 40.0)
    np.testing.assert_array_equal(clip_by_l2_norm(many, 40.0), want_many)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["array", "list", "models"])
def test_clip_scales_long_updates_to_at_most_max_norm(
    backend: str, dtype: Any, kind: str, rng: np.random.Generator
) -> None:
    x = rng.standard_normal((6, 50)).astype(dtype)
    x[1] *= 0.01  # short: unchanged
    x[2] *= 100.0
    upd = forms(x)[kind]
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    c = 2.0
    out, got_norms = clip_by_l2_norm(upd, c, return_norms=True)
    np.testing.assert_allclose(got_norms, norms, rtol=1e-13)
    flat = flatten(out, kind)
    assert flat.dtype == dtype
    for i in range(6):
        parts = [flat[i]]
        assert exact_norm(parts) <= Fraction(c) ** 2  # exactly within the bound
        if norms[i] <= c * (1 - 1e-6):
            np.testing.assert_array_equal(flat[i], x[i])
        else:
            assert math.sqrt(float(exact_norm(parts))) == pytest.approx(c, rel=1e-6)
            np.testing.assert_allclose(flat[i], x[i] * (c / norms[i]), rtol=2e-6)
    np.testing.assert_array_equal(flatten(upd, kind), x)  # the input is untouched
    if kind == "models":
        assert [layer.shape for layer in out[0]] == [layer.shape for layer in upd[0]]


def test_clip_in_place_and_into_out(backend: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((4, 33)) * 10
    want = clip_by_l2_norm(x, 1.0)
    y = x.copy()
    assert clip_by_l2_norm(y, 1.0, out=y) is y
    np.testing.assert_array_equal(y, want)
    rows = [r.copy() for r in x]
    res = clip_by_l2_norm(rows, 1.0, out=rows)
    assert res is rows
    np.testing.assert_array_equal(np.stack(rows), want)
    dest = np.empty_like(x)
    assert clip_by_l2_norm([r for r in x], 1.0, out=[d for d in dest]) is not None
    np.testing.assert_array_equal(dest, want)
    with pytest.raises(ValueError, match="out must have shape"):
        clip_by_l2_norm(x, 1.0, out=np.empty((4, 32)))
    with pytest.raises(ValueError, match="C-contiguous, aligned and writeable"):
        clip_by_l2_norm(x, 1.0, out=np.empty((4, 66))[:, ::2])
    with pytest.raises(ValueError, match="out must be a list of 4"):
        clip_by_l2_norm(list(x), 1.0, out=[np.empty(33)])


def test_extreme_magnitudes(backend: str) -> None:
    big = np.full((2, 1000), 1e200)
    big[1] = 3e-200
    norms = l2_norms(big)
    np.testing.assert_allclose(
        norms, [1e200 * math.sqrt(1000), 3e-200 * math.sqrt(1000)], rtol=1e-14
    )
    clipped = clip_by_l2_norm(big, 1e-197)  # row 0 shrinks by 1e-398: two steps
    assert exact_norm([clipped[0]]) <= Fraction(1e-197) ** 2
    np.testing.assert_allclose(np.linalg.norm(clipped[0] / 1e-197), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clipped[1], big[1])  # 9.5e-199 < 1e-197: unchanged
    zeros = np.zeros((2, 5), np.float32)
    np.testing.assert_array_equal(l2_norms(zeros), [0.0, 0.0])
    np.testing.assert_array_equal(clip_by_l2_norm(zeros, 1.0), zeros)
    f32 = np.full((1, 10), np.finfo(np.float32).max, np.float32)
    assert np.isfinite(l2_norms(f32)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [5e-324, 1e-323, 3e-320, 1.4e-45, 1e-44, 1e-40, 1e-38])
def test_subnormal_max_norm_is_never_exceeded(backend: str, dtype: Any, max_norm: float) -> None:
    """Found by fuzzing: rounding to subnormal outputs is absolute, not relative, so a tiny
    max_norm gave updates whose exact norm exceeded it (5e-324: two values of 5e-324)."""
    rows = np.array([[1.0, 1.0], [1.0, -3.0], [1e-30, 0.0]]).astype(dtype)
    wide = np.full((2, 100), 0.5, dtype)
    for x in (rows, wide, np.full((1, 2), 3e-323)):
        clipped = clip_by_l2_norm(x.astype(dtype) if x.dtype != dtype else x, max_norm)
        for i in range(x.shape[0]):
            assert exact_norm([clipped[i]]) <= Fraction(max_norm) ** 2, (x[i], clipped[i])


def test_bad_input(backend: str) -> None:
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"updates\[1\] contains a non-finite value"):
        l2_norms(x)
    with pytest.raises(ValueError, match=r"updates\[1\] contains a non-finite value"):
        clip_by_l2_norm(x, 1.0)
    assert np.isnan(l2_norms(x, check_finite=False)[1])
    assert np.isnan(clip_by_l2_norm(x, 1.0, check_finite=False)[1]).all()
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_by_l2_norm(np.ones((2, 2)), 0.0)
    with pytest.raises(ValueError, match="max_norm must be finite"):
        clip_by_l2_norm(np.ones((2, 2)), math.inf)
    with pytest.raises(TypeError, match="float32 or float64"):
        l2_norms(np.ones((2, 2), np.int64))
    with pytest.raises(ValueError, match="same shape"):
        l2_norms([np.ones(3), np.ones(4)])


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
        elements=st.floats(-1e6, 1e6, width=32),
    ),
    c=st.floats(1e-3, 1e4),
)
def test_property_clipped_norms_never_exceed_the_bound(x: np.ndarray, c: float) -> None:
    out = clip_by_l2_norm(x, c)
    for i in range(x.shape[0]):
        assert exact_norm([out[i]]) <= Fraction(c) ** 2
        norm = math.sqrt(float(exact_norm([x[i]])))
        if norm <= c * (1 - 1e-6):
            np.testing.assert_array_equal(out[i], x[i])
