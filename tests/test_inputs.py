"""Input forms (views, lists, per-layer models, n-D updates) and one test per bad input."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import hierfed

F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
DTYPE_IDS = ["f32", "f64"]

METHODS: dict[str, Callable[..., Any]] = {
    "mean": hierfed.mean,
    "trimmed_mean": lambda u, **kw: hierfed.trimmed_mean(u, 0.2, **kw),
    "median": hierfed.median,
}
METHOD_NAMES = list(METHODS)
LAYER_SHAPES = [(3, 4), (5,), (2, 2, 2)]


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Standard normal values of ``dtype``."""
    return rng.standard_normal(shape).astype(dtype)


def flat_aggregate(fn: Callable[..., Any], stacked: np.ndarray, **kw: Any) -> np.ndarray:
    """Aggregate an (n, *shape) stack through its (n, d) flattening, reshaped back."""
    n = stacked.shape[0]
    return fn(np.ascontiguousarray(stacked).reshape(n, -1), **kw).reshape(stacked.shape[1:])


def assert_same(got: Any, expected: np.ndarray) -> None:
    """Same dtype, shape and values, bit for bit."""
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, expected, strict=True)


# ----------------------------------------------------------------------------- input forms


VIEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "columns[:, ::2]": lambda x: x[:, ::2],
    "rows[::2]": lambda x: x[::2],
    "fortran": np.asfortranarray,
    "transpose of (d, n)": lambda x: np.ascontiguousarray(x.T).T,
    "negative strides": lambda x: x[::-1, ::-1],
}


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_non_contiguous_views_equal_contiguous_copy(backend, method, dtype, view, rng):
    """Strided and Fortran-ordered inputs give the result of their contiguous copy."""
    fn = METHODS[method]
    x = VIEWS[view](normal(rng, (11, 35), dtype))
    if view == "transpose of (d, n)":
        assert x.flags.f_contiguous and not x.flags.c_contiguous
    copy = np.ascontiguousarray(x)
    w = rng.uniform(0.5, 2.0, x.shape[0])
    assert_same(fn(x), fn(copy))
    assert_same(fn(x, weights=w), fn(copy, weights=w))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_list_of_rows_equals_stacked(backend, method, dtype, rng):
    """A list (or tuple) of separate 1-D arrays gives the result of the stacked array."""
    fn = METHODS[method]
    x = normal(rng, (9, 2 * 17), dtype)
    expected = fn(x)
    assert_same(fn([row.copy() for row in x]), expected)
    assert_same(fn(tuple(x)), expected)
    strided = x[:, ::2]
    assert_same(fn([strided[i] for i in range(9)]), fn(strided))
    w = rng.uniform(0.5, 2.0, 9)
    assert_same(fn(list(x), weights=list(w)), fn(x, weights=w))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_nd_array_returns_update_shape(backend, method, dtype, rng):
    """An (n, *shape) array (or a list of such updates) gives an array of that shape."""
    fn = METHODS[method]
    x = normal(rng, (7, 3, 4, 5), dtype)
    expected = flat_aggregate(fn, x)
    assert expected.shape == (3, 4, 5)
    assert_same(fn(x), expected)
    assert_same(fn(list(x)), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_models_give_one_array_per_layer(backend, method, dtype, rng):
    """Per-layer models give a list of arrays of the layer shapes, each the stacked layer's."""
    fn = METHODS[method]
    n = 8
    models = [[normal(rng, s, dtype) for s in LAYER_SHAPES] for _ in range(n)]
    w = rng.uniform(0.0, 2.0, n)
    for kwargs in ({}, {"weights": w}):
        got = fn(models, **kwargs)
        assert isinstance(got, list) and len(got) == len(LAYER_SHAPES)
        for j, shape in enumerate(LAYER_SHAPES):
            assert got[j].shape == shape
            layer = np.stack([m[j] for m in models])
            assert_same(got[j], flat_aggregate(fn, layer, **kwargs))
    as_tuples = tuple(tuple(m) for m in models)
    for a, b in zip(fn(as_tuples), fn(models), strict=True):
        assert_same(a, b)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", [*METHOD_NAMES, "trimmed_mean_k9"])
def test_models_with_layers_across_blocks(backend, method, dtype, weighted, rng):
    """Layers of sizes around kernel block sizes, aggregated together, match each layer alone
    and the numpy reference."""
    if method == "trimmed_mean_k9":

        def fn(u, **kw):
            return hierfed.trimmed_mean(u, n_trim=9, **kw)
    else:
        fn = METHODS[method]
    shapes = [(2049,), (1,), (31,), (257,), (3, 33), (4097,)]
    n = 21
    models = [[normal(rng, s, dtype) for s in shapes] for _ in range(n)]
    kwargs = {"weights": rng.uniform(0.5, 2.0, n)} if weighted else {}
    got = fn(models, **kwargs)
    with hierfed._backend.using("numpy"):
        ref = fn(models, **kwargs)
    tol = 1e-6 if dtype == F32 else 1e-12
    for j, shape in enumerate(shapes):
        assert got[j].shape == shape
        layer = np.stack([m[j] for m in models])
        assert_same(got[j], flat_aggregate(fn, layer, **kwargs))
        if method == "median":
            assert_same(got[j], ref[j])
        else:
            np.testing.assert_allclose(got[j], ref[j], rtol=tol, atol=tol * 5)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_models_with_empty_and_scalar_layers(backend, method, rng):
    """An empty layer comes back empty with its shape; a 0-d layer comes back 0-d."""
    fn = METHODS[method]
    shapes = [(0,), (4,), (), (2, 0, 3), (3,)]
    models = [[normal(rng, s, F32) for s in shapes] for _ in range(5)]
    got = fn(models)
    assert [g.shape for g in got] == shapes
    assert all(g.dtype == np.dtype(F32) for g in got)
    for j in (1, 2, 4):
        layer = np.stack([m[j] for m in models])
        assert_same(got[j], flat_aggregate(fn, layer))


def test_generator_of_rows(rng):
    """An iterable that is not a sequence (a generator) is read like a list."""
    x = normal(rng, (6, 10), F64)
    assert_same(hierfed.median(row for row in x), hierfed.median(x))
    assert_same(hierfed.mean(iter(list(x))), hierfed.mean(x))


def test_aggregate_accepts_a_generator(rng):
    """aggregate() takes the same inputs as the rule functions, generators included."""
    x = normal(rng, (6, 10), F64)
    result = hierfed.aggregate((row for row in x), "median")
    assert result.n_inputs == 6
    assert_same(result.aggregate, hierfed.median(x))


def test_rows_as_lists_of_numbers(rng):
    """Rows given as lists of numbers are 1-D updates, whether Python or numpy scalars."""
    x = normal(rng, (5, 4), F64)
    as_python = [[float(v) for v in row] for row in x]
    as_numpy_scalars = [list(row) for row in x]  # elements are np.float64
    assert_same(hierfed.mean(as_python), hierfed.mean(x))
    assert_same(hierfed.mean(as_numpy_scalars), hierfed.mean(x))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_inputs_untouched_and_output_fresh(backend, method, dtype, weighted, rng):
    """Kernels never write into the updates, and the answer owns its memory."""
    fn = METHODS[method]
    x = normal(rng, (12, 37), dtype)
    rows = [normal(rng, (37,), dtype) for _ in range(12)]
    kept_x, kept_rows = x.copy(), [r.copy() for r in rows]
    kwargs = {"weights": rng.uniform(0.5, 2.0, 12)} if weighted else {}
    out_x = fn(x, **kwargs)
    out_rows = fn(rows, **kwargs)
    np.testing.assert_array_equal(x, kept_x)
    for r, kept in zip(rows, kept_rows, strict=True):
        np.testing.assert_array_equal(r, kept)
    assert not np.shares_memory(out_x, x)
    assert not any(np.shares_memory(out_rows, r) for r in rows)
    one = fn(x[:1], **({"weights": [1.0]} if weighted else {}))
    assert not np.shares_memory(one, x)


def test_read_only_input(rng):
    """A read-only array is accepted (nothing is written to it)."""
    x = normal(rng, (5, 8), F32)
    x.flags.writeable = False
    for fn in METHODS.values():
        assert fn(x).shape == (8,)


# ----------------------------------------------------------------------------- bad updates


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_empty_list_raises(method):
    """n = 0 as an empty list."""
    with pytest.raises(ValueError, match=r"updates: need at least 1 update, got 0"):
        METHODS[method]([])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_zero_rows_array_raises(method):
    """n = 0 as a (0, d) array."""
    with pytest.raises(ValueError, match=r"updates: need at least 1 update, got 0"):
        METHODS[method](np.zeros((0, 5)))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_1d_array_raises(method):
    """A 1-D array is one update, not n of them."""
    with pytest.raises(ValueError, match=r"updates must be an \(n, d\) array.*1-D array"):
        METHODS[method](np.ones(5))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_zero_coordinates_array_raises(method):
    """d = 0 as an (n, 0) array."""
    with pytest.raises(ValueError, match=r"updates: updates are empty \(0 coordinates\)"):
        METHODS[method](np.zeros((4, 0)))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_zero_coordinates_list_raises(method):
    """d = 0 as a list of empty arrays."""
    with pytest.raises(ValueError, match=r"updates are empty"):
        METHODS[method]([np.zeros(0), np.zeros(0), np.zeros(0)])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_zero_coordinates_models_raise(method):
    """d = 0 as models whose layers are all empty."""
    with pytest.raises(ValueError, match=r"updates are empty"):
        METHODS[method]([[np.zeros(0), np.zeros((2, 0))] for _ in range(3)])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_ragged_list_raises(method):
    """Updates of different lengths."""
    with pytest.raises(ValueError, match=r"updates\[2\] has shape \(4,\) but updates\[0\]"):
        METHODS[method]([np.ones(3), np.ones(3), np.ones(4)])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_ragged_nested_lists_raise(method):
    """Ragged rows given as nested Python lists."""
    with pytest.raises(ValueError, match=r"updates\[1\] has shape"):
        METHODS[method]([[1.0, 2.0], [1.0]])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_mixed_dtypes_raise(method):
    """float32 and float64 updates in one call."""
    updates = [np.ones(3, F32), np.ones(3, F64)]
    with pytest.raises(TypeError, match=r"updates\[1\] has dtype float64 but updates\[0\]"):
        METHODS[method](updates)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, np.complex128, np.bool_])
