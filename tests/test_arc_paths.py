"""ARC and static clipping after one validation: every input form, the same bits as clipping the
``k`` largest with :func:`hierfed.clip_by_l2_norm` (the definition before the single path)."""

from __future__ import annotations

import numpy as np
import pytest

import hierfed
from hierfed.preaggregation import arc_count


def arc_by_clip(x: np.ndarray, f: int) -> np.ndarray:
    """The k largest (ties to the lower index) clipped by clip_by_l2_norm, the rest copied."""
    norms = hierfed.l2_norms(x)
    order = np.argsort(-norms, kind="stable")
    k = arc_count(len(x), f)
    out = x.copy()
    if k:
        out[order[:k]] = hierfed.clip_by_l2_norm(x[order[:k]], float(norms[order[k]]))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_arc_is_clip_of_the_largest_in_every_form(backend, rng, dtype):
    for n, d, f in [(10, 1000, 2), (7, 3, 3), (40, 70, 9), (2, 5, 0)]:
        x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 10.0, (n, 1))).astype(dtype)
        x[1] = x[0]  # a tie of norm
        kept = x.copy()
        got = hierfed.adaptive_robust_clipping(x, f)
        np.testing.assert_array_equal(x, kept)  # the input is never written
        assert got is not x and got.dtype == dtype
        np.testing.assert_array_equal(got, arc_by_clip(x, f))
        listed = hierfed.adaptive_robust_clipping(list(x), f)
        np.testing.assert_array_equal(np.array(listed), got)
        cut = min(2, d - 1)
        models = [[r[:cut].reshape(cut, 1), r[cut:]] for r in x]
        clipped = hierfed.adaptive_robust_clipping(models, f)
        flat = np.array([np.concatenate([m[0].ravel(), m[1]]) for m in clipped])
        tol = 1e-6 if dtype == np.float32 else 1e-13  # per-layer sums: another order
        np.testing.assert_allclose(flat, got, rtol=tol, atol=tol)
        steps = hierfed.aggregate(x, "mean", pre="arc", f=f).aggregate
        np.testing.assert_array_equal(steps, hierfed.aggregate(got, "mean").aggregate)


def test_arc_zero_threshold_and_non_finite(backend):
    x = np.zeros((5, 4))
    x[0] = 3.0  # k = 1 at f = 1, the next largest norm is 0: the largest becomes 0
    np.testing.assert_array_equal(hierfed.adaptive_robust_clipping(x, 1), np.zeros((5, 4)))
    y = np.ones((5, 4))
    y[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"updates\[2\] contains a non-finite"):
        hierfed.adaptive_robust_clipping(y, 1)
    out = hierfed.adaptive_robust_clipping(y, 1, check_finite=False)
    assert np.isnan(out[2]).any() and np.isfinite(np.delete(out, 2, axis=0)).all()


def test_clip_step_matches_clip_by_l2_norm(backend, rng):
    x = rng.standard_normal((9, 33)) * 4.0
    x[3] *= 1e-160  # a sum of squares the kernel leaves to the careful path
    want = hierfed.clip_by_l2_norm(x, 2.0)
    got = hierfed.aggregate(x, "mean", pre="clip", clip_norm=2.0).aggregate
    np.testing.assert_array_equal(got, hierfed.aggregate(want, "mean").aggregate)
    assert (np.linalg.norm(want, axis=1) <= 2.0).all()
