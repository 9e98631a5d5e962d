"""Construction-time proof that a rule can run: a dry run on ``n`` zero updates of one value.

A configuration whose rule lacks a parameter (Krum without ``f``), takes an unknown one, or
needs more inputs than a trigger can ever give it (Bulyan with f=3 in baskets of at most 5
clients; a Layer 2 robust rule ``min_baskets`` cannot feed) is refused when it is built,
with the count and what the rule needs, instead of failing inside a later aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .aggregator import AggregationMethod, aggregate
from .preaggregation import as_steps
from .selection import BULYAN_PER_F, KRUM_PER_F, min_updates

TAKES_WEIGHTS = frozenset(
    {
        AggregationMethod.MEAN,
        AggregationMethod.TRIMMED_MEAN,
        AggregationMethod.MEDIAN,
        AggregationMethod.MULTI_KRUM,
        AggregationMethod.BULYAN,
        AggregationMethod.GEOMETRIC_MEDIAN,
        AggregationMethod.MDA,
        AggregationMethod.MEAMED,
        AggregationMethod.MONNA,
    }
)
# Rules that keep n - f of n updates: they need n >= f + 1.
_KEEP_N_MINUS_F = frozenset(
    {AggregationMethod.MDA, AggregationMethod.MEAMED, AggregationMethod.MONNA}
)

_PER_F = {
    AggregationMethod.KRUM: KRUM_PER_F,
    AggregationMethod.MULTI_KRUM: KRUM_PER_F,
    AggregationMethod.BULYAN: BULYAN_PER_F,
}


def min_inputs(rule: AggregationMethod, params: Mapping[str, Any], pre: Any = None) -> int:
    """The fewest inputs ``rule`` with ``params`` accepts (``2f + 3`` for Krum, ``4f + 3``
    for Bulyan, ``2 n_trim + 1`` for a trimmed mean with ``n_trim``, ``f + 1`` for MDA,
    Meamed and MoNNA; else 1), times the bucket size ``s`` when ``pre`` buckets (``need``
    buckets take ``s (need - 1) + 1`` updates). Parameters of the wrong type count as 1 (the
    dry run reports them)."""
    need = _rule_min_inputs(rule, params)
    s = _count(params.get("s"))
    if s and "bucketing" in as_steps(pre):
        need = s * (need - 1) + 1
    return need


def _rule_min_inputs(rule: AggregationMethod, params: Mapping[str, Any]) -> int:
    per_f = _PER_F.get(rule)
    f, n_trim = _count(params.get("f")), _count(params.get("n_trim"))
    if per_f is not None and f is not None:
        return min_updates(per_f, f)
    if rule in _KEEP_N_MINUS_F and f is not None:
        return f + 1
    if rule is AggregationMethod.TRIMMED_MEAN and n_trim is not None:
        return 2 * n_trim + 1
    return 1


def _count(x: Any) -> int | None:
    ok = not isinstance(x, bool) and isinstance(x, (int, np.integer)) and x >= 0
    return int(x) if ok else None


def dry_run(
    rule: AggregationMethod,
    params: Mapping[str, Any],
    n: int,
    where: str,
    pre: Any = None,
) -> None:
    """Run ``rule`` with ``params`` on ``n`` zero updates; a failure raises ``ValueError``
    (or ``TypeError`` for a parameter the rule does not take) naming ``where`` and ``n``."""
    trial = dict(params)
    center = trial.get("center")
    shape = np.shape(center) if center is not None else (1,)
    if rule is AggregationMethod.CENTERED_CLIPPING:
        trial.setdefault("center", np.zeros(shape))
    if rule is AggregationMethod.MONNA:
        trusted = trial.setdefault("trusted", np.zeros(shape))
        shape = np.shape(trusted)
    if rule in TAKES_WEIGHTS and "weights" not in trial and "bucketing" not in as_steps(pre):
        trial["weights"] = np.ones(n)
    try:
        aggregate(np.zeros((n, *shape)), rule, pre, **trial)
    except TypeError as exc:
        raise TypeError(f"{where}: {_shown(rule, params)}: {exc}") from None
    except ValueError as exc:
        shown = _shown(rule, params)
        raise ValueError(f"{where}: {shown} cannot aggregate {n} inputs: {exc}") from None


def _shown(rule: AggregationMethod, params: Mapping[str, Any]) -> str:
    given = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{rule.value} with {given}" if given else rule.value


def staleness_weights(weight: Callable[[int], float], max_staleness: int | None) -> None:
    """Refuse a staleness function giving a weight that is not finite and > 0 at some
    staleness an update may have (checked up to ``max_staleness``, at most 1000): a basket
    whose updates all had weight 0 could never be aggregated."""
    top = 1000 if max_staleness is None else min(max_staleness, 1000)
    for s in range(top + 1):
        w = weight(s)
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)):
            raise TypeError(f"staleness weight at staleness {s} must be a number, got {w!r}")
        if not (math.isfinite(w) and w > 0):
            raise ValueError(
                f"staleness weight at staleness {s} is {w!r}; every weight up to "
                f"max_staleness={max_staleness} must be finite and > 0 (a basket whose updates "
                "all weigh 0 can never be aggregated): lower max_staleness or change staleness"
            )
