"""Minimum-diameter averaging (MDA; El Mhamdi, Guerraoui & Rouault 2018, after Rousseeuw 1985).

Of all subsets of ``n - f`` updates, the one of smallest diameter (its largest pairwise
distance) is averaged. The search is exact: it visits every subset, ``C(n, f)`` of them, each
in ``(n - f)^2`` comparisons of the squared distances (computed once, :mod:`hierfed.distances`,
the same bits on every backend). When ``C(n, f) (n - f)^2`` exceeds :data:`MDA_MAX_WORK` it
refuses with a ValueError rather than run for minutes: ``n = 15, f = 7`` is ``4.1e5``,
``n = 20, f = 5`` ``3.5e6``, ``n = 30, f = 5`` ``8.9e7`` (refused), ``n = 75, f = 2`` ``1.5e7``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checks import byzantine_count
from ._docstrings import fill_doc
from ._inputs import Aggregate, Updates, as_updates, as_weights
from ._interop import tensor_io
from ._types import rule_types
from .coordinatewise import mean_of
from .distances import pairwise

__all__ = ["MDA_MAX_WORK", "mda", "mda_select", "mda_work"]

MDA_MAX_WORK = 5 * 10**7  # distance comparisons: about a second on one core
_GATHER = 1 << 22  # distance entries gathered per block of subsets


def mda_work(n: int, f: int) -> int:
    """The distance comparisons of MDA's exact search, ``C(n, f) (n - f)^2``."""
    return math.comb(n, f) * (n - f) ** 2


def min_diameter_subset(dist: NDArray[np.float64], f: int) -> tuple[int, ...]:
    """The first subset of ``n - f`` indices (lexicographic order) of least diameter."""
    n = dist.shape[0]
    m = n - f
    work = mda_work(n, f)
    if work > MDA_MAX_WORK:
        raise ValueError(
            f"mda is exact: n={n}, f={f} takes C(n, f) (n - f)^2 = {work} distance "
            f"comparisons, more than MDA_MAX_WORK = {MDA_MAX_WORK}; lower f, split the "
            "updates into smaller groups (baskets), or use another rule"
        )
    combos = itertools.combinations(range(n), m)
    best, best_diameter = tuple(range(m)), math.inf
    while block := list(itertools.islice(combos, max(1, _GATHER // (m * m)))):
        idx = np.array(block)
        diameters = dist[idx[:, :, None], idx[:, None, :]].max(axis=(1, 2))
        j = int(np.argmin(diameters))
        if diameters[j] < best_diameter:
            best, best_diameter = block[j], float(diameters[j])
    return best


def mda_select(upd: Updates, f: Any, check_finite: bool = True) -> tuple[int, ...]:
    """The indices (ascending) of the ``n - f`` validated updates MDA averages."""
    f = byzantine_count(f, upd.n, "mda")
    return min_diameter_subset(pairwise(upd, check_finite), f)


@rule_types
@tensor_io("updates")
@fill_doc
def mda(updates: Any, f: int, weights: Any = None, *, check_finite: bool = True) -> Any:
    """Minimum-diameter averaging: the weighted mean of the ``n - f`` updates of least diameter.

    The diameter of a subset is its largest pairwise Euclidean distance; among subsets of
    equal diameter the first in lexicographic order of their indices wins. The search is
    exact over ``C(n, f)`` subsets (see :data:`MDA_MAX_WORK`).

    Parameters
    ----------
    %(updates)s
    %(f)s
    weights
        Optional non-negative weight per update, used in the mean; the chosen ones must not
        all be zero.
    %(check_finite)s

    Raises
    ------
    ValueError
        Besides bad input: a search longer than :data:`MDA_MAX_WORK` comparisons.
    """
    return _mda(as_updates(updates), f, weights, check_finite=check_finite)[0]


def _mda(
    upd: Updates, f: Any, weights: Any, *, check_finite: bool
) -> tuple[Aggregate, tuple[int, ...]]:
    w = as_weights(weights, upd.n)
    chosen = mda_select(upd, f, check_finite)
    return mean_of(upd, chosen, w), chosen
