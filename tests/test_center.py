"""Geometric median, centered clipping and nearest-neighbour mixing on every backend.

References: literal float64 transcriptions of Weiszfeld's iteration (Pillutla et al.'s RFA),
of Karimireddy et al.'s clipping step and of Allouah et al.'s NNM, and scipy's minimiser of
the geometric median's objective.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import optimize

import hierfed

F32, F64 = np.float32, np.float64


def objective(z: np.ndarray, x: np.ndarray, w: np.ndarray) -> float:
    return float(np.dot(w, np.linalg.norm(x.astype(F64) - z, axis=1)))


def objective_gradient(z: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The objective's gradient (0 from a point at ``z``: a subgradient there)."""
    diff = z - x.astype(F64)
    norms = np.linalg.norm(diff, axis=1)
    return (w * (norms > 0) / np.where(norms > 0, norms, 1.0)) @ diff


def weiszfeld_literal(x: np.ndarray, w: np.ndarray, eps: float, iters: int) -> np.ndarray:
    x = x.astype(F64)
    z = np.average(x, axis=0, weights=w)
    for _ in range(iters):
        beta = w / np.maximum(eps, np.linalg.norm(x - z, axis=1))
        z = beta @ x / beta.sum()
    return z


def clipping_literal(x: np.ndarray, v: np.ndarray, tau: float, iters: int) -> np.ndarray:
    x = x.astype(F64)
    v = v.astype(F64)
    for _ in range(iters):
        step = np.zeros_like(v)
        for xi in x:
            norm = np.linalg.norm(xi - v)
            step += (xi - v) * min(1.0, tau / norm if norm > 0 else 1.0)
        v = v + step / len(x)
    return v


def nnm_literal(x: np.ndarray, f: int) -> np.ndarray:
    x64 = x.astype(F64)
    out = np.empty_like(x64)
    for i in range(len(x)):
        d = [float(np.sum((x64[i] - x64[j]) ** 2)) for j in range(len(x))]
        near = sorted(range(len(x)), key=lambda j: (j != i, d[j], j))[: len(x) - f]
        out[i] = x64[near].mean(axis=0)
    return out


def data(n: int, d: int, dtype: Any, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, d))
    x[: n // 4] += 30.0  # a cluster of outliers
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("n", "d"), [(1, 3), (2, 5), (9, 1), (15, 40), (40, 257)])
def test_geometric_median_minimises_the_objective(backend, dtype, n, d, rng):
    x = data(n, d, dtype, rng)
    w = rng.uniform(0.5, 2.0, n)
    got = hierfed.geometric_median(x, weights=w, max_iter=500, tol=1e-12)
    assert got.dtype == dtype and got.shape == (d,)
    start = np.average(x.astype(F64), axis=0, weights=w)
    # BFGS's finite differences cost d objective calls a gradient (9 s at d=257): the exact one
    # where d is large; at a kink (n=2, d=1: the minimum at an update) finite differences.
    jac = objective_gradient if d > 100 else None
    best = optimize.minimize(objective, start, args=(x, w), jac=jac, method="BFGS", tol=1e-12).x
    scale = objective(best, x, w)
    assert objective(got.astype(F64), x, w) <= scale * (1 + (1e-6 if dtype == F32 else 1e-9))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_geometric_median_iterates_as_weiszfeld(backend, dtype, rng):
    x = data(12, 30, dtype, rng)
    w = rng.uniform(0.5, 2.0, 12)
    for iters in (1, 3):
        got = hierfed.geometric_median(x, weights=w, max_iter=iters, tol=1e-300)
        want = weiszfeld_literal(x, w, 1e-8, iters)
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == F32 else 1e-11, atol=1e-5)


def test_geometric_median_resists_outliers_and_takes_models(backend, rng):
    x = data(20, 16, F64, rng)
    gm = hierfed.geometric_median(x)
    assert np.linalg.norm(gm) < 0.25 * np.linalg.norm(x.mean(axis=0))
    models = [[row[:6].reshape(2, 3), row[6:]] for row in x]
    layers = hierfed.geometric_median(models)
    np.testing.assert_allclose(np.concatenate([layer.ravel() for layer in layers]), gm, rtol=1e-12)


