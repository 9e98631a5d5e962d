"""Nearest-neighbour mixing (NNM, Allouah et al. 2023): a pre-step for any robust rule.

Each update is replaced by the mean of its ``n - f`` nearest updates (itself included), which
shrinks the spread of the honest updates relative to the Byzantine ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._inputs import FloatArray, Updates, as_updates
from .coordinatewise import run_flat
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


def mix(upd: Updates, f: Any, check_finite: bool = True) -> list[list[FloatArray]]:
    """The mixed updates, as flat kernel outputs per update."""
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
        raise TypeError(f"f must be an int, got {type(f).__name__}")
    if not 0 <= f < upd.n:
        raise ValueError(f"f must satisfy 0 <= f < n (n={upd.n}) for NNM, got {f}")
    dist = pairwise(upd, check_finite)
    return [run_flat("mean", upd.take(nb), False, None) for nb in neighbours(dist, int(f))]


def nearest_neighbor_mixing(updates: Any, f: int, *, check_finite: bool = True) -> Any:
    """Replace each update by the mean of its ``n - f`` nearest updates, itself included.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.
    f
        Number of Byzantine updates tolerated, ``0 <= f < n``.
    check_finite
        Raise ValueError naming the first update that holds NaN or infinity.

    Returns
    -------
    The mixed updates in the input's form: an ``(n, ...)`` array, a list of arrays, or a list
    of per-layer models.
    """
    upd = as_updates(updates)
    mixed = [upd.wrap(flat) for flat in mix(upd, f, check_finite)]
    if upd.kind == "array":
        return np.stack(mixed)
    return mixed
