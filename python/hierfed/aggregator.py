"""Robust aggregation API: every rule by name, with what it selected.

The rules live in :mod:`hierfed.coordinatewise`, :mod:`hierfed.selection`,
:mod:`hierfed.center`, :mod:`hierfed.mda`, :mod:`hierfed.meamed` and :mod:`hierfed.monna`;
:func:`aggregate` runs one by :class:`AggregationMethod`, optionally after pre-aggregation
steps (:mod:`hierfed.preaggregation`: nearest-neighbour mixing, bucketing, ARC, clipping),
and returns an :class:`AggregationResult`.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ._docstrings import fill_doc
from ._inputs import Aggregate, Updates, as_updates
from ._interop import tensor_io
from .center import _centered_clipping, _geometric_median, centered_clipping, geometric_median
from .coordinatewise import _mean, _median, _trimmed_mean, mean, median, trimmed_mean
from .mda import _mda, mda
from .meamed import _meamed, meamed
from .monna import _monna, monna
from .preaggregation import as_steps, check_params, run_steps, step_params
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
    MDA = "mda"
    MEAMED = "meamed"
    MONNA = "monna"


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
        Multi-Krum, Bulyan's selection, MDA, MoNNA), or ``None`` for rules where every update
        may contribute (coordinate-wise rules, geometric median, centered clipping) and after
        bucketing (whose random buckets, not the updates, reach the rule).
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


def _own_signature(public: Callable[..., Any]) -> inspect.Signature:
    """The signature of the undecorated function's own code and defaults: a ``__signature__``
    set on it (as Sphinx's autodoc_preserve_defaults does, with placeholder defaults) must not
    change what the rule receives."""
    func = inspect.unwrap(public)
    code = getattr(func, "__code__", None)
    if code is None:  # not a Python function: nothing but its signature to go by
        return inspect.signature(func)
    bare = types.FunctionType(
        code, func.__globals__, func.__name__, func.__defaults__, func.__closure__
    )
    bare.__kwdefaults__ = func.__kwdefaults__
    return inspect.signature(bare)


def _whole(body: Callable[..., Aggregate]) -> Rule:
    """A rule without a selection: every update may contribute."""

    def run(upd: Updates, **params: Any) -> tuple[Aggregate, tuple[int, ...] | None]:
        return body(upd, **params), None

    return run


# Each rule: its public function (whose signature checks the parameters and holds their
# defaults) and its body on already validated updates, which takes every parameter
# explicitly and returns the aggregate and the selected indices (or None).
_RULES: dict[AggregationMethod, tuple[Callable[..., Any], Rule]] = {
    AggregationMethod.MEAN: (mean, _whole(_mean)),
    AggregationMethod.TRIMMED_MEAN: (trimmed_mean, _whole(_trimmed_mean)),
    AggregationMethod.MEDIAN: (median, _whole(_median)),
    AggregationMethod.KRUM: (krum, _krum),
    AggregationMethod.MULTI_KRUM: (multi_krum, _multi_krum),
    AggregationMethod.BULYAN: (bulyan, _bulyan),
    AggregationMethod.GEOMETRIC_MEDIAN: (geometric_median, _whole(_geometric_median)),
    AggregationMethod.CENTERED_CLIPPING: (centered_clipping, _whole(_centered_clipping)),
    AggregationMethod.MDA: (mda, _mda),
    AggregationMethod.MEAMED: (meamed, _whole(_meamed)),
    AggregationMethod.MONNA: (monna, _monna),
}


@tensor_io("updates")
@fill_doc
def aggregate(
    updates: Any,
    method: AggregationMethod | str = AggregationMethod.MEAN,
    pre: str | Sequence[str] | None = None,
    **params: Any,
) -> AggregationResult:
    """Aggregate ``updates`` with ``method``; ``params`` go to that rule's function.

    Parameters
    ----------
    %(updates)s
    method
        An :class:`AggregationMethod` or its value, e.g. ``"krum"``.
    pre
        Pre-aggregation steps run first, in order: a name or a sequence of names among
        ``"nnm"`` (nearest-neighbour mixing, needs ``f``), ``"bucketing"`` (needs ``s``, takes
        ``seed``), ``"arc"`` (adaptive robust clipping, needs ``f``) and ``"clip"`` (needs
        ``clip_norm``); see :mod:`hierfed.preaggregation`. Their parameters come from
        ``params``; ``f`` also goes to the rule when the rule takes ``f``. After bucketing,
        ``weights`` are refused (the buckets are new inputs).
    **params
        The rule's parameters, e.g. ``trim_ratio``, ``f``, ``weights``, ``trusted`` (MoNNA).

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
    steps = as_steps(pre)
    public, body = _RULES[rule]
    signature = _own_signature(public)
    check_params(steps, params)
    rule_params = {
        k: v for k, v in params.items() if k not in step_params(steps) or k in signature.parameters
    }
    if "bucketing" in steps and params.get("weights") is not None:
        raise ValueError("aggregate(pre='bucketing'): weights cannot follow updates into buckets")
    try:
        bound = signature.bind(updates, **rule_params)
    except TypeError as exc:
        raise TypeError(f"aggregate(method={rule.value!r}): {exc}") from None
    bound.apply_defaults()  # the defaults are the public function's (the body has none)
    options = {k: v for k, v in bound.arguments.items() if k != "updates"}
    upd = as_updates(updates)
    n = upd.n
    upd = run_steps(upd, steps, params, options["check_finite"])
    result, selected = body(upd, **options)
    if "bucketing" in steps:
        return AggregationResult(result, rule, n)
    removed = () if selected is None else tuple(sorted(set(range(upd.n)) - set(selected)))
    return AggregationResult(result, rule, n, selected, removed)