def test_unsupported_dtype_array_raises(method, dtype):
    """Only float32 and float64 are accepted (no silent conversion)."""
    with pytest.raises(TypeError, match=r"updates has dtype .*; use float32 or float64"):
        METHODS[method](np.ones((3, 4), dtype=dtype))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_int_rows_in_list_raise(method):
    """An int row in a list is named."""
    with pytest.raises(TypeError, match=r"updates\[0\] has dtype int64"):
        METHODS[method]([np.arange(3, dtype=np.int64), np.arange(3, dtype=np.int64)])


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("dtype", [">f8", ">f4"])
def test_non_native_byte_order_raises(method, dtype):
    """Big-endian floats are refused with the conversion to use."""
    with pytest.raises(TypeError, match=r"updates has non-native byte order"):
        METHODS[method](np.ones((3, 4), dtype=dtype))
    with pytest.raises(TypeError, match=r"updates\[0\] has non-native byte order"):
        METHODS[method]([np.ones(4, dtype=dtype)] * 3)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("dtype", [">f8", ">f4"])
def test_the_suggested_byte_order_conversion_is_accepted(method, dtype):
    """The conversion the error message suggests gives a dtype equal to numpy's float but not
    the same object (``dtype("=f8")``): the kernels must take it, as array and as list."""
    x = np.arange(12.0).reshape(3, 4).astype(dtype)
    native = x.astype(x.dtype.newbyteorder("="))
    assert native.dtype is not np.dtype(native.dtype.char)
    want = METHODS[method](np.ascontiguousarray(native, native.dtype.char))
    np.testing.assert_array_equal(METHODS[method](native), want)
    np.testing.assert_array_equal(METHODS[method](list(native)), want)


