"""Mean around the median (Meamed, Xie, Koyejo & Gupta 2018): a coordinate-wise rule.

Per coordinate, the (weighted) mean of the ``n - f`` values closest to the coordinate-wise
median. It runs the coordinate-wise family's ``mean_around_median`` kernel (the one Bulyan's
last step uses) on every backend.
"""

from __future__ import annotations

from typing import Any

from ._checks import byzantine_count
from ._docstrings import fill_doc
from ._inputs import Aggregate, Updates, as_updates, as_weights
from ._interop import tensor_io
from ._types import rule_types
from .coordinatewise import raise_if_zero_weight, run_kernel

__all__ = ["meamed"]


@rule_types
@tensor_io("updates")
@fill_doc
def meamed(updates: Any, f: int, weights: Any = None, *, check_finite: bool = True) -> Any:
    """Mean around the median: per coordinate, the mean of the ``n - f`` values closest to
    the coordinate-wise median (ties of distance to the lower index).

    Parameters
    ----------
    %(updates)s
    %(f)s
    weights
        Optional non-negative weight per update, used in the mean (the median is unweighted).
        A coordinate whose kept values all have weight zero raises ValueError.
    %(check_finite)s
    """
    return _meamed(as_updates(updates), f, weights, check_finite=check_finite)


def _meamed(upd: Updates, f: Any, weights: Any, *, check_finite: bool) -> Aggregate:
    f = byzantine_count(f, upd.n, "meamed")
    w = as_weights(weights, upd.n)
    result = run_kernel("mean_around_median", upd, check_finite, upd.n - f, w)
    raise_if_zero_weight(result, w, "every value kept around the median has weight zero")
    return result
