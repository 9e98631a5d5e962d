"""Pre-aggregation steps that run before a robust rule (``aggregate(..., pre=...)``).

- ``"nnm"``: nearest-neighbour mixing (:mod:`hierfed.mixing`, Allouah et al. 2023); reads ``f``.
- ``"bucketing"`` (Karimireddy, He & Jaggi 2022): the updates in a random order, cut into
  buckets of ``s`` consecutive ones (the last holds the ``n mod s`` rest, when there is one),
  each bucket replaced by its mean: ``ceil(n / s)`` updates go on. Reads ``s`` and ``seed``
  (an int, a ``numpy.random.Generator``, or ``None`` for fresh operating-system randomness,
  which an attacker cannot predict). One pass of the mixing kernel.
- ``"arc"``, adaptive robust clipping (Allouah et al. 2024): with ``k = floor(2 (f/n) (n - f))``,
  the ``k`` updates of largest L2 norm are clipped to the norm of the ``(k+1)``-th largest;
  the others pass unchanged. Reads ``f``.
- ``"clip"``: static clipping, every update scaled down to L2 norm at most ``clip_norm``
  (:func:`hierfed.clip_by_l2_norm`). Reads ``clip_norm``.

Steps compose in the order given: ``pre=("bucketing", "nnm")`` buckets, then mixes the
bucket means, then runs the rule on them (with the same ``f``). Norms and clipping run the
clipping kernels, bucketing the mixing kernel, on the active backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import _checks
from ._inputs import Updates, as_updates
from ._interop import tensor_io
from .mixing import as_rows, mix, mixed_rows
from .privacy.clipping import clip_by_l2_norm, l2_norms

__all__ = ["PRE_STEPS", "adaptive_robust_clipping", "as_steps", "bucketing", "run_steps"]

# Each step and the aggregate() parameters it reads (the first ones required).
PRE_STEPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "nnm": (("f",), ()),
    "bucketing": (("s",), ("seed",)),
    "arc": (("f",), ()),
    "clip": (("clip_norm",), ()),
}


def as_steps(pre: Any) -> tuple[str, ...]:
    """``pre`` (``None``, a step name or a sequence of them) as a tuple of known steps."""
    steps = () if pre is None else (pre,) if isinstance(pre, str) else pre
    known = ", ".join(PRE_STEPS)
    if not isinstance(steps, (tuple, list)) or not all(isinstance(s, str) for s in steps):
        raise TypeError(f"pre must be None, a step name or a sequence of them ({known})")
    for step in steps:
        if step not in PRE_STEPS:
            raise ValueError(f"pre must be None or one of {known} (or a sequence); got {step!r}")
    return tuple(steps)


def step_params(steps: Sequence[str]) -> set[str]:
    """Every parameter the ``steps`` read."""
    return {p for s in steps for group in PRE_STEPS[s] for p in group}


def _models(upd: Updates) -> list[list[np.ndarray[Any, Any]]]:
    """The validated updates as per-layer models of their flat segments (views)."""
    return [[rows[i] for rows in upd.segments] for i in range(upd.n)]


def _from_models(upd: Updates, models: Sequence[Sequence[np.ndarray[Any, Any]]]) -> Updates:
    segments = [[m[s] for m in models] for s in range(len(upd.segments))]
    return Updates(segments, upd.shapes, upd.kind, len(models), upd.dtype)


def _in_input_form(upd: Updates) -> Any:
    """Validated updates returned in their input's form (an array, arrays, models)."""
    if upd.kind == "array" and len(upd.segments) == 1:  # one stack, no per-row reshape
        return np.stack(upd.segments[0]).reshape((upd.n, *upd.shapes[0]))
    if upd.kind == "array":
        return np.stack([upd.wrap([rows[i] for rows in upd.segments]) for i in range(upd.n)])
    return [upd.wrap([rows[i].copy() for rows in upd.segments]) for i in range(upd.n)]


def buckets(n: int, s: Any, seed: Any) -> list[list[int]]:
    """The buckets (lists of update indices) of a random order of ``n`` updates."""
    s = _checks.count(s, "s", 1)
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int, a numpy Generator or None, got bool")
    order = np.random.default_rng(seed).permutation(n)
    return [[int(i) for i in order[j : j + s]] for j in range(0, n, s)]


