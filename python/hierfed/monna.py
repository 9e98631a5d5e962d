"""Mean of the nearest neighbours of a trusted vector (MoNNA; Farhadkhani et al. 2023).

The ``n - f`` updates closest to a vector the server trusts (its own update, or the previous
aggregate) are averaged. The distances to it are one pass of the distance-to-point kernel
(:mod:`hierfed.distances`) on the active backend; ties go to the lower index.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _backend
from ._checks import byzantine_count
from ._docstrings import fill_doc
from ._inputs import Aggregate, Updates, as_point, as_updates, as_weights
from ._interop import tensor_io, tensors_via
from ._types import rule_types
from .coordinatewise import mean_of
from .distances import to_point

__all__ = ["monna"]


@tensor_io("updates", "trusted")
def _monna_any(updates: Any, f: int, trusted: Any, weights: Any, *, check_finite: bool) -> Any:
    """:func:`monna` of every input form (torch/JAX included)."""
    return _monna(as_updates(updates), f, trusted, weights, check_finite=check_finite)[0]


@rule_types
@tensors_via(_monna_any)
@fill_doc
def monna(
    updates: Any, f: int, trusted: Any, weights: Any = None, *, check_finite: bool = True
) -> Any:
    """MoNNA: the weighted mean of the ``n - f`` updates nearest (Euclidean) to ``trusted``.

    Parameters
    ----------
    %(updates)s
    %(f)s
    trusted
        The trusted vector, shaped like one update (a list of layers for per-layer models),
        finite. ByzFL's ``MoNNA(f, idx)`` is ``trusted=updates[idx]``.
    weights
        Optional non-negative weight per update, used in the mean; the chosen ones must not
        all be zero.
    %(check_finite)s
    """
    if weights is None:  # a plain (n, d) ndarray in one kernel call; None for anything else
        done = _backend.kernels().monna_matrix(updates, f, trusted, _backend.get_num_threads())
        if done is not None:
            return done
    return _monna_any(updates, f, trusted, weights, check_finite=check_finite)


def _monna(
    upd: Updates, f: Any, trusted: Any, weights: Any, *, check_finite: bool
) -> tuple[Aggregate, tuple[int, ...]]:
    f = byzantine_count(f, upd.n, "monna")
    w = as_weights(weights, upd.n)
    point = as_point(trusted, upd, "trusted")
    dist = to_point(upd, point)
    order = np.argsort(dist, kind="stable")  # ties to the lower index; NaN, inf last
    if not math.isfinite(dist[order[-1]]):
        if any(not np.isfinite(rows[i]).all() for rows in upd.segments for i in range(upd.n)):
            if check_finite:
                raise upd.nonfinite_error()
        else:
            raise ValueError("updates: distances to trusted overflow float64 (values near 1e154)")
    chosen = tuple(np.sort(order[: upd.n - f]).tolist())
    return mean_of(upd, chosen, w), chosen
