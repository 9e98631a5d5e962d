"""Distance-based selection rules: Krum, Multi-Krum and Bulyan.

The squared distances are computed once (:mod:`hierfed.distances`, exact and the same bits
on every backend) and reused: Bulyan's rounds of Krum only read sub-matrices. Ties go to the
lower index throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._docstrings import fill_doc
from ._inputs import Aggregate, Updates, as_updates, as_weights
from ._interop import tensor_io
from ._krum_rounds import bulyan_selection
from ._types import rule_types
from .coordinatewise import mean_of, raise_if_zero_weight, run_kernel, subset_weights
from .distances import pairwise

__all__ = ["bulyan", "krum", "krum_select", "multi_krum"]

Selection = tuple[Aggregate, tuple[int, ...]]


KRUM_PER_F = 2  # Krum and Multi-Krum need n >= 2f + 3
BULYAN_PER_F = 4  # Bulyan needs n >= 4f + 3
_SCORE_ROWS = 64  # rows of the distance matrix scored at a time


def min_updates(per_f: int, f: int) -> int:
    """The fewest updates a rule needing ``n >= per_f*f + 3`` accepts for ``f``."""
    return per_f * f + 3


def check_f(f: Any, n: int, per_f: int, rule: str) -> int:
    """Validate the number ``f`` of Byzantine updates: an int >= 0 with ``n >= per_f*f + 3``."""
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)):
        raise TypeError(f"f must be an int, got {type(f).__name__}")
    if f < 0:
        raise ValueError(f"f must be >= 0, got {f}")
    need = min_updates(per_f, int(f))
    if n < need:
        raise ValueError(f"{rule} needs n >= {per_f}f + 3 = {need} updates for f={f}; got n={n}")
    return int(f)


def krum_scores(dist: NDArray[np.float64], n_neighbours: int) -> NDArray[np.float64]:
    """Each row's sum of its ``n_neighbours`` smallest squared distances to the others.

    The smallest values of each row summed in ascending order (numpy's pairwise sum of the
    sorted row's head), taken a block of rows at a time: partitioned, then only the head
    sorted, so the extra memory is one block, not a copy of the matrix.
    """
    n = dist.shape[0]
    scores = np.empty(n)
    for start in range(0, n, _SCORE_ROWS):
        block = dist[start : start + _SCORE_ROWS].copy()
        rows = np.arange(len(block))
        block[rows, start + rows] = np.inf
        if n_neighbours < n:
            block.partition(n_neighbours - 1, axis=1)
        head = block[:, :n_neighbours]
        head.sort(axis=1)
        scores[start : start + len(block)] = head.sum(axis=1)
    return scores


def _krum_select(upd: Updates, f: Any, check_finite: bool) -> tuple[int, NDArray[np.float64]]:
    f = check_f(f, upd.n, KRUM_PER_F, "krum")
    scores = krum_scores(pairwise(upd, check_finite), upd.n - f - 2)
    return int(np.argmin(scores)), scores


@tensor_io("updates")
@fill_doc
def krum_select(
    updates: Any, f: int, *, check_finite: bool = True
) -> tuple[int, NDArray[np.float64]]:
    """Krum's choice (Blanchard et al. 2017) and every update's score.

    ``score_i`` is the sum of the ``n - f - 2`` smallest squared distances from update ``i``
    to the others; the chosen update has the lowest score (ties to the lower index).

    Parameters
    ----------
    %(updates)s
    f
        Number of Byzantine updates tolerated; requires ``n >= 2f + 3``.
    %(check_finite)s

    Returns
    -------
    (index, scores)
        The chosen index and the ``(n,)`` float64 scores.
    """
    return _krum_select(as_updates(updates), f, check_finite)


@rule_types
@tensor_io("updates")
def krum(updates: Any, f: int, *, check_finite: bool = True) -> Any:
    """The update Krum chooses (a copy), shaped like one input update; see :func:`krum_select`."""
    return _krum(as_updates(updates), f, check_finite=check_finite)[0]


def _krum(upd: Updates, f: Any, *, check_finite: bool) -> Selection:
    index, _ = _krum_select(upd, f, check_finite)
    return upd.copy_of(index), (index,)


@rule_types
@tensor_io("updates")
@fill_doc
def multi_krum(
    updates: Any,
    f: int,
    m: int | None = None,
    weights: Any = None,
    *,
    check_finite: bool = True,
) -> Any:
    """Multi-Krum: the weighted mean of the ``m`` updates with the lowest Krum scores.

    Scores are computed once on all ``n`` updates (as :func:`krum_select`); ties go to the
    lower index.

    Parameters
    ----------
    %(updates)s
    f
        Number of Byzantine updates tolerated; requires ``n >= 2f + 3``.
    m
        Number of updates averaged, ``1 <= m <= n``; default ``n - f``.
    weights
        Optional non-negative weight per update; the chosen ones must not all be zero.
    %(check_finite)s
    """
    return _multi_krum(as_updates(updates), f, m, weights, check_finite=check_finite)[0]


def _multi_krum(upd: Updates, f: Any, m: Any, weights: Any, *, check_finite: bool) -> Selection:
    f = check_f(f, upd.n, KRUM_PER_F, "krum")
    w = as_weights(weights, upd.n)
    if m is None:
        m = upd.n - f
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise TypeError(f"m must be an int or None, got {type(m).__name__}")
    if not 1 <= m <= upd.n:
        raise ValueError(f"m must satisfy 1 <= m <= n (n={upd.n}), got {m}")
    _, scores = _krum_select(upd, f, check_finite)  # parameters first, then the distances
    chosen = tuple(sorted(int(i) for i in np.argsort(scores, kind="stable")[:m]))
    return mean_of(upd, chosen, w), chosen


@rule_types
@tensor_io("updates")
@fill_doc
def bulyan(updates: Any, f: int, weights: Any = None, *, check_finite: bool = True) -> Any:
    """Bulyan (El Mhamdi et al. 2018) over Krum.

    ``theta = n - 2f`` rounds each run Krum (same ``f``, ``remaining - f - 2`` neighbours, at
    least one) on the updates not yet chosen and move its choice to the selection; then, per
    coordinate, the weighted mean of the ``beta = theta - 2f`` selected values closest to the
    selection's coordinate-wise median (ties to the lower index). Distances are computed once.

    Parameters
    ----------
    %(updates)s
    f
        Number of Byzantine updates tolerated; requires ``n >= 4f + 3``.
    weights
        Optional non-negative weight per update, used in the final mean. A coordinate whose
        kept values all have weight zero raises ValueError.
    %(check_finite)s
    """
    return _bulyan(as_updates(updates), f, weights, check_finite=check_finite)[0]


def _bulyan(upd: Updates, f: Any, weights: Any, *, check_finite: bool) -> Selection:
    f = check_f(f, upd.n, BULYAN_PER_F, "bulyan")
    w = as_weights(weights, upd.n)
    chosen = tuple(sorted(bulyan_selection(pairwise(upd, check_finite), f)))
    beta = len(chosen) - 2 * f
    sub_w = None if w is None else subset_weights(w, chosen)
    result = run_kernel("mean_around_median", upd.take(chosen), check_finite, beta, sub_w)
    raise_if_zero_weight(result, sub_w, "every value kept around the median has weight zero")
    return result, chosen
