"""Nearest-neighbour mixing (NNM, Allouah et al. 2023): a pre-step for any robust rule.

Each update is replaced by the mean of its ``n - f`` nearest updates (itself included), which
shrinks the spread of the honest updates relative to the Byzantine ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _backend
from ._docstrings import fill_doc
from ._inputs import FloatArray, Updates, as_updates
from ._interop import tensor_io
from .distances import pairwise

__all__ = ["nearest_neighbor_mixing"]


def neighbours(dist: NDArray[np.float64], f: int) -> list[tuple[int, ...]]:
    """For each update, the indices (ascending) of its ``n - f`` nearest, itself first.

    Ties of distance go to the lower index; an update is always its own neighbour, even when
    a duplicate of it has a lower index.
    """
    n = dist.shape[0]
    result = []
    for i in range(n):
        row = dist[i].copy()
        row[i] = -1.0
        result.append(tuple(sorted(int(j) for j in np.argsort(row, kind="stable")[: n - f])))
    return result


def _mixed_segments(upd: Updates, f: Any, check_finite: bool) -> list[FloatArray]:
    """Per segment, the ``(n, len)`` mixed updates.

    One pass of the mixing kernel: a block of every update is read once and all ``n`` means
    are formed from it (rows summed in index order, float64).
    """
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
        raise TypeError(f"f must be an int, got {type(f).__name__}")
    if not 0 <= f < upd.n:
        raise ValueError(f"f must satisfy 0 <= f < n (n={upd.n}) for NNM, got {f}")
    weights = np.zeros((upd.n, upd.n))
    for i, near in enumerate(neighbours(pairwise(upd, check_finite), int(f))):
        weights[i, list(near)] = 1.0
    return mixed_rows(upd, weights, check_finite)


def mixed_rows(
    upd: Updates, weights: NDArray[np.float64], check_finite: bool = True
) -> list[FloatArray]:
    """Per segment, the ``(m, len)`` weighted means of the rows of ``upd`` given by the
    ``(m, n)`` ``weights`` (non-negative, each row with a positive sum): one kernel pass."""
    outs = [np.empty((weights.shape[0], rows[0].size), upd.dtype) for rows in upd.segments]
    kernel = _backend.kernels().mix_rows
    if kernel(upd.segments, weights, outs, _backend.get_num_threads()) and check_finite:
        raise upd.nonfinite_error()
    return outs


def as_rows(upd: Updates, outs: list[FloatArray], m: int) -> Updates:
    """The ``m`` rows of kernel outputs ``outs`` (one ``(m, len)`` array per segment) as
    updates of ``upd``'s form."""
    return Updates([list(out) for out in outs], upd.shapes, upd.kind, m, upd.dtype)


def mix(upd: Updates, f: Any, check_finite: bool = True) -> Updates:
    """The mixed updates as validated updates of the same form (rows of the kernel's output)."""
    return as_rows(upd, _mixed_segments(upd, f, check_finite), upd.n)


@tensor_io("updates")
@fill_doc
def nearest_neighbor_mixing(updates: Any, f: int, *, check_finite: bool = True) -> Any:
    """Replace each update by the mean of its ``n - f`` nearest updates, itself included.

    Parameters
    ----------
    %(updates)s
    %(f)s
    %(check_finite)s

    Returns
    -------
    The mixed updates in the input's form: an ``(n, ...)`` array, a list of arrays, or a list
    of per-layer models.
    """
    upd = as_updates(updates)
    outs = _mixed_segments(upd, f, check_finite)
    if upd.kind == "array":  # the kernel's (n, d) output, shaped like the input
        return outs[0].reshape((upd.n, *upd.shapes[0]))
    return [upd.wrap([out[i] for out in outs]) for i in range(upd.n)]
