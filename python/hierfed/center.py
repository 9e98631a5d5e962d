"""Iterative robust centres: the geometric median (smoothed Weiszfeld) and centered clipping.

Each iteration is one pass of the distance-to-point kernel and one of the weighted-mean
kernel over the updates, both on the active backend with the GIL released.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._docstrings import fill_doc
from ._inputs import Aggregate, FloatArray, Updates, as_point, as_updates, as_weights
from ._interop import tensor_io
from ._types import rule_types
from .coordinatewise import run_flat
from .distances import to_point

__all__ = ["centered_clipping", "geometric_median"]


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")
    return float(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


@rule_types
@tensor_io("updates")
@fill_doc
def geometric_median(
    updates: Any,
    weights: Any = None,
    eps: float = 1e-8,
    max_iter: int = 100,
    tol: float = 1e-6,
    *,
    check_finite: bool = True,
) -> Any:
    """Weighted geometric median by the smoothed Weiszfeld algorithm (RFA, Pillutla et al.).

    Minimises ``sum_i w_i |x_i - z|`` (Euclidean norm over the whole update). From the
    weighted mean, each step sets ``z = sum_i b_i x_i / sum_i b_i`` with
    ``b_i = w_i / max(eps, |x_i - z|)``; it stops when the objective changes by at most
    ``tol`` times its value, or after ``max_iter`` steps.

    Parameters
    ----------
    %(updates)s
    %(weights)s
    eps
        Smoothing: distances below it count as ``eps`` (no division by zero at a data point).
    max_iter, tol
        Iteration limit and relative tolerance on the objective.
    %(check_finite)s
    """
    return _geometric_median(
        as_updates(updates), weights, eps, max_iter, tol, check_finite=check_finite
    )


def _geometric_median(
    upd: Updates, weights: Any, eps: float, max_iter: int, tol: float, *, check_finite: bool
) -> Aggregate:
    eps = _positive(eps, "eps")
    tol = _positive(tol, "tol")
    max_iter = _count(max_iter, "max_iter")
    w = as_weights(weights, upd.n)
    w_all = np.ones(upd.n) if w is None else w
    z = run_flat("mean", upd, check_finite, w)
    dist = np.sqrt(to_point(upd, z))
    objective = float(w_all @ dist)
    for _ in range(max_iter):
        z = run_flat("mean", upd, False, as_weights(w_all / np.maximum(dist, eps), upd.n))
        dist = np.sqrt(to_point(upd, z))
        previous, objective = objective, float(w_all @ dist)
        if abs(previous - objective) <= tol * objective:
            break
    return upd.wrap(z)


@rule_types
@tensor_io("updates", "center")
@fill_doc
def centered_clipping(
    updates: Any, center: Any, tau: float, n_iter: int = 1, *, check_finite: bool = True
) -> Any:
    """Centered clipping (Karimireddy, He & Jaggi 2021), stateless.

    ``n_iter`` times: ``v <- v + (1/n) sum_i (x_i - v) min(1, tau / |x_i - v|)``, from the
    ``center`` the caller passes (typically the previous round's aggregate or momentum).

    Parameters
    ----------
    %(updates)s
    center
        The starting point, shaped like one update (a list of layers for per-layer models).
    tau
        Clipping radius, > 0.
    n_iter
        Number of clipping iterations, >= 1.
    %(check_finite)s
    """
    upd = as_updates(updates)
    return _centered_clipping(upd, center, tau, n_iter, check_finite=check_finite)


def _centered_clipping(
    upd: Updates, center: Any, tau: float, n_iter: int, *, check_finite: bool
) -> Aggregate:
    tau = _positive(tau, "tau")
    n_iter = _count(n_iter, "n_iter")
    v: list[FloatArray] = as_point(center, upd, "center")
    for it in range(n_iter):
        dist = np.sqrt(to_point(upd, v))
        clip = np.minimum(1.0, tau / np.maximum(dist, np.finfo(np.float64).tiny))
        m = run_flat("mean", upd, check_finite and it == 0, as_weights(clip, upd.n))
        share = clip.sum() / upd.n  # v + share * (weighted mean - v)
        v = [
            (vs + share * (ms.astype(np.float64) - vs)).astype(upd.dtype)
            for vs, ms in zip(v, m, strict=True)
        ]
    return upd.wrap(v)
