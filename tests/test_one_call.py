"""The one-call entries for a plain matrix against the general way, on every backend.

``clip_by_l2_norm``, ``adaptive_robust_clipping``, ``monna`` and ``bucketing`` hand a plain
``(n, d)`` ndarray to the backend's ``clip_matrix`` / ``arc_matrix`` / ``monna_matrix`` /
``bucket_matrix`` and take the general way (``_clip_any``, ``_arc_any``, ``_monna_any``,
``_bucketing_any``: every input form, every check) when it answers None. Both ways must give the
same answer bit for bit, and the one-call way must decline every input it does not handle
whole, so nothing but speed depends on which way ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import hierfed
from hierfed import _backend
from hierfed.monna import _monna_any
from hierfed.preaggregation import _arc_any, _bucketing_any
from hierfed.privacy import clip_by_l2_norm
from hierfed.privacy.clipping import _clip_any

DTYPES = [np.float32, np.float64]


def general(x: Any, max_norm: Any, return_norms: bool = False) -> Any:
    return _clip_any(x, max_norm, None, check_finite=False, return_norms=return_norms)


def one_call(x: Any, max_norm: Any, return_norms: bool = False) -> Any:
    return _backend.kernels().clip_matrix(x, max_norm, return_norms, 2)


def assert_same_outcome(want: Callable[[], Any], got: Callable[[], Any]) -> None:
    """Both calls raise the same error, or give equal answers (an array or a tuple of them)."""

    def run(call: Callable[[], Any]) -> tuple[Any, Any]:
        try:
            return call(), None
        except (TypeError, ValueError) as exc:
            return None, (type(exc), str(exc))

    (w, w_error), (g, g_error) = run(want), run(got)
    assert g_error == w_error
    if w_error is None:
        ws, gs = (w if isinstance(w, tuple) else (w,)), (g if isinstance(g, tuple) else (g,))
        assert len(gs) == len(ws)
        for a, b in zip(ws, gs, strict=True):
            np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


def median_norm(x: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(x.astype(np.float64), axis=1)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 1), (3, 7), (10, 1000), (50, 1000), (2, 8193), (3, 20_000)]
)
def test_one_call_equals_the_general_way(
    backend: str, dtype: Any, shape: tuple[int, int], rng: np.random.Generator
) -> None:
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    before = x.copy()
    small = 1e-40 if dtype == np.float32 else 1e-200  # float32: subnormal results
    for bound in (median_norm(x), 1e-3, 1e30, small):
        for want_norms in (False, True):
            got = one_call(x, bound, want_norms)
            assert got is not None, (bound, want_norms)
            want = general(x, bound, want_norms)
            if want_norms:
                assert isinstance(got, tuple) and len(got) == 2
                np.testing.assert_array_equal(got[1], want[1])
                assert got[1].dtype == np.float64
                got, want = got[0], want[0]
            assert type(got) is np.ndarray and got.dtype == dtype and got.shape == shape
            assert got.flags.c_contiguous and got.flags.writeable
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(clip_by_l2_norm(x, bound), want)
    np.testing.assert_array_equal(x, before)  # the input is never written


def test_one_call_is_the_same_on_every_backend(backend: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((7, 9001))
    with _backend.using("numpy"):
        want = one_call(x, 50.0, True)
    got = one_call(x, 50.0, True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def _declined() -> list[Any]:
    """Inputs the one-call way must hand back (None): each breaks one of its conditions."""
    base = np.random.default_rng(5).standard_normal((4, 6))
    raw = np.zeros(base.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float64).reshape(base.shape)
    misaligned[...] = base
    nan_row, inf_row, huge, tiny = base.copy(), base.copy(), base.copy(), base.copy()
    nan_row[2, 3] = np.nan
    inf_row[1, 0] = -np.inf
    huge[0] = 1e200  # the float64 sum of squares overflows
    tiny[3] = 1e-300  # the sum of squares underflows
    return [
        pytest.param(list(base), 1.0, id="list"),
        pytest.param(base[0], 1.0, id="1-d"),
        pytest.param(base.reshape(2, 2, 6), 1.0, id="3-d"),
        pytest.param(base[:0], 1.0, id="n=0"),
        pytest.param(base[:, :0], 1.0, id="d=0"),
        pytest.param(base[:, ::2], 1.0, id="strided"),
        pytest.param(np.asfortranarray(base), 1.0, id="fortran"),
        pytest.param(misaligned, 1.0, id="misaligned"),
        pytest.param(base.astype(">f8"), 1.0, id="big-endian"),
        pytest.param(base.astype(np.float16), 1.0, id="float16"),
        pytest.param(base.astype(np.int64), 1.0, id="int"),
        pytest.param(base.view(np.ma.MaskedArray), 1.0, id="subclass"),
        pytest.param(base, 1, id="int-bound"),
        pytest.param(base, True, id="bool-bound"),
        pytest.param(base, np.float64(1.0), id="numpy-bound"),
        pytest.param(base, 0.0, id="zero-bound"),
        pytest.param(base, -1.0, id="negative-bound"),
        pytest.param(base, float("nan"), id="nan-bound"),
        pytest.param(base, float("inf"), id="inf-bound"),
        pytest.param(base, 5e-324, id="target-0"),
        pytest.param(base, 1e-290, id="tiny-factor"),
        pytest.param(nan_row, 1.0, id="nan-row"),
        pytest.param(inf_row, 1.0, id="inf-row"),
        pytest.param(huge, 1.0, id="overflowing-sum"),
        pytest.param(tiny, 1.0, id="underflowing-sum"),
    ]


@pytest.mark.parametrize(("x", "max_norm"), _declined())
def test_one_call_declines_what_it_does_not_handle_whole(
    backend: str, x: Any, max_norm: Any
) -> None:
    assert one_call(x, max_norm) is None
    assert one_call(x, max_norm, True) is None


@pytest.mark.parametrize(("x", "max_norm"), _declined())
def test_declined_inputs_take_the_general_way(backend: str, x: Any, max_norm: Any) -> None:
    assert_same_outcome(
        lambda: general(x, max_norm, True),
        lambda: clip_by_l2_norm(x, max_norm, check_finite=False, return_norms=True),
    )


@pytest.mark.parametrize(
    ("max_norm", "error"),
    [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), (True, TypeError)],
)
def test_bad_bounds_still_raise_by_name(backend: str, max_norm: Any, error: type) -> None:
    with pytest.raises(error, match="max_norm"):
        clip_by_l2_norm(np.ones((3, 4)), max_norm)


def test_non_finite_rows_still_raise(backend: str) -> None:
    x = np.ones((3, 4), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="1"):
        clip_by_l2_norm(x, 1.0)


# ---- ARC ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 1), (3, 7), (10, 1000), (50, 1000), (200, 30), (4, 8193), (3, 20_000)]
)
def test_arc_one_call_equals_the_general_way(
    backend: str, dtype: Any, shape: tuple[int, int], rng: np.random.Generator
) -> None:
    n = shape[0]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    x[: n // 4] *= 20  # the attackers' large updates
    x[-1] = x[0]  # a tie of norms
    before = x.copy()
    for f in sorted({0, n // 4, (n - 1) // 2, n - 1}):
        got = _backend.kernels().arc_matrix(x, f, 2)
        assert got is not None, f
        assert type(got) is np.ndarray and got.dtype == dtype and got.shape == shape
        assert got.flags.c_contiguous and got.flags.writeable and got is not x
        np.testing.assert_array_equal(got, _arc_any(x, f, check_finite=True))
        np.testing.assert_array_equal(hierfed.adaptive_robust_clipping(x, f), got)
    np.testing.assert_array_equal(x, before)


def _arc_declined() -> list[Any]:
    base = np.random.default_rng(6).standard_normal((5, 6))
    nan_row, zero_row, tiny = base.copy(), base.copy(), base.copy()
    nan_row[4, 1] = np.nan
    zero_row[2] = 0.0  # a zero norm: a sum of squares the kernel leaves to Python
    tiny[0] = 1e-300
    return [
        pytest.param(list(base), 1, id="list"),
        pytest.param(base[:, ::2], 1, id="strided"),
        pytest.param(base.astype(np.float16), 1, id="float16"),
        pytest.param(base, np.int64(1), id="numpy-f"),
        pytest.param(base, True, id="bool-f"),
        pytest.param(base, 1.0, id="float-f"),
        pytest.param(base, -1, id="negative-f"),
        pytest.param(base, 5, id="f=n"),
        pytest.param(base, 2**70, id="huge-f"),
        pytest.param(nan_row, 1, id="nan-row"),
        pytest.param(nan_row, 0, id="nan-row-k0"),
        pytest.param(zero_row, 1, id="zero-row"),
        pytest.param(tiny, 1, id="underflowing-sum"),
    ]


@pytest.mark.parametrize(("x", "f"), _arc_declined())
def test_arc_declines_and_the_general_way_answers(backend: str, x: Any, f: Any) -> None:
    assert _backend.kernels().arc_matrix(x, f, 2) is None
    assert_same_outcome(
        lambda: _arc_any(x, f, check_finite=True), lambda: hierfed.adaptive_robust_clipping(x, f)
    )


def test_arc_raises_on_non_finite_even_when_it_clips_none(backend: str) -> None:
    x = np.ones((5, 3))
    x[3, 2] = np.inf
    with pytest.raises(ValueError, match="3"):
        hierfed.adaptive_robust_clipping(x, 0)
    assert np.isinf(hierfed.adaptive_robust_clipping(x, 0, check_finite=False)[3, 2])


# ---- MoNNA -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 1), (3, 7), (10, 1000), (50, 1000), (200, 30), (1000, 3), (3, 20_000)]
)
def test_monna_one_call_equals_the_general_way(
    backend: str, dtype: Any, shape: tuple[int, int], rng: np.random.Generator
) -> None:
    n = shape[0]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    x[: n // 4] += 50  # the attackers
    if n > 2:
        x[1] = x[2]  # a tie of distances
    before = x.copy()
    for trusted in (x[-1], np.ascontiguousarray(x.mean(axis=0, dtype=dtype))):
        for f in sorted({0, n // 4, n - 1}):
            got = _backend.kernels().monna_matrix(x, f, trusted, 2)
            assert got is not None, f
            assert type(got) is np.ndarray and got.dtype == dtype and got.shape == shape[1:]
            want = _monna_any(x, f, trusted, None, check_finite=True)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(hierfed.monna(x, f, trusted), want)
    np.testing.assert_array_equal(x, before)


def _monna_declined() -> list[Any]:
    base = np.random.default_rng(7).standard_normal((5, 6))
    nan_row, nan_point, huge = base.copy(), base[0].copy(), np.full((3, 2), 1.7e308)
    nan_row[4, 1] = np.nan
    nan_point[2] = np.inf
    return [
        pytest.param(list(base), 1, base[0], id="list"),
        pytest.param(base[:, ::2], 1, base[0, ::2], id="strided"),
        pytest.param(base, 1, base[:, 0], id="strided-trusted"),
        pytest.param(base, 1, base[0, :5], id="short-trusted"),
        pytest.param(base, 1, base[0].astype(np.float32), id="other-dtype-trusted"),
        pytest.param(base, 1, base[0].tolist(), id="list-trusted"),
        pytest.param(base, 1, base[:1], id="2-d-trusted"),
        pytest.param(base, np.int32(1), base[0], id="numpy-f"),
        pytest.param(base, True, base[0], id="bool-f"),
        pytest.param(base, 5, base[0], id="f=n"),
        pytest.param(nan_row, 1, base[0], id="nan-row"),
        pytest.param(base, 1, nan_point, id="inf-trusted"),
        pytest.param(huge, 0, huge[0], id="overflowing-mean"),
    ]


@pytest.mark.parametrize(("x", "f", "trusted"), _monna_declined())
def test_monna_declines_and_the_general_way_answers(
    backend: str, x: Any, f: Any, trusted: Any
) -> None:
    assert _backend.kernels().monna_matrix(x, f, trusted, 2) is None
    assert_same_outcome(
        lambda: _monna_any(x, f, trusted, None, check_finite=True),
        lambda: hierfed.monna(x, f, trusted),
    )


def test_monna_with_weights_takes_the_general_way(backend: str) -> None:
    x = np.arange(12.0).reshape(4, 3)
    w = np.array([1.0, 0.0, 2.0, 1.0])
    want = _monna_any(x, 1, x[0], w, check_finite=True)
    np.testing.assert_array_equal(hierfed.monna(x, 1, x[0], w), want)


# ---- bucketing ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(1, 1), (2, 1), (3, 7), (10, 1000), (11, 1000), (200, 30), (1000, 3), (5, 20_000)]
)
def test_bucketing_one_call_equals_the_general_way(
    backend: str, dtype: Any, shape: tuple[int, int], rng: np.random.Generator
) -> None:
    n = shape[0]
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    before = x.copy()
    for s in sorted({1, 2, 3, n, n + 1}):
        perm = rng.permutation(n)
        got = _backend.kernels().bucket_matrix(x, perm, s, 2)
        assert got is not None, s
        assert (
            type(got) is np.ndarray and got.dtype == dtype and got.shape == (-(-n // s), shape[1])
        )
        np.testing.assert_array_equal(got, _bucketing_any(x, s, None, True, perm))
        seeded = hierfed.bucketing(x, s, seed=11)  # the same draw either way
        np.testing.assert_array_equal(seeded, _bucketing_any(x, s, 11, True))
        g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
        np.testing.assert_array_equal(
            hierfed.bucketing(x, s, seed=g1), _bucketing_any(x, s, g2, True)
        )
        assert g1.integers(1 << 62) == g2.integers(1 << 62)  # one draw each
    np.testing.assert_array_equal(x, before)


def _bucketing_declined() -> list[Any]:
    base = np.random.default_rng(8).standard_normal((5, 6))
    nan_row, huge = base.copy(), np.full((4, 2), 1.7e308)
    nan_row[4, 1] = np.nan
    return [
        pytest.param(base[:, ::2], id="strided"),
        pytest.param(base.astype(np.float16), id="float16"),
        pytest.param(base.astype(">f8"), id="big-endian"),
        pytest.param(base.reshape(5, 2, 3), id="3-d"),
        pytest.param(nan_row, id="nan-row"),
        pytest.param(huge, id="overflowing-mean"),
    ]


@pytest.mark.parametrize("x", _bucketing_declined())
def test_bucketing_declines_and_the_general_way_answers(backend: str, x: Any) -> None:
    perm = np.random.default_rng(1).permutation(len(x))
    assert _backend.kernels().bucket_matrix(x, perm, 2, 2) is None
    for check_finite in (True, False):
        assert_same_outcome(
            lambda c=check_finite: _bucketing_any(x, 2, 4, c),
            lambda c=check_finite: hierfed.bucketing(x, 2, seed=4, check_finite=c),
        )


@pytest.mark.parametrize(
    ("perm", "error"),
    [
        (np.array([0, 1, 1, 3, 4]), "permutation"),
        (np.array([0, 1, 2, 3, 5]), "permutation"),
        (np.arange(4), "length"),
        (np.arange(5, dtype=np.int32), "int64"),
    ],
)
def test_bucket_matrix_refuses_a_bad_permutation(backend: str, perm: Any, error: str) -> None:
    if backend != "cpp":
        pytest.skip("the twins take the caller's permutation as the general kernel does")
    with pytest.raises(ValueError, match=error):
        _backend.kernels().bucket_matrix(np.ones((5, 3)), perm, 2, 1)


def test_bucketing_bad_arguments_still_raise_by_name(backend: str) -> None:
    x = np.ones((5, 3))
    with pytest.raises(ValueError, match="s must be >= 1"):
        hierfed.bucketing(x, 0)
    with pytest.raises(TypeError, match="s must be an int"):
        hierfed.bucketing(x, True)
    with pytest.raises(TypeError, match="seed"):
        hierfed.bucketing(x, 2, seed=True)
