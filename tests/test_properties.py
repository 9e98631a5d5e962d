"""Hypothesis properties of the aggregators, on small shapes, for every available backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import BACKENDS  # the backends this run covers
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import hierfed
from hierfed import _backend

SETTINGS = settings(max_examples=50, deadline=None)
BOUND = 1e6

RULES: dict[str, Callable[..., Any]] = {
    "mean": hierfed.mean,
    "trimmed_mean": lambda x, **kw: hierfed.trimmed_mean(x, 0.25, **kw),
    "median": hierfed.median,
}


@st.composite
def matrices(draw: st.DrawFn, min_n: int = 1, max_n: int = 9, max_d: int = 6) -> np.ndarray:
    """An (n, d) float32 or float64 array of finite values with |x| <= 1e6 (ties likely)."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, max_d))
    width = 32 if dtype == np.float32 else 64
    values = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False, width=width)
    small_ints = st.integers(-3, 3).map(float)
    elements = st.one_of(values, small_ints)
    return draw(hnp.arrays(dtype, (n, d), elements=elements))


def eps(x: np.ndarray) -> float:
    """Machine epsilon of the array's dtype."""
    return float(np.finfo(x.dtype).eps)


def sum_tol(x: np.ndarray, extra: float = 0.0) -> float:
    """Absolute tolerance of a sum-based rule on ``x``: a few roundings at the data's scale.

    The floor (1e-305) covers weighted products of values near 1e-308 becoming subnormal.
    """
    scale = float(np.max(np.abs(x.astype(np.float64)))) + extra
    n = x.shape[0]
    factor = 4.0 if x.dtype == np.float32 else 4.0 * n
    return factor * eps(x) * scale + 1e-305


def check_close(rule: str, got: np.ndarray, expected: Any, x: np.ndarray) -> None:
    """Exact for the median; within ``sum_tol(x)`` for the means."""
    assert got.dtype == x.dtype
    if rule == "median":
        np.testing.assert_array_equal(got, np.asarray(expected), strict=True)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=sum_tol(x))


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(x=matrices(), data=st.data())
def test_row_permutation_invariance(name, rule, x, data):
    """Reordering the updates (with their weights) changes nothing (exactly for the median).

    The weighted trimmed mean breaks ties by update index (DESIGN.md), so its weighted form is
    only order-free where a coordinate has no tied values.
    """
    perm = np.array(data.draw(st.permutations(range(x.shape[0]))), dtype=np.intp)
    w = np.arange(1.0, x.shape[0] + 1.0)
    fn = RULES[rule]
    distinct = all(np.unique(col).size == col.size for col in x.T)
    with _backend.using(name):
        check_close(rule, fn(x[perm]), fn(x), x)
        if rule != "trimmed_mean" or distinct:
            check_close(rule, fn(x[perm], weights=w[perm]), fn(x, weights=w), x)


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(x=matrices(), c=st.floats(-BOUND, BOUND, allow_nan=False, width=32))
def test_translation_equivariance(name, rule, x, c):
    """agg(X + c) equals agg(X) + c up to the rounding of X + c."""
    c = x.dtype.type(c)
    shifted = x + c
    with _backend.using(name):
        got = RULES[rule](shifted)
        base = RULES[rule](x).astype(np.float64) + float(c)
    tol = 4.0 * eps(x) * (float(np.max(np.abs(x.astype(np.float64)))) + abs(float(c)))
    np.testing.assert_allclose(got, base, rtol=0, atol=tol + sum_tol(x, abs(float(c))))


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(x=matrices(), weighted=st.booleans())
def test_result_inside_each_coordinate_range(name, rule, x, weighted):
    """Every coordinate of the result lies in that coordinate's [min, max].

    Exact for the median and for float32 (float64 sums rounded once); a few float64 roundings
    of slack for float64 means.
    """
    kwargs = {"weights": np.linspace(0.5, 2.0, x.shape[0])} if weighted else {}
    with _backend.using(name):
        got = RULES[rule](x, **kwargs)
    assert got.dtype == x.dtype and got.shape == x.shape[1:]
    slack = 0.0 if (rule == "median" or x.dtype == np.float32) else sum_tol(x)
    assert np.all(got >= x.min(axis=0) - slack)
    assert np.all(got <= x.max(axis=0) + slack)


@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(x=matrices(), weighted=st.booleans())
def test_trim_ratio_zero_equals_mean(name, x, weighted):
    """trim_ratio = 0 is the (weighted) mean."""
    kwargs = {"weights": np.linspace(1.0, 3.0, x.shape[0])} if weighted else {}
    with _backend.using(name):
        got = hierfed.trimmed_mean(x, 0.0, **kwargs)
        expected = hierfed.mean(x, **kwargs)
    check_close("mean", got, expected, x)


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(
    x=matrices(),
    c=st.one_of(st.floats(1e-3, 1e3, allow_nan=False), st.sampled_from([0.1, 1.0, 1.0 / 3.0, 7.0])),
)
def test_equal_weights_equal_no_weights(name, rule, x, c):
    """Equal weights, whatever their value, give the unweighted result (exact for the median)."""
    with _backend.using(name):
        got = RULES[rule](x, weights=[c] * x.shape[0])
        expected = RULES[rule](x)
    check_close(rule, got, expected, x)


@pytest.mark.parametrize("rule", ["mean", "median"])
@pytest.mark.parametrize("name", BACKENDS)
@SETTINGS
@given(x=matrices(max_n=6), data=st.data())
def test_integer_weights_equal_repeated_rows(name, rule, x, data):
    """Integer weight m on a row equals that row repeated m times (exact for the median)."""
    n = x.shape[0]
    w = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    if not w.any():
        w[0] = 1
    repeated = np.repeat(x, w, axis=0)
    with _backend.using(name):
        got = RULES[rule](x, weights=w)
        expected = RULES[rule](repeated)
    check_close(rule, got, expected, repeated)
