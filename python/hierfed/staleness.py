"""Staleness weights: how much an update computed on an old global model counts.

An update's staleness ``s`` is the current global version minus the version it was computed
from. Presets (all equal 1 at ``s = 0`` and never increase):

- ``"exponential"``: ``base ** s``, base 0.9 (spec/layers.md's default);
- ``"constant"``: 1 (synchronous FedAvg's view);
- ``"polynomial"``: ``(1 + s) ** -a``, a = 0.5 (FedAsync, Xie et al. 2019);
- ``"sqrt"``: ``1 / sqrt(1 + s)`` (FedBuff, Nguyen et al. 2022);
- ``"hinge"``: 1 while ``s <= b``, then ``1 / (a (s - b) + 1)``, a = 10, b = 4 (FedAsync).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["PRESETS", "StalenessFunction", "staleness_function"]

StalenessFunction = Callable[[int], float]

PRESETS = ("exponential", "constant", "polynomial", "sqrt", "hinge")


def _number(params: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    v = params.pop(name, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
        raise ValueError(f"staleness parameter {name} must be in [{low}, {high}], got {v!r}")
    return float(v)


def staleness_function(
    kind: str | StalenessFunction = "exponential", **params: Any
) -> StalenessFunction:
    """The staleness weight function ``kind`` (a preset name, or a callable returned as is).

    Parameters
    ----------
    kind
        One of :data:`PRESETS`, or a callable ``s -> weight``.
    **params
        The preset's parameters: ``base`` (exponential), ``a`` (polynomial, hinge), ``b``
        (hinge).
    """
    if callable(kind):
        if params:
            raise TypeError("parameters go with a preset name, not with a callable")
        return kind
    if kind == "exponential":
        base = _number(params, "base", 0.9, 0.0, 1.0)
        fn: StalenessFunction = lambda s: base**s  # noqa: E731
    elif kind == "constant":
        fn = lambda s: 1.0  # noqa: E731
    elif kind == "polynomial":
        a = _number(params, "a", 0.5, 0.0, math.inf)
        fn = lambda s: (1.0 + s) ** -a  # noqa: E731
    elif kind == "sqrt":
        fn = lambda s: 1.0 / math.sqrt(1.0 + s)  # noqa: E731
    elif kind == "hinge":
        a = _number(params, "a", 10.0, 0.0, math.inf)
        b = _number(params, "b", 4.0, 0.0, math.inf)
        fn = lambda s: 1.0 if s <= b else 1.0 / (a * (s - b) + 1.0)  # noqa: E731
    else:
        raise ValueError(
            f"staleness must be one of {', '.join(PRESETS)} or a callable; got {kind!r}"
        )
    if params:
        raise TypeError(f"staleness {kind!r} takes no parameter(s) {sorted(params)}")
    return fn