@pytest.mark.parametrize("bad", ["abc", b"abc", None, {"a": np.ones(3)}, 3.5, 7])
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_not_updates_raise(method, bad):
    """A string, bytes, None, a dict or a number is not a set of updates."""
    with pytest.raises(TypeError, match=r"updates must be an \(n, d\) array or a sequence"):
        METHODS[method](bad)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_object_rows_raise(method):
    """Rows that are not numeric."""
    with pytest.raises(TypeError, match=r"updates\[0\] is ragged or not numeric"):
        METHODS[method]([None, None])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_models_with_different_layer_counts_raise(method, rng):
    """One model with a missing layer."""
    models = [[np.ones((3, 4)), np.ones(5)] for _ in range(3)]
    models[2] = models[2][:1]
    with pytest.raises(ValueError, match=r"updates\[2\] has 1 layers but updates\[0\] has 2"):
        METHODS[method](models)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_models_with_different_layer_shapes_raise(method):
    """One model with a layer of another shape (same size)."""
    models = [[np.ones((3, 4)), np.ones(5)] for _ in range(3)]
    models[1][0] = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"updates\[1\]\[0\] has shape \(4, 3\) but updates\[0\]"):
        METHODS[method](models)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_models_with_mixed_dtypes_raise(method):
    """Layers of one model in two dtypes, or one model in another dtype."""
    with pytest.raises(TypeError, match=r"updates\[0\]\[1\] has dtype float32"):
        METHODS[method]([[np.ones(2), np.ones(2, F32)]] * 3)
    models = [[np.ones(2), np.ones(3)], [np.ones(2, F32), np.ones(3, F32)]]
    with pytest.raises(TypeError, match=r"updates\[1\]\[0\] has dtype float32"):
        METHODS[method](models)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_models_mixed_with_arrays_raise(method):
    """A model list next to a plain array, in either order."""
    with pytest.raises(TypeError, match=r"updates\[1\] is not a list of layers"):
        METHODS[method]([[np.ones(2), np.ones(3)], np.ones(5)])
    with pytest.raises(TypeError, match=r"updates\[1\] is a list of layers"):
        METHODS[method]([np.ones(5), [np.ones(2), np.ones(3)]])


