"""L2 sensitivity of each aggregation rule over updates clipped to a norm.

Noise added to an aggregate is calibrated to the most that aggregate can move when one
update changes: here the *replace-one* relation (the same ``n`` updates, one of them replaced
by any other) with every update clipped to L2 norm at most ``C``. The bounds, per rule:

- mean: ``2C max(w) / sum(w)`` (unweighted ``2C/n``).
- trimmed mean, unweighted, ``k`` trimmed per side: ``2C/(n - 2k)``. Sorting is 1-Lipschitz
  (in l1) in each value, so per coordinate the sum of the kept middle values moves by at most
  the changed value's move, and the trimmed mean by that over ``n - 2k``.
- median, unweighted: ``2C`` (each order statistic, and the mean of two, is 1-Lipschitz).
- Krum, Multi-Krum, geometric median, MDA, MoNNA: ``2C``: the output is a convex combination
  of the updates, so its norm is at most ``C``.
- centered clipping: ``2 max(C, |center|)``: each iteration moves to a convex combination of
  the current point and the updates.
- Bulyan, unweighted: ``2C sqrt(theta / beta)``: per coordinate the output is a mean of
  ``beta`` values of the ``theta = n - 2f`` selected updates, so by Jensen its squared norm is
  at most ``sum_selected |x_i|^2 / beta``.
- Meamed, unweighted: ``2C sqrt(n / (n - f))``: per coordinate a mean of ``n - f`` of the
  ``n`` values (Jensen, as for Bulyan).
- weighted trimmed mean: ``2C sqrt(sum(w) / W)``, ``W`` the sum of the ``n - 2k`` smallest
  weights (Jensen, as for Bulyan).
- anything else (weighted median, weighted Bulyan or Meamed, any rule after a pre-step:
  nearest-neighbour mixing spreads one update into all, bucketing and clipping keep every
  input within the bound): ``2C sqrt(n)``: per coordinate the output lies between
  the updates' smallest and largest values, so its squared norm is at most
  ``sum_i |x_i|^2 <= n C^2``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .aggregator import AggregationMethod
from .coordinatewise import _n_trim

__all__ = ["aggregate_sensitivity"]


def _box(clip_norm: float, n: int) -> float:
    return 2.0 * clip_norm * math.sqrt(n)


def aggregate_sensitivity(
    method: AggregationMethod | str,
    n: int,
    clip_norm: float,
    *,
    weights: Any = None,
    pre: Any = None,
    center_norm: float = 0.0,
    **params: Any,
) -> float:
    """The replace-one L2 sensitivity of ``aggregate(u, method, pre, **params)``.

    Parameters
    ----------
    method
        The rule, as for :func:`hierfed.aggregate`.
    n
        Number of updates.
    clip_norm
        The L2 norm every update is clipped to (``C``).
    weights
        The rule's weights, if any (they are public: not part of the neighbouring relation).
    pre
        The pre-aggregation steps (:mod:`hierfed.preaggregation`), if any.
    center_norm
        For centered clipping: the norm of its starting point (or pass ``center``).
    **params
        The rule's parameters (``trim_ratio``/``n_trim``, ``f``, ``center``; others are
        ignored).
    """
    rule = AggregationMethod(method)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    c = float(clip_norm)
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"clip_norm must be finite and > 0, got {clip_norm}")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and w.size and np.all(w == w.flat[0]) and w.flat[0] > 0:
        w = None  # equal weights give the unweighted rule
    if pre:
        return _box(c, n)
    if rule is AggregationMethod.MEAN:
        return 2.0 * c / n if w is None else 2.0 * c * float(w.max() / w.sum())
    if rule is AggregationMethod.TRIMMED_MEAN:
        k = _n_trim(n, params.get("trim_ratio"), params.get("n_trim"))
        if w is None:
            return 2.0 * c / (n - 2 * k)
        kept = float(np.sort(w)[: n - 2 * k].sum())
        return _box(c, n) if kept <= 0 else 2.0 * c * math.sqrt(float(w.sum()) / kept)
    if rule is AggregationMethod.MEDIAN:
        return 2.0 * c if w is None else _box(c, n)
    if rule in (
        AggregationMethod.KRUM,
        AggregationMethod.MULTI_KRUM,
        AggregationMethod.GEOMETRIC_MEDIAN,
        AggregationMethod.MDA,
        AggregationMethod.MONNA,
    ):
        return 2.0 * c
    if rule is AggregationMethod.MEAMED and w is None:
        return 2.0 * c * math.sqrt(n / (n - int(params["f"])))
    if rule is AggregationMethod.CENTERED_CLIPPING:
        if params.get("center") is not None:
            center = np.asarray(params["center"], dtype=np.float64)
            center_norm = max(float(center_norm), float(np.linalg.norm(center)))
        # Outputs lie in the ball holding the center and the updates; and each iteration
        # v -> v + mean_i clip_tau(x_i - v) is 1-Lipschitz in v and moves by at most
        # 2 tau / n when one update is replaced: n_iter * 2 tau / n, whatever the center.
        hull = 2.0 * max(c, float(center_norm))
        tau, n_iter = params.get("tau"), params.get("n_iter", 1)
        if tau is None:
            return hull
        return min(hull, 2.0 * float(tau) * int(n_iter) / n)
    if rule is AggregationMethod.BULYAN and w is None:
        f = int(params["f"])
        theta = n - 2 * f
        return 2.0 * c * math.sqrt(theta / (theta - 2 * f))
    return _box(c, n)
