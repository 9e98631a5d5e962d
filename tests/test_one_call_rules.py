"""The one-call entries of the coordinate-wise rules against the general way, on every backend.

``mean``, ``trimmed_mean`` and ``median`` hand a plain ``(n, d)`` ndarray with plain weights
(None, or an exact float64 array of ``n`` finite, non-negative, not all zero) to the backend's
``mean_matrix`` / ``trimmed_mean_matrix`` / ``median_matrix`` and take the general way
(``_mean_any``, ``_trimmed_mean_any``, ``_median_any``: every input form, every check) when it
answers None. Both ways must give the same bits, and the one-call way must decline every input
it does not handle whole (NaN/inf, overflow, zero kept weights), so that only speed depends on
which way ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from test_one_call import assert_same_outcome

import hierfed
from hierfed import _backend
from hierfed.coordinatewise import _mean_any, _median_any, _trimmed_mean_any

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (2, 1), (3, 7), (5, 33), (20, 1000), (64, 100), (257, 17), (1000, 3)]
Call = Callable[..., Any]


def general(rule: str, x: Any, weights: Any, check_finite: bool = True) -> Any:
    """The general way of ``rule`` (trimmed mean: ratio 0.1)."""
    if rule == "mean":
        return _mean_any(x, weights, check_finite=check_finite)
    if rule == "median":
        return _median_any(x, weights, check_finite=check_finite)
    return _trimmed_mean_any(x, 0.1, weights, n_trim=None, check_finite=check_finite)


def public(rule: str, x: Any, weights: Any, check_finite: bool = True) -> Any:
    if rule == "trimmed_mean":
        return hierfed.trimmed_mean(x, 0.1, weights, check_finite=check_finite)
    func: Call = getattr(hierfed, rule)
    return func(x, weights, check_finite=check_finite)


def one_call(rule: str, x: Any, weights: Any) -> Any:
    kernels = _backend.kernels()
    if rule == "trimmed_mean":
        n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim == 2 else 1
        return kernels.trimmed_mean_matrix(x, int(0.1 * n), weights, 2)
    func: Call = getattr(kernels, f"{rule}_matrix")
    return func(x, weights, 2)


RULES = ["mean", "trimmed_mean", "median"]


def weight_sets(n: int, rng: np.random.Generator) -> list[Any]:
    """Weights the one-call way takes: none, the federation's 0.9**s, wide random ones, one
    positive among zeros (kept weights may then be all zero: the general way raises), and
    equal ones (the weighted median is then the unweighted one), huge and tiny scales, and both
    at once (the scaling rounds the tiny ones to subnormals, as the general way does)."""
    stale = 0.9 ** rng.integers(0, 5, n).astype(np.float64)
    spread = rng.random(n) * 7.0
    spread[rng.random(n) < 0.2] = 0.0
    spread[0] = 1.5
    mixed = stale * np.where(np.arange(n) % 3 == 0, 1e300, 5e-310)  # scaled to subnormals
    return [None, stale, spread, np.full(n, 3.0), stale * 1e300, stale * 1e-300, mixed]


def inputs(shape: tuple[int, int], dtype: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """Random values, heavy ties (three distinct values), all-equal columns, a huge offset."""
    d = shape[1]
    plain = rng.standard_normal(shape)
    ties = rng.choice([-1.0, 0.5, 2.0], size=shape)
    equal = np.broadcast_to(rng.standard_normal(d), shape).copy()
    offset = 1e6 + rng.standard_normal(shape)
    return [np.ascontiguousarray(a.astype(dtype)) for a in (plain, ties, equal, offset)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_one_call_equals_the_general_way(
    backend: str, dtype: Any, shape: tuple[int, int], rng: np.random.Generator
) -> None:
    for x in inputs(shape, dtype, rng):
        before = x.copy()
        for weights in weight_sets(shape[0], rng):
            for rule in RULES:
                got = one_call(rule, x, weights)
                if got is None:  # only zero kept weights may decline here: the general way raises
                    assert weights is not None and not weights.all()
                    with pytest.raises(ValueError, match="weight zero"):
                        general(rule, x, weights)
                    continue
                want = general(rule, x, weights)
                assert type(got) is np.ndarray and got.dtype == dtype and got.shape == shape[1:]
                assert got.flags.c_contiguous and got.flags.writeable
                np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
                np.testing.assert_array_equal(public(rule, x, weights), want)
        np.testing.assert_array_equal(x, before)  # the input is never written


def test_one_call_is_the_same_on_every_backend(backend: str, rng: np.random.Generator) -> None:
    x = rng.standard_normal((40, 301)).astype(np.float32)
    w = 0.9 ** rng.integers(0, 5, 40).astype(np.float64)
    for rule in RULES:
        with _backend.using("numpy"):
            want = one_call(rule, x, w)
        np.testing.assert_array_equal(one_call(rule, x, w), want)


def _declined() -> list[Any]:
    """Inputs the one-call way must hand back (None): each breaks one of its conditions."""
    base = np.random.default_rng(7).standard_normal((5, 6))
    good_w = np.arange(1.0, 6.0)
    raw = np.zeros(base.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float64).reshape(base.shape)
    misaligned[...] = base
    nan_x, inf_x = base.copy(), base.copy()
    nan_x[2, 3] = np.nan
    inf_x[1, 0] = -np.inf
    return [
        pytest.param(list(base), None, id="list"),
        pytest.param(base[0], None, id="1-d"),
        pytest.param(base.reshape(5, 2, 3), None, id="3-d"),
        pytest.param(base[:0], None, id="n=0"),
        pytest.param(base[:, :0], None, id="d=0"),
        pytest.param(base[:, ::2], None, id="strided"),
        pytest.param(np.asfortranarray(base), None, id="fortran"),
        pytest.param(misaligned, None, id="misaligned"),
        pytest.param(base.astype(">f8"), None, id="big-endian"),
        pytest.param(base.astype(np.float16), None, id="float16"),
        pytest.param(base.astype(np.int64), None, id="int"),
        pytest.param(base.view(np.ma.MaskedArray), None, id="subclass"),
        pytest.param(nan_x, None, id="nan"),
        pytest.param(inf_x, good_w, id="inf"),
        pytest.param(base, list(good_w), id="weights-list"),
        pytest.param(base, good_w.astype(np.float32), id="weights-float32"),
        pytest.param(base, np.arange(1, 6), id="weights-int"),
        pytest.param(base, good_w[:4], id="weights-short"),
        pytest.param(base, good_w.reshape(5, 1), id="weights-2-d"),
        pytest.param(base, np.repeat(good_w, 2)[::2], id="weights-strided"),
        pytest.param(base, good_w.view(np.ma.MaskedArray), id="weights-subclass"),
        pytest.param(base, np.array([1.0, np.nan, 1, 1, 1]), id="weights-nan"),
        pytest.param(base, np.array([1.0, np.inf, 1, 1, 1]), id="weights-inf"),
        pytest.param(base, np.array([1.0, -1.0, 1, 1, 1]), id="weights-negative"),
        pytest.param(base, np.zeros(5), id="weights-zero"),
    ]


@pytest.mark.parametrize("rule", ["mean", "trimmed_mean"])
def test_overflowing_sums_decline_and_raise(backend: str, rule: str) -> None:
    x = np.ones((5, 6))
    x[:, 2] = 1.7e308  # the float64 sums overflow (the median of such values does not)
    assert one_call(rule, x, None) is None
    with pytest.raises(ValueError, match="overflows float64"):
        public(rule, x, None)
    np.testing.assert_array_equal(hierfed.median(x), x[0])


@pytest.mark.parametrize(("x", "weights"), _declined())
@pytest.mark.parametrize("rule", RULES)
def test_one_call_declines_what_it_does_not_handle_whole(
    backend: str, rule: str, x: Any, weights: Any
) -> None:
    assert one_call(rule, x, weights) is None


@pytest.mark.parametrize(("x", "weights"), _declined())
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("check_finite", [True, False])
def test_declined_inputs_take_the_general_way(
    backend: str, rule: str, x: Any, weights: Any, check_finite: bool
) -> None:
    with np.errstate(all="ignore"):
        assert_same_outcome(
            lambda: general(rule, x, weights, check_finite),
            lambda: public(rule, x, weights, check_finite),
        )


def test_zero_kept_weights_decline_and_raise(backend: str) -> None:
    x = np.tile(np.arange(10.0)[:, None], (1, 4))  # row 9 the largest in every column
    w = np.zeros(10)
    w[9] = 1.0  # the trimmed mean drops the one row of positive weight: 0/0
    assert _backend.kernels().trimmed_mean_matrix(x, 1, w, 1) is None
    with pytest.raises(ValueError, match="weight zero"):
        hierfed.trimmed_mean(x, 0.1, w)
    np.testing.assert_array_equal(hierfed.median(x, w), np.full(4, 9.0))  # it keeps row 9


def test_the_trim_count_is_checked_before_the_one_call(backend: str) -> None:
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="trim_ratio"):
        hierfed.trimmed_mean(x, 0.5)
    with pytest.raises(ValueError, match="n_trim"):
        hierfed.trimmed_mean(x, n_trim=2)
    with pytest.raises(TypeError, match="n_trim"):
        hierfed.trimmed_mean(x, n_trim=1.0)
    with pytest.raises(ValueError, match="need at least 1 update"):  # the updates first
        hierfed.trimmed_mean(np.ones((0, 3)), n_trim=0)
    for k in (-1, 2, 5):  # the kernel entry itself declines a count out of range
        assert _backend.kernels().trimmed_mean_matrix(x, k, None, 1) is None


@pytest.mark.parametrize("rule", RULES)
def test_bad_weights_still_raise_by_name(backend: str, rule: str) -> None:
    x = np.ones((3, 4), np.float32)
    for weights, message in [
        (np.array([1.0, -2.0, 1.0]), r"weights must be >= 0; weights\[1\]"),
        (np.array([1.0, np.nan, 1.0]), r"weights must be finite; weights\[1\]"),
        (np.zeros(3), "weights are all zero"),
        (np.ones(2), "one weight per update"),
    ]:
        with pytest.raises(ValueError, match=message):
            public(rule, x, weights)
