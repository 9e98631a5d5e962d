"""Robust aggregation API: coordinate-wise rules over every input form of ``_inputs``.

Each function validates its inputs, runs the active backend's kernel with the GIL released
(compiled core) and returns an array shaped like one update, in the input's dtype, or a list
of per-layer arrays for per-layer (Flower NDArrays) input.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from . import _backend
from ._inputs import Aggregate, Updates, as_updates, as_weights

__all__ = [
    "AggregationMethod",
    "AggregationResult",
    "aggregate",
    "mean",
    "median",
    "trimmed_mean",
]


class AggregationMethod(str, Enum):
    """The aggregation rules :func:`aggregate` knows."""

    MEAN = "mean"
    TRIMMED_MEAN = "trimmed_mean"
    MEDIAN = "median"


@dataclass(frozen=True)
class AggregationResult:
    """What :func:`aggregate` returns.

    Attributes
    ----------
    aggregate
        The aggregate, shaped like one update (a list of layers for per-layer input).
    method
        The rule used.
    n_inputs
        Number of updates aggregated.
    selected
        Indices of the updates chosen as a whole (selection rules such as Krum), or ``None``
        for coordinate-wise rules, where every update may contribute to some coordinates.
    outliers_removed
        Indices of the updates a selection rule rejected as a whole; empty for
        coordinate-wise rules.
    """

    aggregate: Aggregate
    method: AggregationMethod
    n_inputs: int
    selected: tuple[int, ...] | None = None
    outliers_removed: tuple[int, ...] = field(default_factory=tuple)


def _run(name: str, upd: Updates, check_finite: bool, *args: Any) -> Aggregate:
    """Run kernel ``name`` of the active backend on ``upd`` and shape its result."""
    outs = upd.new_outputs()
    kernel = getattr(_backend.kernels(), name)
    saw_nonfinite = kernel(upd.segments, outs, *args, _backend.get_num_threads())
    if saw_nonfinite and check_finite:
        raise upd.nonfinite_error()
    if not saw_nonfinite and upd.dtype == np.float64 and any(np.isinf(o).any() for o in outs):
        # float32 input cannot overflow the float64 sums; float64 near its maximum can.
        raise ValueError(
            f"updates: the {name.replace('_', ' ')} overflows float64 "
            "(values near 1.8e308); rescale the updates"
        )
    return upd.wrap(outs)


def mean(updates: Any, weights: Any = None, *, check_finite: bool = True) -> Aggregate:
    """Weighted coordinate-wise mean ``sum(w_i x_i) / sum(w_i)``, accumulated in float64.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.
    weights
        Optional non-negative weight per update (not all zero).
    check_finite
        Raise ValueError naming the first update that holds NaN or infinity (fused into the
        kernel's single pass). ``False`` skips the check; results are then undefined for such
        input.
    """
    return _mean(as_updates(updates), weights, check_finite=check_finite)


def _mean(upd: Updates, weights: Any = None, *, check_finite: bool = True) -> Aggregate:
    return _run("mean", upd, check_finite, as_weights(weights, upd.n))


def _n_trim(n: int, trim_ratio: Any, n_trim: Any) -> int:
    """Number of values trimmed at each end, from ``trim_ratio`` or ``n_trim``."""
    if n_trim is not None:
        if trim_ratio is not None:
            raise ValueError("pass trim_ratio or n_trim, not both")
        if isinstance(n_trim, bool) or not isinstance(n_trim, (int, np.integer)):
            raise TypeError(f"n_trim must be an int, got {type(n_trim).__name__}")
        if n_trim < 0 or 2 * n_trim >= n:
            raise ValueError(f"n_trim must satisfy 0 <= 2*n_trim < n (n={n}), got {n_trim}")
        return int(n_trim)
    ratio = 0.1 if trim_ratio is None else trim_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)):
        raise TypeError(f"trim_ratio must be a real number, got {type(ratio).__name__}")
    if not (math.isfinite(ratio) and 0 <= ratio < 0.5):
        raise ValueError(f"trim_ratio must be in [0, 0.5), got {ratio}")
    return int(ratio * n)  # as scipy.stats.trim_mean: floor(trim_ratio * n)


def trimmed_mean(
    updates: Any,
    trim_ratio: float | None = None,
    weights: Any = None,
    *,
    n_trim: int | None = None,
    check_finite: bool = True,
) -> Aggregate:
    """Coordinate-wise trimmed mean.

    Per coordinate, drops the ``k`` smallest and ``k`` largest values (by count) and takes the
    weighted mean of the other ``n - 2k``; unweighted it equals
    ``scipy.stats.trim_mean(X, trim_ratio, axis=0)``.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.
    trim_ratio
        Fraction cut at each end, ``k = floor(trim_ratio * n)``, in ``[0, 0.5)``; default 0.1.
    weights
        Optional non-negative weight per update. Among equal values the update with the lower
        index counts as the smaller. A coordinate whose kept values all have weight zero
        raises ValueError.
    n_trim
        ``k`` given directly instead of ``trim_ratio``; requires ``2k < n``.
    check_finite
        As in :func:`mean`.
    """
    return _trimmed_mean(
        as_updates(updates), trim_ratio, weights, n_trim=n_trim, check_finite=check_finite
    )


def _trimmed_mean(
    upd: Updates,
    trim_ratio: float | None = None,
    weights: Any = None,
    *,
    n_trim: int | None = None,
    check_finite: bool = True,
) -> Aggregate:
    k = _n_trim(upd.n, trim_ratio, n_trim)
    w = as_weights(weights, upd.n)
    result = _run("trimmed_mean", upd, check_finite, k, w)
    if w is not None and not w.all():
        parts = result if isinstance(result, list) else [result]
        if any(np.isnan(p).any() for p in parts):
            raise ValueError(
                "weights: in some coordinate every value kept after trimming has weight zero"
            )
    return result


def median(updates: Any, weights: Any = None, *, check_finite: bool = True) -> Aggregate:
    """Coordinate-wise (weighted) median.

    Unweighted it equals ``np.median(X, axis=0)``. Weighted: the smallest value whose
    cumulative weight reaches half the total, averaged with the next value (of positive
    weight) where it reaches exactly half.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.
    weights
        Optional non-negative weight per update (not all zero).
    check_finite
        As in :func:`mean`.
    """
    return _median(as_updates(updates), weights, check_finite=check_finite)


def _median(upd: Updates, weights: Any = None, *, check_finite: bool = True) -> Aggregate:
    return _run("median", upd, check_finite, as_weights(weights, upd.n))


# Each rule: its public function (whose signature checks the parameters) and its body on
# already validated updates.
_RULES: dict[AggregationMethod, tuple[Callable[..., Aggregate], Callable[..., Aggregate]]] = {
    AggregationMethod.MEAN: (mean, _mean),
    AggregationMethod.TRIMMED_MEAN: (trimmed_mean, _trimmed_mean),
    AggregationMethod.MEDIAN: (median, _median),
}


def aggregate(
    updates: Any, method: AggregationMethod | str = AggregationMethod.MEAN, **params: Any
) -> AggregationResult:
    """Aggregate ``updates`` with ``method``; ``params`` go to that rule's function.

    Raises
    ------
    ValueError
        An unknown method, or a parameter the rule rejects.
    TypeError
        A parameter the rule does not take.
    """
    try:
        rule = AggregationMethod(method)
    except ValueError:
        known = ", ".join(m.value for m in AggregationMethod)
        raise ValueError(f"method must be one of {known}; got {method!r}") from None
    public, internal = _RULES[rule]
    try:
        inspect.signature(public).bind(updates, **params)
    except TypeError as exc:
        raise TypeError(f"aggregate(method={rule.value!r}): {exc}") from None
    upd = as_updates(updates)
    return AggregationResult(internal(upd, **params), rule, upd.n)
