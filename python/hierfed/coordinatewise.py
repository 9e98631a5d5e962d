"""Coordinate-wise robust rules: mean, trimmed mean, median.

Each function validates its inputs, runs the active backend's kernel with the GIL released
(compiled core) and returns an array shaped like one update, in the input's dtype, or a list
of per-layer arrays for per-layer (Flower NDArrays) input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _backend
from ._docstrings import fill_doc
from ._inputs import Aggregate, FloatArray, Updates, as_updates, as_weights
from ._interop import tensor_io, tensors_via
from ._types import rule_types

__all__ = [
    "mean",
    "mean_of",
    "median",
    "raise_if_zero_weight",
    "run_flat",
    "run_kernel",
    "trimmed_mean",
]


def run_flat(name: str, upd: Updates, check_finite: bool, *args: Any) -> list[FloatArray]:
    """Run coordinate-wise kernel ``name`` of the active backend on ``upd``: flat outputs.

    Raises ValueError naming the first non-finite update (``check_finite``), or when a
    float64 result overflows.
    """
    outs = upd.new_outputs()
    kernel = getattr(_backend.kernels(), name)
    saw_nonfinite = kernel(upd.segments, outs, *args, _backend.get_num_threads())
    if saw_nonfinite and check_finite:
        raise upd.nonfinite_error()
    if not saw_nonfinite and upd.dtype == np.float64 and _overflowed(outs, args):
        # float32 input cannot overflow the float64 sums; float64 near its maximum can.
        raise ValueError(
            f"updates: the {name.replace('_', ' ')} overflows float64 "
            "(values near 1.8e308); rescale the updates"
        )
    return outs


def _overflowed(outs: list[FloatArray], args: tuple[Any, ...]) -> bool:
    """Whether finite input gave a non-finite float64 result: an overflowing sum.

    Sums that overflow both ways (partial sums of +inf and -inf, e.g. in separate SIMD lanes
    or summation blocks) give NaN, not inf. A NaN is also the documented result of a
    coordinate whose kept weights are all zero (0/0), which only zero weights can cause: the
    caller reports that one (:func:`raise_if_zero_weight`).
    """
    if any(np.isinf(o).any() for o in outs):
        return True
    zero_weight = any(isinstance(a, np.ndarray) and not a.all() for a in args)
    return not zero_weight and any(np.isnan(o).any() for o in outs)


def run_kernel(name: str, upd: Updates, check_finite: bool, *args: Any) -> Aggregate:
    """:func:`run_flat`, its result shaped like one input update."""
    return upd.wrap(run_flat(name, upd, check_finite, *args))


@tensor_io("updates")
def _mean_any(updates: Any, weights: Any, *, check_finite: bool) -> Any:
    """:func:`mean` of every input form (torch/JAX included)."""
    return _mean(as_updates(updates), weights, check_finite=check_finite)


@rule_types
@tensors_via(_mean_any)
@fill_doc
def mean(updates: Any, weights: Any = None, *, check_finite: bool = True) -> Any:
    """Weighted coordinate-wise mean ``sum(w_i x_i) / sum(w_i)``, accumulated in float64.

    Parameters
    ----------
    %(updates)s
    %(weights)s
    check_finite
        Raise ValueError naming the first update that holds NaN or infinity (fused into the
        kernel's single pass). ``False`` skips the check; results are then undefined for such
        input.
    """
    # A plain (n, d) ndarray with plain weights in one kernel call; None for anything else.
    done = _backend.kernels().mean_matrix(updates, weights, _backend.get_num_threads())
    if done is not None:
        return done
    return _mean_any(updates, weights, check_finite=check_finite)


def _mean(upd: Updates, weights: Any, *, check_finite: bool) -> Aggregate:
    return run_kernel("mean", upd, check_finite, as_weights(weights, upd.n))


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


@tensor_io("updates")
def _trimmed_mean_any(
    updates: Any, trim_ratio: Any, weights: Any, *, n_trim: Any, check_finite: bool
) -> Any:
    """:func:`trimmed_mean` of every input form (torch/JAX included)."""
    return _trimmed_mean(
        as_updates(updates), trim_ratio, weights, n_trim=n_trim, check_finite=check_finite
    )


@rule_types
@tensors_via(_trimmed_mean_any)
@fill_doc
def trimmed_mean(
    updates: Any,
    trim_ratio: float | None = None,
    weights: Any = None,
    *,
    n_trim: int | None = None,
    check_finite: bool = True,
) -> Any:
    """Coordinate-wise trimmed mean.

    Per coordinate, drops the ``k`` smallest and ``k`` largest values (by count) and takes the
    weighted mean of the other ``n - 2k``; unweighted it equals
    ``scipy.stats.trim_mean(X, trim_ratio, axis=0)``.

    Parameters
    ----------
    %(updates)s
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
    if type(updates) is np.ndarray and updates.ndim == 2 and updates.size:  # as mean
        k = _n_trim(updates.shape[0], trim_ratio, n_trim)
        done = _backend.kernels().trimmed_mean_matrix(
            updates, k, weights, _backend.get_num_threads()
        )
        if done is not None:
            return done
    return _trimmed_mean_any(updates, trim_ratio, weights, n_trim=n_trim, check_finite=check_finite)


def _trimmed_mean(
    upd: Updates, trim_ratio: float | None, weights: Any, *, n_trim: int | None, check_finite: bool
) -> Aggregate:
    k = _n_trim(upd.n, trim_ratio, n_trim)
    w = as_weights(weights, upd.n)
    result = run_kernel("trimmed_mean", upd, check_finite, k, w)
    raise_if_zero_weight(result, w, "every value kept after trimming has weight zero")
    return result


def raise_if_zero_weight(result: Aggregate, weights: Any, what: str) -> None:
    """Raise when some coordinate of a weighted rule kept only zero weights (a NaN, 0/0)."""
    if weights is not None and not weights.all():
        parts = result if isinstance(result, list) else [result]
        if any(np.isnan(p).any() for p in parts):
            raise ValueError(f"weights: in some coordinate {what}")


def subset_weights(weights: NDArray[np.float64], indices: Sequence[int]) -> NDArray[np.float64]:
    """The validated weights of the updates at ``indices``; not all of them may be zero."""
    sub = weights[list(indices)]
    if not sub.any():
        raise ValueError(f"weights: the chosen updates {tuple(indices)} all have weight zero")
    return sub


def mean_of(upd: Updates, indices: Sequence[int], weights: Any) -> Aggregate:
    """Weighted mean of the updates at ``indices`` (validated ``weights`` of all ``n``)."""
    sub = None if weights is None else subset_weights(weights, indices)
    return _mean(upd.take(indices), sub, check_finite=True)


@tensor_io("updates")
def _median_any(updates: Any, weights: Any, *, check_finite: bool) -> Any:
    """:func:`median` of every input form (torch/JAX included)."""
    return _median(as_updates(updates), weights, check_finite=check_finite)


@rule_types
@tensors_via(_median_any)
@fill_doc
def median(updates: Any, weights: Any = None, *, check_finite: bool = True) -> Any:
    """Coordinate-wise (weighted) median.

    Unweighted it equals ``np.median(X, axis=0)``. Weighted: the smallest value whose
    cumulative weight reaches half the total, averaged with the next value (of positive
    weight) where it reaches exactly half.

    Parameters
    ----------
    %(updates)s
    %(weights)s
    check_finite
        As in :func:`mean`.
    """
    done = _backend.kernels().median_matrix(updates, weights, _backend.get_num_threads())
    if done is not None:  # a plain (n, d) ndarray in one kernel call, as mean
        return done
    return _median_any(updates, weights, check_finite=check_finite)


def _median(upd: Updates, weights: Any, *, check_finite: bool) -> Aggregate:
    return run_kernel("median", upd, check_finite, as_weights(weights, upd.n))
