"""Krum, Multi-Krum and Bulyan on every backend against literal transcriptions of the papers.

The transcriptions below follow Blanchard et al. 2017 (Krum, Multi-Krum) and El Mhamdi et
al. 2018 (Bulyan) step by step in float64, without the package's code.
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


# ------------------------------------------------------------ literal transcriptions


def sq_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum((np.asarray(a, F64) - np.asarray(b, F64)) ** 2))


def krum_scores_literal(vectors: list[np.ndarray], f: int) -> list[float]:
    """score(i) = sum of squared distances to the n - f - 2 closest other vectors."""
    n = len(vectors)
    scores = []
    for i in range(n):
        dists = sorted(sq_dist(vectors[i], vectors[j]) for j in range(n) if j != i)
        scores.append(sum(dists[: max(1, n - f - 2)]))
    return scores


def krum_literal(vectors: list[np.ndarray], f: int) -> int:
    scores = krum_scores_literal(vectors, f)
    return min(range(len(scores)), key=lambda i: (scores[i], i))


def multi_krum_literal(x: np.ndarray, f: int, m: int, w: Any = None) -> tuple[list[int], Any]:
    scores = krum_scores_literal(list(x), f)
    chosen = sorted(sorted(range(len(x)), key=lambda i: (scores[i], i))[:m])
    weights = np.ones(len(x)) if w is None else np.asarray(w, F64)
    return chosen, np.average(x[chosen].astype(F64), axis=0, weights=weights[chosen])


def bulyan_literal(x: np.ndarray, f: int, w: Any = None) -> tuple[list[int], np.ndarray]:
    """Recursive Krum selection of theta = n - 2f, then beta = theta - 2f closest to median."""
    n = len(x)
    theta = n - 2 * f
    beta = theta - 2 * f
    remaining = list(range(n))
    selection = []
    while len(selection) < theta:
        winner = remaining[krum_literal([x[i] for i in remaining], f)]
        selection.append(winner)
        remaining.remove(winner)
    selection.sort()
    weights = np.ones(n) if w is None else np.asarray(w, F64)
    s = x[selection].astype(F64)
    out = np.empty(x.shape[1])
    for c in range(x.shape[1]):
        med = float(np.median(s[:, c]))
        order = sorted(range(theta), key=lambda q: (abs(s[q, c] - med), selection[q]))[:beta]
        ws = weights[[selection[q] for q in order]]
        out[c] = np.dot(ws, s[order, c]) / ws.sum()
    return selection, out


def attacked(n: int, f: int, d: int, dtype: Any, rng: np.random.Generator) -> np.ndarray:
    """Honest updates around a common point, f of them replaced by large outliers."""
    x = rng.standard_normal((n, d)) + 0.5
    x[rng.choice(n, f, replace=False)] += rng.standard_normal((f, d)) * 20
    return x.astype(dtype)


CASES = [(3, 0, 1), (5, 1, 7), (7, 2, 130), (11, 2, 1000), (20, 4, 333)]


# ----------------------------------------------------------------------------- Krum


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("n", "f", "d"), CASES)
def test_krum_matches_the_paper(backend, dtype, n, f, d, rng):
    x = attacked(n, f, d, dtype, rng)
    index, scores = hierfed.krum_select(x, f)
    assert index == krum_literal(list(x), f)
    np.testing.assert_allclose(scores, krum_scores_literal(list(x), f), rtol=1e-6)
    chosen = hierfed.krum(x, f)
    np.testing.assert_array_equal(chosen, x[index], strict=True)
    chosen[...] = 0  # a copy, never a view of the caller's data
    assert np.any(x[index] != 0)
    result = hierfed.aggregate(x, "krum", f=f)
    assert result.selected == (index,)
    assert result.outliers_removed == tuple(i for i in range(n) if i != index)


def test_krum_offset_case_picks_what_float64_picks(backend, rng):
    """Updates sharing a 1e4 offset with 1e-2 spread (float32)."""
    x = (1e4 + rng.uniform(-1e-2, 1e-2, (15, 5000))).astype(F32)
    x[:3] += np.float32(5e-3)
    assert hierfed.krum_select(x, 3)[0] == krum_literal(list(x), 3)
    assert hierfed.aggregate(x, "bulyan", f=3).selected == tuple(bulyan_literal(x, 3)[0])


def test_krum_ties_go_to_the_lowest_index(backend, rng):
    base = rng.standard_normal(50)
    x = np.array([base + 3, base, base, base, base + 1, base - 2, base])
    assert hierfed.krum_select(x, 1)[0] == 1
    assert hierfed.aggregate(x, "multi_krum", f=1, m=3).selected == (1, 2, 3)


def test_krum_per_layer_models(backend, rng):
    x = attacked(9, 2, 20, F32, rng)
    models = [[row[:5].reshape(5, 1), row[5:]] for row in x]
    got = hierfed.krum(models, 2)
    index = krum_literal(list(x), 2)
    assert isinstance(got, list) and got[0].shape == (5, 1)
    np.testing.assert_array_equal(np.concatenate([g.ravel() for g in got]), x[index])


# ------------------------------------------------------------------------ Multi-Krum


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("n", "f", "d"), CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_krum_matches_the_paper(backend, dtype, n, f, d, weighted, rng):
    x = attacked(n, f, d, dtype, rng)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    for m in (1, n - f, n):
        chosen, expected = multi_krum_literal(x, f, m, w)
        got = hierfed.aggregate(x, "multi_krum", f=f, m=m, weights=w)
        assert got.selected == tuple(chosen)
        rtol = 1e-6 if dtype == F32 else 1e-12
        np.testing.assert_allclose(got.aggregate, expected.astype(dtype), rtol=rtol, atol=rtol)
        assert got.aggregate.dtype == dtype
    default = hierfed.multi_krum(x, f, weights=w)
    np.testing.assert_array_equal(default, hierfed.multi_krum(x, f, m=n - f, weights=w))


def test_multi_krum_bad_m_and_zero_weights(backend, rng):
    x = attacked(7, 1, 5, F64, rng)
    for m in (0, 8):
        with pytest.raises(ValueError, match="1 <= m <= n"):
            hierfed.multi_krum(x, 1, m=m)
    with pytest.raises(TypeError, match="m must be an int"):
        hierfed.multi_krum(x, 1, m=2.0)  # type: ignore[arg-type]
    chosen = hierfed.aggregate(x, "multi_krum", f=1, m=2).selected
    w = np.ones(7)
    w[list(chosen)] = 0
    with pytest.raises(ValueError, match="all have weight zero"):
        hierfed.multi_krum(x, 1, m=2, weights=w)


# ---------------------------------------------------------------------------- Bulyan


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("n", "f", "d"), [(3, 0, 4), (7, 1, 129), (11, 2, 300), (23, 5, 64)])
@pytest.mark.parametrize("weighted", [False, True])
def test_bulyan_matches_the_paper(backend, dtype, n, f, d, weighted, rng):
    x = attacked(n, f, d, dtype, rng)
    w = rng.uniform(0.5, 2.0, n) if weighted else None
    selection, expected = bulyan_literal(x, f, w)
    got = hierfed.aggregate(x, "bulyan", f=f, weights=w)
    assert got.selected == tuple(selection)
    assert got.outliers_removed == tuple(sorted(set(range(n)) - set(selection)))
    rtol = 1e-6 if dtype == F32 else 1e-12
    np.testing.assert_allclose(got.aggregate, expected.astype(dtype), rtol=rtol, atol=rtol)


def test_bulyan_median_ties_go_to_the_lower_index(backend):
    """Columns where two values lie at the same distance from the median."""
    x = np.array([[4.0, 0.0], [3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [0.0, 4.0]])
    # f = 0: theta = 5, beta = 5 (everything); use the kernel directly for beta = 2.
    kern = _backend.kernels()
    for w in (None, np.array([1.0, 2.0, 3.0, 4.0, 5.0])):
        out = [np.empty(2)]
        assert not kern.mean_around_median([list(x)], out, 2, w, 1)
        if w is None:
            np.testing.assert_array_equal(out[0], [2.5, 1.5])
        else:  # rows 2 and 1 in column 0; rows 2 and 1 in column 1
            np.testing.assert_array_equal(out[0], [(3 * 2 + 2 * 3) / 5, (3 * 2 + 2 * 1) / 5])


@pytest.mark.parametrize("dtype", [F32, F64])
def test_mean_around_median_kernel_matches_reference(backend, dtype, rng):
    from hierfed._kernels import numpy as ref

    for n, d in [(1, 3), (2, 5), (5, 40), (8, 33), (17, 100), (40, 70)]:
        x = rng.integers(-3, 4, (n, d)).astype(dtype)  # many ties
        for keep in sorted({1, max(1, n // 2), n}):
            for w in (None, rng.uniform(0.5, 2.0, n)):
                got, want = [np.empty(d, dtype)], [np.empty(d, dtype)]
                assert not _backend.kernels().mean_around_median([list(x)], got, keep, w, 2)
                ref.mean_around_median([list(x)], want, keep, w)
                np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ shared input rules


@pytest.mark.parametrize(("rule", "per_f"), [("krum", 2), ("multi_krum", 2), ("bulyan", 4)])
@pytest.mark.parametrize("f", [0, 1, 3])
def test_minimum_n_and_one_below(backend, rule, per_f, f, rng):
    n = per_f * f + 3
    x = attacked(n, f, 6, F64, rng)
    hierfed.aggregate(x, rule, f=f)  # the minimum works
    with pytest.raises(ValueError, match=rf"n >= {per_f}f \+ 3 = {n} updates for f={f}; got"):
        hierfed.aggregate(x[:-1], rule, f=f)


@pytest.mark.parametrize("rule", ["krum", "multi_krum", "bulyan"])
def test_bad_f(backend, rule, rng):
    x = attacked(11, 1, 4, F64, rng)
    with pytest.raises(ValueError, match="f must be >= 0"):
        hierfed.aggregate(x, rule, f=-1)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="f must be an int"):
            hierfed.aggregate(x, rule, f=bad)
    with pytest.raises(TypeError, match="f"):
        hierfed.aggregate(x, rule)


@pytest.mark.parametrize("rule", ["krum", "multi_krum", "bulyan"])
def test_nonfinite_update_is_named_and_list_untouched(backend, rule, rng):
    rows = list(attacked(11, 2, 30, F32, rng))
    before = [r.copy() for r in rows]
    hierfed.aggregate(rows, rule, f=2)
    assert len(rows) == 11
    for r, b in zip(rows, before, strict=True):
        np.testing.assert_array_equal(r, b)
    rows[6] = rows[6].copy()
    rows[6][3] = np.nan
    with pytest.raises(ValueError, match=r"updates\[6\] contains a non-finite"):
        hierfed.aggregate(rows, rule, f=2)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 4))
def test_selection_is_permutation_equivariant(seed, f):
    """Relabelling the updates relabels Krum's and Bulyan's choices (tie-free data).

    With f >= 3 every Krum round of Bulyan sums at least two distances; with one, two mutual
    nearest neighbours tie exactly and the lower index (a labelling) decides.
    """
    rng = np.random.default_rng(seed)
    n = 4 * f + 3
    x = attacked(n, f, 17, F64, rng)
    perm = rng.permutation(n)
    index = hierfed.krum_select(x, f)[0]
    assert perm[hierfed.krum_select(x[perm], f)[0]] == index
    got = hierfed.aggregate(x, "bulyan", f=f)
    permuted = hierfed.aggregate(x[perm], "bulyan", f=f)
    assert tuple(sorted(int(perm[i]) for i in permuted.selected or ())) == got.selected
    np.testing.assert_allclose(permuted.aggregate, got.aggregate, rtol=1e-12)


def test_subnormal_middle_values(backend):
    """Halving rounds below the smallest normal float64: 0.5a + 0.5a can exceed a."""
    u = 5e-324
    x = np.array([[0.0], [3 * u], [3 * u], [3 * u], [4 * u]])
    np.testing.assert_array_equal(hierfed.median(x), [3 * u])
    np.testing.assert_array_equal(hierfed.median(x, weights=[1, 1, 1, 1, 1]), [3 * u])
    assert np.median(x) == 3 * u
    out = [np.empty(1)]
    assert not _backend.kernels().mean_around_median([list(x)], out, 1, None, 1)
    assert out[0][0] == 3 * u  # the median itself, not 4u


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(97, 140),
    d=st.integers(1, 4),
    levels=st.integers(2, 1000),
    dup=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    f_frac=st.floats(0, 1),
)
def test_fast_bulyan_rounds_choose_as_the_reference(n, d, levels, dup, seed, f_frac) -> None:
    """Sorted rows and running scores pick exactly what re-sorting every round picks, also on
    integer data full of ties and on duplicated updates."""
    from hierfed._krum_rounds import bulyan_selection, reference_selection

    rng = np.random.default_rng(seed)
    base = rng.integers(0, levels, size=(-(-n // dup), d)).astype(np.float64)
    x = np.repeat(base, dup, axis=0)[:n] * rng.choice([1e-3, 1.0, 1e3])
    f = int(f_frac * ((n - 3) // 4))
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    assert bulyan_selection(dist, f) == reference_selection(dist, f)
