"""The fast distance kernels (C++ and numba): the summation recipe bit for bit, the numpy
references, bad input.

``pairwise_sq_distances`` and ``sq_distances_to`` follow a fixed summation order shared by the
C++ core and its numba twin; a slow transcription of that recipe below (scalar loops,
``np.float32`` scalars for float32 rows, fused multiply-adds rounded from exact rationals)
must equal each kernel exactly. ``mean_around_median`` is defined exactly by its selection
rule and row-order sums, transcribed the same way. Every test runs once per available fast
backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from hierfed import _backend
from hierfed._kernels import numpy as kp

FAST = [b for b in _backend.available_backends() if b != "numpy"]
pytestmark = pytest.mark.skipif(not FAST, reason="neither the C++ core nor numba is available")
kn: Any = None  # the kernel module under test, set per test by the fixture below


@pytest.fixture(autouse=True, params=FAST)
def fast_kernels(request: pytest.FixtureRequest) -> Any:
    """Each fast backend's kernel module in turn, as ``kn``."""
    global kn
    kn = _backend._load(request.param)
    return kn


F32, F64 = np.float32, np.float64
DTYPES = [F32, F64]
DTYPE_IDS = ["f32", "f64"]

Segments = list[list[np.ndarray]]


def make_segments(
    rng: np.random.Generator, n: int, lens: Sequence[int], dtype: Any, spread: bool = False
) -> Segments:
    """``n`` rows per segment, standard normal (times 10**U(-3, 3) per value if ``spread``)."""
    segments = []
    for length in lens:
        x = rng.standard_normal((n, length))
        if spread:
            x *= 10.0 ** rng.uniform(-3, 3, (n, length))
        segments.append(list(x.astype(dtype)))
    return segments


def pairwise(segments: Segments, chunk: int, n_units: int, n_threads: int = 1) -> np.ndarray:
    """The kernel's (n, n) result."""
    n = len(segments[0])
    out = np.full((n, n), -1.0)
    kn.pairwise_sq_distances(segments, out, chunk, n_units, n_threads)
    return out


def pairwise_reference(segments: Segments) -> np.ndarray:
    """The float64 numpy reference."""
    n = len(segments[0])
    out = np.empty((n, n))
    kp.pairwise_sq_distances(segments, out)
    return out


# ----------------------------------------------------------------------------- the recipe


def fold(lanes: list[float]) -> float:
    """The lanes' tree: ``A[l] += A[l + w]`` for ``w = 8, 4, 2, 1``."""
    a = list(lanes)
    for w in (8, 4, 2, 1):
        for lane in range(w):
            a[lane] = a[lane] + a[lane + w]
    return a[0]


