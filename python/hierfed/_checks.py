"""Argument checks shared across hierfed: clear errors naming the argument and the rule broken."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np


def real(value: Any, name: str) -> float:
    """``value`` as a finite float, or TypeError/ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    return x


def positive(value: Any, name: str) -> float:
    """A finite float > 0."""
    x = real(value, name)
    if x <= 0:
        raise ValueError(f"{name} must be > 0, got {x}")
    return x


def non_negative(value: Any, name: str) -> float:
    """A finite float >= 0."""
    x = real(value, name)
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    return x


def probability_open(value: Any, name: str) -> float:
    """A float in the open interval (0, 1)."""
    x = real(value, name)
    if not 0 < x < 1:
        raise ValueError(f"{name} must be in (0, 1), got {x}")
    return x


def count(value: Any, name: str, minimum: int = 0) -> int:
    """An int >= ``minimum`` (bools refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if n < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {n}")
    return n


def byzantine_count(f: Any, n: int, rule: str) -> int:
    """The ``f`` of a rule that keeps ``n - f`` of ``n`` updates: an int with ``0 <= f < n``."""
    if isinstance(f, (bool, np.bool_)) or not isinstance(f, (int, np.integer)):
        raise TypeError(f"f must be an int, got {type(f).__name__}")
    if not 0 <= f < n:
        raise ValueError(f"{rule} needs 0 <= f < n (n={n}), got f={f}")
    return int(f)
