"""Robust aggregation API: every rule by name, with what it selected.

The rules live in :mod:`hierfed.coordinatewise`, :mod:`hierfed.selection` and
:mod:`hierfed.center`; :func:`aggregate` runs one by :class:`AggregationMethod`, optionally
after nearest-neighbour mixing (:mod:`hierfed.mixing`), and returns an
:class:`AggregationResult`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._inputs import Aggregate, Updates, as_updates
from ._interop import tensor_io
from .center import _centered_clipping, _geometric_median, centered_clipping, geometric_median
from .coordinatewise import _mean, _median, _trimmed_mean, mean, median, trimmed_mean
from .mixing import mix
from .selection import _bulyan, _krum, _multi_krum, bulyan, krum, multi_krum

__all__ = ["AggregationMethod", "AggregationResult", "aggregate"]


class AggregationMethod(str, Enum):
    """The aggregation rules :func:`aggregate` knows."""

    MEAN = "mean"
    TRIMMED_MEAN = "trimmed_mean"
    MEDIAN = "median"
    KRUM = "krum"
    MULTI_KRUM = "multi_krum"
    BULYAN = "bulyan"
    GEOMETRIC_MEDIAN = "geometric_median"
    CENTERED_CLIPPING = "centered_clipping"


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
        Indices (ascending) of the updates chosen as a whole by a selection rule (Krum,
        Multi-Krum, Bulyan's selection), or ``None`` for rules where every update may
        contribute (coordinate-wise rules, geometric median, centered clipping).
    outliers_removed
        Indices (ascending) of the updates a selection rule rejected as a whole; empty for
        the other rules.
    """

    aggregate: Aggregate
    method: AggregationMethod
    n_inputs: int
    selected: tuple[int, ...] | None = None
    outliers_removed: tuple[int, ...] = field(default_factory=tuple)


Rule = Callable[..., tuple[Aggregate, tuple[int, ...] | None]]


def _whole(body: Callable[..., Aggregate]) -> Rule:
    """A rule without a selection: every update may contribute."""

    def run(upd: Updates, **params: Any) -> tuple[Aggregate, tuple[int, ...] | None]:
        return body(upd, **params), None

    return run


# Each rule: its public function (whose signature checks the parameters) and its body on
# already validated updates, returning the aggregate and the selected indices (or None).
_RULES: dict[AggregationMethod, tuple[Callable[..., Any], Rule]] = {
    AggregationMethod.MEAN: (mean, _whole(_mean)),
    AggregationMethod.TRIMMED_MEAN: (trimmed_mean, _whole(_trimmed_mean)),
    AggregationMethod.MEDIAN: (median, _whole(_median)),
    AggregationMethod.KRUM: (krum, _krum),
    AggregationMethod.MULTI_KRUM: (multi_krum, _multi_krum),
    AggregationMethod.BULYAN: (bulyan, _bulyan),
    AggregationMethod.GEOMETRIC_MEDIAN: (geometric_median, _whole(_geometric_median)),
    AggregationMethod.CENTERED_CLIPPING: (centered_clipping, _whole(_centered_clipping)),
}
_PRE = ("nnm",)


@tensor_io("updates")
def aggregate(
    updates: Any,
    method: AggregationMethod | str = AggregationMethod.MEAN,
    pre: str | None = None,
    **params: Any,
) -> AggregationResult:
    """Aggregate ``updates`` with ``method``; ``params`` go to that rule's function.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.
    method
        An :class:`AggregationMethod` or its value, e.g. ``"krum"``.
    pre
        ``"nnm"``: nearest-neighbour mixing (:func:`hierfed.nearest_neighbor_mixing`) first;
        it needs ``f``, which also goes to the rule when the rule takes ``f``.
    **params
        The rule's parameters, e.g. ``trim_ratio``, ``f``, ``weights``.

    Raises
    ------
    ValueError
        An unknown method or pre-step, or a parameter the rule rejects.
    TypeError
        A parameter the rule does not take.
    """
    try:
        rule = AggregationMethod(method)
    except ValueError:
        known = ", ".join(m.value for m in AggregationMethod)
        raise ValueError(f"method must be one of {known}; got {method!r}") from None
    if pre is not None and pre not in _PRE:
        raise ValueError(f"pre must be None or one of {_PRE}; got {pre!r}")
    public, body = _RULES[rule]
    signature = inspect.signature(public)
    rule_params = dict(params)
    if pre == "nnm":
        if "f" not in params:
            raise TypeError("aggregate(pre='nnm') needs f, the number of Byzantine updates")
        if "f" not in signature.parameters:
            del rule_params["f"]
    try:
        signature.bind(updates, **rule_params)
    except TypeError as exc:
        raise TypeError(f"aggregate(method={rule.value!r}): {exc}") from None
    upd = as_updates(updates)
    if pre == "nnm":
        upd = mix(upd, params["f"], rule_params.get("check_finite", True))
    result, selected = body(upd, **rule_params)
    removed = () if selected is None else tuple(sorted(set(range(upd.n)) - set(selected)))
    return AggregationResult(result, rule, upd.n, selected, removed)