def test_geometric_median_bad_parameters(backend, rng):
    x = data(5, 3, F64, rng)
    for name, bad in [("eps", 0.0), ("tol", -1.0), ("eps", np.nan)]:
        with pytest.raises(ValueError, match=f"{name} must be finite and > 0"):
            hierfed.geometric_median(x, **{name: bad})
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        hierfed.geometric_median(x, max_iter=0)
    x[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"updates\[2\]"):
        hierfed.geometric_median(x)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("iters", [1, 3])
def test_centered_clipping_matches_the_paper(backend, dtype, iters, rng):
    x = data(10, 50, dtype, rng)
    center = rng.standard_normal(50).astype(dtype)
    for tau in (0.5, 5.0, 1e6):
        got = hierfed.centered_clipping(x, center, tau, n_iter=iters)
        want = clipping_literal(x, center, tau, iters)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-5)
    # tau large: one step is the mean; the caller's centre is not modified
    before = center.copy()
    np.testing.assert_allclose(
        hierfed.centered_clipping(x, center, 1e9), x.astype(F64).mean(axis=0), rtol=1e-5
    )
    np.testing.assert_array_equal(center, before)


def test_centered_clipping_bad_center_and_tau(backend, rng):
    x = data(6, 4, F64, rng)
    with pytest.raises(ValueError, match="center has shape"):
        hierfed.centered_clipping(x, np.zeros(5), 1.0)
    with pytest.raises(ValueError, match="center contains a non-finite"):
        hierfed.centered_clipping(x, np.array([0.0, np.nan, 0.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        hierfed.centered_clipping(x, np.zeros(4), 0.0)
    with pytest.raises(ValueError, match="n_iter must be >= 1"):
        hierfed.centered_clipping(x, np.zeros(4), 1.0, n_iter=0)
    models = [[row[:2], row[2:]] for row in x]
    with pytest.raises(TypeError, match="center must be a list of 2 layer arrays"):
        hierfed.centered_clipping(models, np.zeros(4), 1.0)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize(("n", "f"), [(1, 0), (5, 1), (12, 3)])
def test_nnm_matches_the_paper(backend, dtype, n, f, rng):
    x = data(n, 21, dtype, rng)
    got = hierfed.nearest_neighbor_mixing(x, f)
    assert got.shape == x.shape and got.dtype == dtype
    rtol = 1e-6 if dtype == F32 else 1e-12
    np.testing.assert_allclose(got, nnm_literal(x, f), rtol=rtol, atol=rtol)
    as_list = hierfed.nearest_neighbor_mixing(list(x), f)
    assert isinstance(as_list, list)
    np.testing.assert_array_equal(np.stack(as_list), got)


def test_nnm_keeps_each_update_among_its_neighbours(backend, rng):
    x = np.repeat(rng.standard_normal((1, 8)), 4, axis=0)
    x[3] += 1.0
    mixed = hierfed.nearest_neighbor_mixing(x, 3)  # one neighbour: the update itself
    np.testing.assert_array_equal(mixed, x)


def test_aggregate_with_nnm_pre_step(backend, rng):
    x = data(11, 9, F64, rng)
    mixed = hierfed.nearest_neighbor_mixing(x, 2)
    for method, params in [("median", {}), ("krum", {"f": 2}), ("trimmed_mean", {})]:
        got = hierfed.aggregate(x, method, pre="nnm", f=2)
        want = hierfed.aggregate(mixed, method, **params)
        np.testing.assert_array_equal(got.aggregate, want.aggregate)
        assert got.selected == want.selected
    with pytest.raises(TypeError, match="needs f"):
        hierfed.aggregate(x, "median", pre="nnm")
    with pytest.raises(ValueError, match="pre must be None or one of"):
        hierfed.aggregate(x, "median", pre="mix", f=2)
    with pytest.raises(ValueError, match="0 <= f < n"):
        hierfed.nearest_neighbor_mixing(x, 11)