def fma64(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once to float64 (exact rationals, correctly rounded division)."""
    return float(Fraction(a) * Fraction(b) + Fraction(c))


def fma32(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    """``a * b + c`` rounded once to float32: the nearest float32 to the exact value (ties
    to even), among the neighbours of its float64 rounding."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    near = np.float32(float(exact))
    cands = [np.nextafter(near, F32(-np.inf)), near, np.nextafter(near, F32(np.inf))]
    return min(
        cands,
        key=lambda x: (abs(Fraction(float(x)) - exact), int(np.array(x).view(np.int32)) & 1),
    )


def chunk_value(xi: np.ndarray, xj: np.ndarray, first: int, end: int) -> float:
    """One pair's value of the chunk ``[first, end)``, as the recipe states it."""
    a = [0.0] * 16
    if xi.dtype == np.float32:
        for run in range(first, end, 128):
            t = [np.float32(0.0)] * 16
            for step in range(8):
                for lane in range(16):
                    c = run + 16 * step + lane
                    if c < end:
                        d = np.float32(xi[c] - xj[c])
                        t[lane] = fma32(d, d, t[lane])
            for lane in range(16):
                a[lane] = a[lane] + float(t[lane])
    else:
        for c in range(first, end):
            d = float(xi[c]) - float(xj[c])
            lane = (c - first) % 16
            a[lane] = fma64(d, d, a[lane])
    return fold(a)


def recipe_pairwise(segments: Segments, chunk: int, n_units: int) -> np.ndarray:
    """The pairwise recipe transcribed: chunks, units, ordered sums."""
    n = len(segments[0])
    chunks = [
        (s, first, min(first + chunk, rows[0].size))
        for s, rows in enumerate(segments)
        for first in range(0, rows[0].size, chunk)
    ]
    k = len(chunks)
    units = min(n_units, k)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            partials = []
            for u in range(units):
                p = 0.0
                for s, first, end in chunks[u * k // units : (u + 1) * k // units]:
                    p = p + chunk_value(segments[s][i], segments[s][j], first, end)
                partials.append(p)
            total = partials[0] if partials else 0.0
            for p in partials[1:]:
                total = total + p
            out[i, j] = out[j, i] = total
    return out


def recipe_distances_to(segments: Segments, point: Sequence[np.ndarray]) -> np.ndarray:
    """The point-distance recipe: per segment 16 float64 lanes and their tree, in order."""
    n = len(segments[0])
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for rows, p in zip(segments, point, strict=True):
            a = [0.0] * 16
            for c in range(p.size):
                d = float(rows[i][c]) - float(p[c])
                a[c % 16] = a[c % 16] + d * d
            total = total + fold(a)
        out[i] = total
    return out


def rule_around_median(
    segments: Segments, n_keep: int, weights: np.ndarray | None
) -> list[np.ndarray]:
    """The mean around the median by its definition: (distance, index) order, row-order sums."""
    outs = []
    for rows in segments:
        n = len(rows)
        out = np.empty(rows[0].size, rows[0].dtype)
        for c in range(rows[0].size):
            values = [float(r[c]) for r in rows]
            ordered = sorted(values)
            a, b = ordered[(n - 1) // 2], ordered[n // 2]
            med = a if a == b else 0.5 * a + 0.5 * b
            dist = [abs(v - med) for v in values]
            kept = sorted(sorted(range(n), key=lambda i: (dist[i], i))[:n_keep])
            if weights is None:
                total = 0.0
                for i in kept:
                    total = total + values[i]
                out[c] = total / float(n_keep)
            else:
                total = 0.0
                wsum = 0.0
                for i in kept:
                    total = total + weights[i] * values[i]
                    wsum = wsum + weights[i]
                out[c] = total / wsum if wsum else math.nan
        outs.append(out)
    return outs


def around_median(
    segments: Segments, n_keep: int, weights: np.ndarray | None, n_threads: int = 1
) -> tuple[bool, list[np.ndarray]]:
    """The kernel's flag and outputs."""
    outs = [np.full(rows[0].size, -7.0, rows[0].dtype) for rows in segments]
    bad = kn.mean_around_median(segments, outs, n_keep, weights, n_threads)
    return bad, outs


RECIPE_CASES = [  # (n, segment lengths, chunk, n_units)
    (2, [300], 128, 1),
    (3, [5, 257, 129], 128, 2),
    (4, [383], 256, 3),
    (5, [1, 130, 256, 7], 128, 100),
    (6, [600], 256, 2),
    (1, [40], 128, 1),
    (9, [300], 128, 2),  # tiles of 4 x 4 rows and 2 x 4: whole, diagonal, past the last row
]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", RECIPE_CASES)
def test_pairwise_is_the_recipe(rng, dtype, case):
    n, lens, chunk, n_units = case
    segments = make_segments(rng, n, lens, dtype, spread=True)
    got = pairwise(segments, chunk, n_units)
    assert np.array_equal(got, recipe_pairwise(segments, chunk, n_units))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_pairwise_recipe_with_offset_and_duplicates(rng, dtype):
    segments = [list((1e4 + 1e-2 * rng.standard_normal((5, 300))).astype(dtype))]
    segments[0][3] = segments[0][1].copy()
    got = pairwise(segments, 128, 2)
    assert np.array_equal(got, recipe_pairwise(segments, 128, 2))
    assert got[1, 3] == got[3, 1] == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_distances_to_is_the_recipe(rng, dtype):
    segments = make_segments(rng, 4, [3, 200, 17], dtype, spread=True)
    point = [rows[0] * dtype(0.5) + dtype(1) for rows in segments]
    out = np.empty(4)
    kn.sq_distances_to(segments, point, out, 1)
    assert np.array_equal(out, recipe_distances_to(segments, point))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [1, 2, 5, 8])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_around_median_is_the_rule(rng, dtype, n, weighted):
    segments = make_segments(rng, n, [70, 3, 130], dtype)
    # ties of value and of distance: a few coordinates drawn from a small integer set
    for rows in segments:
        for r in rows:
            r[::5] = rng.integers(-2, 3, r[::5].size)
    weights = rng.uniform(0.0, 2.0, n) if weighted else None
    for n_keep in sorted({1, max(1, n // 2), n}):
        bad, outs = around_median(segments, n_keep, weights)
        assert not bad
        for got, want in zip(outs, rule_around_median(segments, n_keep, weights), strict=True):
            assert np.array_equal(got, want, equal_nan=True)


# ----------------------------------------------------------------------------- references

REFERENCE_LAYOUTS = [[1], [5], [127], [128], [129], [1000], [5000], [129, 1, 1000, 128]]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("lens", REFERENCE_LAYOUTS, ids=str)
def test_pairwise_matches_reference(rng, dtype, n, lens):
    segments = make_segments(rng, n, lens, dtype)
    want = pairwise_reference(segments)
    rtol = 1e-6 if dtype == F32 else 1e-12
    for chunk in (128, 256):
        for n_units in (1, 3, 100):
            got = pairwise(segments, chunk, n_units)
            assert np.all(np.abs(got - want) <= rtol * want)
            assert np.array_equal(got, got.T)
            assert np.all(np.diag(got) == 0.0)


def test_pairwise_float32_offset_matches_float64_reference(rng):
    x = 1e4 + 1e-2 * rng.standard_normal((6, 3000))
    segments = [list(x.astype(F32))]
    want = pairwise_reference(segments)  # the float32 values, differences in float64
    for chunk, n_units in ((128, 1), (256, 3)):
        got = pairwise(segments, chunk, n_units)
        assert np.all(np.abs(got - want) <= 1e-6 * want)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_pairwise_duplicates_are_exact_zeros(rng, dtype):
    segments = make_segments(rng, 5, [300, 7], dtype)
    for rows in segments:
        rows[4] = rows[1].copy()
        rows[2] = rows[1].copy()
    got = pairwise(segments, 128, 3)
    assert got[1, 2] == got[1, 4] == got[2, 4] == 0.0
    assert np.all(got[0, 1:] > 0.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [1, 3, 50])
def test_distances_to_matches_reference(rng, dtype, n):
    segments = make_segments(rng, n, [129, 1, 1000, 5000], dtype)
    point = [rng.standard_normal(rows[0].size).astype(dtype) for rows in segments]
    got = np.empty(n)
    want = np.empty(n)
    kn.sq_distances_to(segments, point, got, 1)
    kp.sq_distances_to(segments, point, want)
    assert np.all(np.abs(got - want) <= 1e-12 * want)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 50])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_around_median_matches_reference(rng, dtype, n, weighted):
    segments = make_segments(rng, n, [129, 1, 1000], dtype)
    weights = rng.uniform(0.5, 2.0, n) if weighted else None
    tol = 1e-6 if dtype == F32 else 1e-12
    for n_keep in sorted({1, (n + 1) // 2, n}):
        bad, got = around_median(segments, n_keep, weights)
        assert not bad
        want = [np.empty_like(o) for o in got]
        kp.mean_around_median(segments, want, n_keep, weights)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


# Columns with ties of distance on both sides of the median (rows are rows of the matrix).
TIE_COLUMNS = np.array(
    [
        [0, 4, 0, 3, 5],
        [1, 3, 1, 1, 5],
        [2, 2, 3, 3, 1],
        [3, 1, 4, 1, 1],
        [4, 0, 6, 2, 3],
    ],
    dtype=float,
)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_around_median_ties_go_to_the_lower_row(dtype):
    segments = [list(TIE_COLUMNS.astype(dtype))]
    # n_keep = 2. Column 0: med 2 (row 2), rows 1 and 3 both at distance 1: row 1 is kept,
    # (1 + 2) / 2. Column 1: the same, reversed: rows 1 (3) and 2 (2). Column 2: med 3,
    # distances 3, 2, 0, 1, 3: rows 2 and 3. Column 3: med 2 (row 4), the four others at
    # distance 1 on both sides: row 0 (3). Column 4: med 3 (row 4), four at 2: row 0 (5).
    bad, (got,) = around_median(segments, 2, None)
    assert not bad
    assert np.array_equal(got, np.array([1.5, 2.5, 3.5, 2.5, 4.0], dtype))
    # weights 1, 2, 3, 4, 5 on the same selections (exact sums)
    w = np.arange(1.0, 6.0)
    bad, (got,) = around_median(segments, 2, w)
    want = np.array([(2 * 1 + 3 * 2) / 5, (2 * 3 + 3 * 2) / 5, (3 * 3 + 4 * 4) / 7, 0, 0])
    want[3] = (1 * 3 + 5 * 2) / 6
    want[4] = (1 * 5 + 5 * 3) / 6
    assert np.array_equal(got, want.astype(dtype))
    for weights in (None, w):
        ref = [np.empty(5, dtype)]
        kp.mean_around_median(segments, ref, 2, weights)
        _, (got,) = around_median(segments, 2, weights)
        np.testing.assert_allclose(got, ref[0], rtol=1e-6 if dtype == F32 else 1e-15)


def test_around_median_even_n_ties():
    # med 1.5: rows 1 and 2 at 0.5, rows 0 and 3 at 1.5
    segments = [[np.array([v]) for v in (0.0, 1.0, 2.0, 3.0)]]
    assert around_median(segments, 1, None)[1][0][0] == 1.0
    assert around_median(segments, 3, None)[1][0][0] == 1.0  # rows 0, 1, 2
    assert around_median(segments, 4, None)[1][0][0] == 1.5


def test_around_median_zero_kept_weight_is_nan():
    segments = [[np.array([v]) for v in (0.0, 1.0, 5.0)]]
    _, (got,) = around_median(segments, 1, np.array([1.0, 0.0, 1.0]))
    assert np.isnan(got[0])


def test_around_median_subnormal_middle_values():
    # 0.5 * 3u rounds to 2u (u the smallest subnormal): 0.5a + 0.5b would give 4u, above the
    # middle values 3u; the median of two equal middle values is that value.
    u = np.float64(5e-324)
    column = np.array([0, 3, 3, 3, 4]) * u
    segments = [[np.array([v]) for v in column]]
    assert 0.5 * column[2] + 0.5 * column[2] == 4 * u
    for n_keep in range(1, 6):
        _, got = around_median(segments, n_keep, None)
        assert np.array_equal(got[0], rule_around_median(segments, n_keep, None)[0])
    assert around_median(segments, 1, None)[1][0][0] == 3 * u


# ----------------------------------------------------------------------------- threads, NaN


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_results_do_not_depend_on_threads(rng, dtype):
    segments = make_segments(rng, 9, [20000, 333], dtype)  # large enough for two threads
    for chunk, n_units in ((128, 5), (256, 2), (1024, 1)):  # one unit: threads split the rows
        one = pairwise(segments, chunk, n_units, 1)
        assert np.array_equal(one, pairwise(segments, chunk, n_units, 2))
    point = [rows[0] for rows in segments]
    one, two = np.empty(9), np.empty(9)
    kn.sq_distances_to(segments, point, one, 1)
    kn.sq_distances_to(segments, point, two, 2)
    assert np.array_equal(one, two)
    w = rng.uniform(0.5, 2.0, 9)
    for weights in (None, w):
        a = around_median(segments, 4, weights, 1)[1]
        b = around_median(segments, 4, weights, 2)[1]
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nonfinite_input(rng, dtype, bad_value):
    segments = make_segments(rng, 5, [300, 9], dtype)
    segments[1][2][4] = bad_value
    got = pairwise(segments, 128, 3)
    off = np.arange(5) != 2
    assert not np.isfinite(got[2, off]).any()
    assert not np.isfinite(got[off, 2]).any()
    assert np.isfinite(got[np.ix_(off, off)]).all()
    assert got[2, 2] == 0.0
    out = np.empty(5)
    kn.sq_distances_to(segments, [rows[0] for rows in segments], out, 1)
    assert np.isfinite(out[off]).all() and not np.isfinite(out[2])
    assert around_median(segments, 2, None)[0]
    assert around_median(segments, 2, np.ones(5))[0]


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_rejected():
    """Kernel-level checks (the public API validates before): never a raw-memory read."""
    rows = [np.zeros(10, F32) for _ in range(3)]
    out = np.empty((3, 3))
    with pytest.raises(ValueError, match="chunk"):
        kn.pairwise_sq_distances([rows], out, 100, 1, 1)
    with pytest.raises(ValueError, match="n_units"):
        kn.pairwise_sq_distances([rows], out, 128, 0, 1)
    with pytest.raises(ValueError):
        kn.pairwise_sq_distances([rows], np.empty((3, 2)), 128, 1, 1)
    with pytest.raises(ValueError):
        kn.pairwise_sq_distances([rows], np.empty((3, 6))[:, ::2], 128, 1, 1)
    with pytest.raises(TypeError):
        kn.pairwise_sq_distances([rows], np.empty((3, 3), F32), 128, 1, 1)
    with pytest.raises(ValueError):  # a row of the wrong length
        kn.pairwise_sq_distances([[*rows[:2], np.zeros(9, F32)]], out, 128, 1, 1)
    with pytest.raises((TypeError, ValueError)):  # a row of another dtype
        kn.pairwise_sq_distances([[*rows[:2], np.zeros(10)]], out, 128, 1, 1)
    with pytest.raises(ValueError):  # a strided row
        kn.pairwise_sq_distances([[*rows[:2], np.zeros(20, F32)[::2]]], out, 128, 1, 1)
    with pytest.raises(ValueError):  # segments with different row counts
        kn.pairwise_sq_distances([rows, rows[:2]], out, 128, 1, 1)
    with pytest.raises(TypeError):
        kn.pairwise_sq_distances([[np.zeros(10, np.float16)] * 3], out, 128, 1, 1)
    with pytest.raises(ValueError):  # a point of the wrong length
        kn.sq_distances_to([rows], [np.zeros(9, F32)], np.empty(3), 1)
    with pytest.raises((TypeError, ValueError)):  # a point of another dtype
        kn.sq_distances_to([rows], [np.zeros(10)], np.empty(3), 1)
    with pytest.raises(ValueError):
        kn.sq_distances_to([rows], [np.zeros(10, F32)], np.empty(4), 1)
    outs = [np.empty(10, F32)]
    for n_keep in (0, 4):
        with pytest.raises(ValueError, match="n_keep"):
            kn.mean_around_median([rows], outs, n_keep, None, 1)
    with pytest.raises(ValueError):
        kn.mean_around_median([rows], outs, 2, np.ones(2), 1)
    with pytest.raises(ValueError):
        kn.mean_around_median([rows], [np.empty(9, F32)], 2, None, 1)


# ----------------------------------------------------------------------------- mixing


def recipe_mix(segments: Segments, w: np.ndarray) -> list[np.ndarray]:
    """out[o] = sum_i w[o, i] x_i / sum_i w[o, i], rows in index order, ``acc + w * x``."""
    m, n = w.shape
    outs = []
    for rows in segments:
        x = np.stack([r.astype(F64) for r in rows])
        out = np.empty((m, x.shape[1]), rows[0].dtype)
        for o in range(m):
            acc = np.zeros(x.shape[1])
            wsum = 0.0
            for i in range(n):
                acc = acc + w[o, i] * x[i]
                wsum = wsum + w[o, i]
            out[o] = acc / wsum
        outs.append(out)
    return outs


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    ("n", "m", "lens"), [(1, 1, [5]), (3, 2, [17, 1]), (9, 9, [300, 64]), (50, 7, [129])]
)
def test_mix_rows_is_the_recipe_and_matches_reference(rng, dtype, n, m, lens):
    segments = make_segments(rng, n, lens, dtype)
    w = rng.uniform(0.0, 2.0, (m, n)) * (rng.random((m, n)) < 0.7)
    w[:, 0] += 0.5  # every row of weights has a positive sum
    for threads in (1, 2):
        outs = [np.full((m, length), -3.0, dtype) for length in lens]
        assert not kn.mix_rows(segments, w, outs, threads)
        for got, want in zip(outs, recipe_mix(segments, w), strict=True):
            np.testing.assert_array_equal(got, want, strict=True)
    refs = [np.empty((m, length), dtype) for length in lens]
    kp.mix_rows(segments, w, refs)
    for got, want in zip(outs, refs, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == F32 else 1e-12, atol=1e-12)


def test_mix_rows_flags_nonfinite_and_rejects_bad_weights(rng):
    segments = make_segments(rng, 4, [40], F32)
    outs = [np.empty((2, 40), F32)]
    w = np.ones((2, 4))
    segments[0][3][7] = np.inf
    assert kn.mix_rows(segments, w, outs, 1)
    segments[0][3][7] = 0.0
    for bad in (-np.ones((2, 4)), np.zeros((2, 4)), np.ones((2, 3)), np.full((2, 4), np.nan)):
        with pytest.raises(ValueError):
            kn.mix_rows(segments, bad, outs, 1)
    with pytest.raises(ValueError):
        kn.mix_rows(segments, w, [np.empty((2, 39), F32)], 1)
    with pytest.raises(TypeError):
        kn.mix_rows(segments, w, [np.empty((2, 40), F64)], 1)