# ----------------------------------------------------------------------------- non-finite


def place(form: str, x: np.ndarray) -> Any:
    """``x`` as an array, a list of rows, or models whose second layer holds column 3 onward."""
    if form == "array":
        return x
    if form == "list":
        return [row.copy() for row in x]
    return [[row[:3].reshape(3, 1).copy(), row[3:].copy()] for row in x]


@pytest.mark.parametrize("form", ["array", "list", "models"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("first_bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_nonfinite_names_first_bad_update(backend, method, dtype, first_bad, weighted, form, rng):
    """NaN/inf raise ValueError naming the first update holding one (later ones too)."""
    x = normal(rng, (9, 21), dtype)
    x[4, 17] = first_bad  # update 4, late coordinate (second layer for models)
    x[6, 0] = math.nan  # a later update, earlier coordinate
    x[8, 5] = math.inf
    w = rng.uniform(0.5, 2.0, 9)
    w[4] = 0.0  # a zero weight does not excuse a non-finite value
    kwargs = {"weights": w} if weighted else {}
    with pytest.raises(ValueError, match=r"^updates\[4\] contains a non-finite value"):
        METHODS[method](place(form, x), **kwargs)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_nonfinite_in_a_late_block_is_found(backend, method, dtype, threads, restore_threads):
    """A NaN in the last coordinate of a long update (another block or thread) is found."""
    hierfed.set_num_threads(threads)
    x = np.ones((10, 20_011), dtype=dtype)
    x[7, -1] = math.nan
    x[9, 0] = math.inf
    with pytest.raises(ValueError, match=r"^updates\[7\] contains a non-finite value"):
        METHODS[method](x)
    with pytest.raises(ValueError, match=r"^updates\[7\] contains a non-finite value"):
        METHODS[method](x, weights=np.arange(10.0))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("k", [1, 9])
def test_nonfinite_value_that_would_be_trimmed_still_raises(backend, dtype, bad, k, rng):
    """An infinity the trimmed mean would drop anyway is still reported."""
    x = normal(rng, (2 * k + 3, 19), dtype)
    x[k + 1, 11] = bad
    with pytest.raises(ValueError, match=rf"^updates\[{k + 1}\] contains a non-finite value"):
        hierfed.trimmed_mean(x, n_trim=k)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("method", METHOD_NAMES)
def test_check_finite_false_does_not_raise(backend, method, dtype, rng):
    """check_finite=False skips the check and returns an answer of the right shape."""
    x = normal(rng, (7, 13), dtype)
    x[2, 3] = math.nan
    x[5, 8] = math.inf
    got = METHODS[method](x, check_finite=False)
    assert got.shape == (13,) and got.dtype == np.dtype(dtype)


# ----------------------------------------------------------------------------- bad weights


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("weights", [[1.0, 2.0], [1.0] * 5, [[1.0, 1.0, 1.0]], 1.0])
def test_weights_of_wrong_length_raise(method, weights):
    """One weight per update, as a 1-D sequence."""
    with pytest.raises(ValueError, match=r"weights: need one weight per update \(3\)"):
        METHODS[method](np.ones((3, 4)), weights=weights)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_negative_weight_raises(method):
    """Weights must be non-negative."""
    with pytest.raises(ValueError, match=r"weights must be >= 0; weights\[1\] = -0.5"):
        METHODS[method](np.ones((3, 4)), weights=[1.0, -0.5, 1.0])


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_weight_raises(method, bad):
    """Weights must be finite."""
    with pytest.raises(ValueError, match=r"weights must be finite; weights\[2\]"):
        METHODS[method](np.ones((3, 4)), weights=[1.0, 1.0, bad])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_all_zero_weights_raise(method):
    """At least one weight must be positive."""
    with pytest.raises(ValueError, match=r"weights are all zero"):
        METHODS[method](np.ones((3, 4)), weights=[0.0, 0.0, 0.0])


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_weights_summing_past_float64_are_scaled_exactly(method):
    """Weights whose total overflows float64 are scaled by a power of two, not refused."""
    x = np.arange(12.0).reshape(3, 4)
    got = METHODS[method](x, weights=[1e308, 1e308, 1e308])
    np.testing.assert_array_equal(got, METHODS[method](x))


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_non_numeric_weights_raise(method):
    """Weights that are not numbers."""
    with pytest.raises(TypeError, match=r"weights must be a sequence of 3 real numbers"):
        METHODS[method](np.ones((3, 4)), weights=["a", "b", "c"])


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_zero_kept_weight_after_trimming_raises(backend, dtype):
    """Weighted trimmed mean: a coordinate whose kept values all weigh zero."""
    x = np.array([[-10.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0], [10.0, 5.0]], dtype=dtype)
    w = [1.0, 0.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"weights: .*every value kept after trimming has weight"):
        hierfed.trimmed_mean(x, n_trim=1, weights=w)
    # With k = 0 the positive weights are kept: no error.
    np.testing.assert_allclose(hierfed.trimmed_mean(x, n_trim=0, weights=w), [0.0, 3.0])


# ----------------------------------------------------------------------------- bad trimming


@pytest.mark.parametrize("ratio", [-0.1, 0.5, 0.7, 1.0, math.nan, math.inf, -math.inf])
def test_trim_ratio_out_of_range_raises(ratio):
    """trim_ratio must be in [0, 0.5)."""
    with pytest.raises(ValueError, match=r"trim_ratio must be in \[0, 0.5\)"):
        hierfed.trimmed_mean(np.ones((5, 3)), ratio)


@pytest.mark.parametrize("ratio", ["0.1", True, [0.1], complex(0.1, 0)])
def test_trim_ratio_not_a_number_raises(ratio):
    """trim_ratio must be a real number."""
    with pytest.raises(TypeError, match=r"trim_ratio must be a real number"):
        hierfed.trimmed_mean(np.ones((5, 3)), ratio)


@pytest.mark.parametrize(("n", "k"), [(5, 3), (4, 2), (1, 1), (10, 5), (3, 100)])
def test_n_trim_too_large_raises(n, k):
    """2 * n_trim must be below n."""
    with pytest.raises(ValueError, match=rf"n_trim must satisfy 0 <= 2\*n_trim < n \(n={n}\)"):
        hierfed.trimmed_mean(np.ones((n, 3)), n_trim=k)


def test_n_trim_negative_raises():
    """n_trim must be >= 0."""
    with pytest.raises(ValueError, match=r"n_trim must satisfy .* got -1"):
        hierfed.trimmed_mean(np.ones((5, 3)), n_trim=-1)


def test_n_trim_and_trim_ratio_together_raise():
    """Only one of n_trim and trim_ratio."""
    with pytest.raises(ValueError, match=r"pass trim_ratio or n_trim, not both"):
        hierfed.trimmed_mean(np.ones((5, 3)), 0.2, n_trim=1)


@pytest.mark.parametrize("k", [1.0, 1.5, "1", True])
def test_n_trim_not_an_int_raises(k):
    """n_trim must be an int (no silent rounding of a float)."""
    with pytest.raises(TypeError, match=r"n_trim must be an int"):
        hierfed.trimmed_mean(np.ones((5, 3)), n_trim=k)


def test_n_trim_numpy_integer_is_accepted():
    """A numpy integer is an int."""
    x = np.arange(15.0).reshape(5, 3)
    np.testing.assert_array_equal(hierfed.trimmed_mean(x, n_trim=np.int64(2)), x[2])


# ----------------------------------------------------------------------------- aggregate()


@pytest.mark.parametrize("method", ["brute", "MEAN", "", None, 3])
def test_aggregate_unknown_method_raises(method):
    """aggregate() lists the methods it knows."""
    with pytest.raises(ValueError, match=r"method must be one of mean, trimmed_mean, median"):
        hierfed.aggregate(np.ones((3, 2)), method)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("mean", {"trim_ratio": 0.1}), ("median", {"f": 1}), ("trimmed_mean", {"weight": [1] * 3})],
)
def test_aggregate_unknown_kwarg_raises(method, kwargs):
    """A parameter the rule does not take is a TypeError naming it."""
    name = next(iter(kwargs))
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{name}'"):
        hierfed.aggregate(np.ones((3, 2)), method, **kwargs)


def test_aggregate_passes_bad_parameters_through():
    """aggregate() reports the rule's own validation errors."""
    with pytest.raises(ValueError, match=r"trim_ratio must be in"):
        hierfed.aggregate(np.ones((3, 2)), "trimmed_mean", trim_ratio=0.6)
    with pytest.raises(ValueError, match=r"weights are all zero"):
        hierfed.aggregate(np.ones((3, 2)), "median", weights=[0, 0, 0])
    with pytest.raises(ValueError, match=r"updates: need at least 1 update"):
        hierfed.aggregate([], "mean")