def _bucketing(upd: Updates, s: Any, seed: Any = None, check_finite: bool = True) -> Updates:
    """The bucket means by the mixing kernel: up to 8 buckets in one pass over all rows (its
    register block: 8 outputs per load), more one pass per bucket over its own rows, in index
    order, so the sums are the same bits and the work n d, not (buckets) n d."""
    groups = [sorted(members) for members in buckets(upd.n, s, seed)]
    if len(groups) <= 8:
        weights = np.zeros((len(groups), upd.n))
        for b, members in enumerate(groups):
            weights[b, members] = 1.0
        return as_rows(upd, mixed_rows(upd, weights, check_finite), len(groups))
    try:
        outs = [mixed_rows(upd.take(g), np.ones((1, len(g))), check_finite) for g in groups]
    except ValueError:  # name the update by its index among all n
        raise upd.nonfinite_error() from None
    segments = [[out[seg][0] for out in outs] for seg in range(len(upd.segments))]
    return Updates(segments, upd.shapes, upd.kind, len(groups), upd.dtype)


@tensor_io("updates")
def bucketing(updates: Any, s: int, *, seed: Any = None, check_finite: bool = True) -> Any:
    """The means of buckets of ``s`` updates taken in a random order (Karimireddy et al. 2022).

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.
    s
        Bucket size, >= 1 (``s = 1``: the updates in a random order).
    seed
        An int, a ``numpy.random.Generator`` or ``None`` (operating-system randomness).
    check_finite
        Raise ValueError naming the first update that holds NaN or infinity.

    Returns
    -------
    The ``ceil(n / s)`` bucket means in the input's form (bucket ``b`` holds the updates at
    positions ``b*s, ..., b*s + s - 1`` of ``numpy.random.default_rng(seed).permutation(n)``).
    """
    return _in_input_form(_bucketing(as_updates(updates), s, seed, check_finite))


def arc_count(n: int, f: int) -> int:
    """ARC's number of updates clipped, ``floor(2 (f/n) (n - f))``."""
    return (2 * f * (n - f)) // n


def _arc(upd: Updates, f: Any, check_finite: bool = True) -> Updates:
    f = _checks.byzantine_count(f, upd.n, "arc")
    k = arc_count(upd.n, f)
    if k == 0:
        return upd
    # one segment: its rows as a list of arrays (no per-layer models to build and re-check)
    flat = len(upd.segments) == 1
    models: list[Any] = list(upd.segments[0]) if flat else _models(upd)
    norms = l2_norms(models, check_finite=check_finite)
    order = np.argsort(-norms, kind="stable")  # largest first, ties to the lower index
    top = [int(i) for i in order[:k]]
    threshold = float(norms[order[k]])
    if threshold > 0:
        clipped = clip_by_l2_norm([models[i] for i in top], threshold, check_finite=check_finite)
    elif flat:  # the (k+1)-th largest norm is 0: the clipped updates become 0
        clipped = [np.zeros_like(models[i]) for i in top]
    else:
        clipped = [[np.zeros_like(p) for p in models[i]] for i in top]
    for i, c in zip(top, clipped, strict=True):
        models[i] = c
    if flat:
        return Updates([models], upd.shapes, upd.kind, upd.n, upd.dtype)
    return _from_models(upd, models)


@tensor_io("updates")
def adaptive_robust_clipping(updates: Any, f: int, *, check_finite: bool = True) -> Any:
    """ARC (Allouah et al. 2024): the ``floor(2 (f/n) (n - f))`` updates of largest L2 norm
    clipped to the norm of the next largest; the others unchanged.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models
        (clipped as one vector each).
    f
        Number of Byzantine updates tolerated, ``0 <= f < n``.
    check_finite
        Raise ValueError naming the first update that holds NaN or infinity.

    Returns
    -------
    The ``n`` updates in the input's form. Ties of norm go to the lower index (clipped first).
    """
    return _in_input_form(_arc(as_updates(updates), f, check_finite))


def _clip(upd: Updates, clip_norm: Any, check_finite: bool = True) -> Updates:
    clipped = clip_by_l2_norm(_models(upd), clip_norm, check_finite=check_finite)
    return _from_models(upd, clipped)


_STEPS: dict[str, Callable[[Updates, Mapping[str, Any], bool], Updates]] = {
    "nnm": lambda u, p, c: mix(u, p["f"], c),
    "bucketing": lambda u, p, c: _bucketing(u, p["s"], p.get("seed"), c),
    "arc": lambda u, p, c: _arc(u, p["f"], c),
    "clip": lambda u, p, c: _clip(u, p["clip_norm"], c),
}


def check_params(steps: Sequence[str], params: Mapping[str, Any]) -> None:
    """Raise TypeError when a step's required parameter is missing from ``params``."""
    for step in steps:
        for name in PRE_STEPS[step][0]:
            if name not in params:
                raise TypeError(f"aggregate(pre={step!r}) needs {name}")


def run_steps(
    upd: Updates, steps: Sequence[str], params: Mapping[str, Any], check_finite: bool = True
) -> Updates:
    """The updates after every step of ``steps`` in turn (parameters from ``params``)."""
    for step in steps:
        upd = _STEPS[step](upd, params, check_finite)
    return upd
