"""Pre-aggregation steps that run before a robust rule (``aggregate(..., pre=...)``).

- ``"nnm"``: nearest-neighbour mixing (:mod:`hierfed.mixing`, Allouah et al. 2023); reads ``f``.
- ``"bucketing"`` (Karimireddy, He & Jaggi 2022): the updates in a random order, cut into
  buckets of ``s`` consecutive ones (the last holds the ``n mod s`` rest, when there is one),
  each bucket replaced by its mean: ``ceil(n / s)`` updates go on. Reads ``s`` and ``seed``
  (an int, a ``numpy.random.Generator``, or ``None`` for fresh operating-system randomness,
  which an attacker cannot predict). One pass of the bucket-mean kernel (each update read
  once, float64 sums over a bucket's updates in index order).
- ``"arc"``, adaptive robust clipping (Allouah et al. 2024): with ``k = floor(2 (f/n) (n - f))``,
  the ``k`` updates of largest L2 norm are clipped to the norm of the ``(k+1)``-th largest;
  the others pass unchanged. Reads ``f``.
- ``"clip"``: static clipping, every update scaled down to L2 norm at most ``clip_norm``
  (:func:`hierfed.clip_by_l2_norm`). Reads ``clip_norm``.

Steps compose in the order given: ``pre=("bucketing", "nnm")`` buckets, then mixes the
bucket means, then runs the rule on them (with the same ``f``). Norms and clipping run the
clipping kernels, bucketing the bucket-mean kernel (of the mixing family), on the active
backend; the input is validated once, at the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _backend, _checks
from ._inputs import FloatArray, Updates, as_updates
from ._interop import tensor_io, tensors_via
from ._kernels.numpy._rows import plain_matrix
from ._kernels.numpy.clipping import arc_count
from ._kernels.numpy.mixing import sorted_buckets
from .mixing import as_rows, mix
from .privacy.clipping import clip_rows, norms_of

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


def _answer(upd: Updates, outs: Sequence[FloatArray]) -> Any:
    """Kernel outputs (one ``(m, len)`` array per segment) in the input's form: an array, a
    list of arrays or a list of models (views of ``outs``, no copy)."""
    m = outs[0].shape[0]
    if upd.kind == "array":
        return outs[0].reshape((m, *upd.shapes[0]))
    return [upd.wrap([out[i] for out in outs]) for i in range(m)]


def _stacked(upd: Updates) -> list[FloatArray]:
    """A copy of the updates as one ``(n, len)`` array per segment."""
    return [np.concatenate(rows).reshape(upd.n, -1) for rows in upd.segments]


def _copy_except(upd: Updates, skip: Sequence[int]) -> list[FloatArray]:
    """One ``(n, len)`` array per segment holding a copy of every update but those at
    ``skip`` (left for the caller to write); small inputs are copied whole, in one call."""
    if upd.n * sum(rows[0].size for rows in upd.segments) < 1 << 16:
        return _stacked(upd)
    outs = [np.empty((upd.n, rows[0].size), upd.dtype) for rows in upd.segments]
    written = set(skip)
    for rows, out in zip(upd.segments, outs, strict=True):
        for i in range(upd.n):
            if i not in written:
                out[i] = rows[i]
    return outs


def draw_permutation(n: int, seed: Any) -> NDArray[np.int64]:
    """``numpy.random.default_rng(seed).permutation(n)``, a bool seed refused."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int, a numpy Generator or None, got bool")
    return np.random.default_rng(seed).permutation(n)


def bucket_order(n: int, s: int, seed: Any) -> NDArray[np.int64]:
    """A random order of ``n`` updates, each bucket's ``s`` positions in ascending index.

    The order is ``numpy.random.default_rng(seed).permutation(n)``; sorting within a bucket
    changes no bucket, only the order its sum is taken in (the same as before the kernel).
    """
    return sorted_buckets(draw_permutation(n, seed), s)


def _bucket_means(
    upd: Updates, s: Any, seed: Any, check_finite: bool, perm: Any = None
) -> list[FloatArray]:
    """Per segment, the ``(ceil(n / s), len)`` bucket means: one pass of the kernel (for the
    permutation ``perm`` when the caller drew it already)."""
    s = _checks.count(s, "s", 1)
    order = sorted_buckets(draw_permutation(upd.n, seed) if perm is None else perm, s)
    m = -(-upd.n // s)
    outs = [np.empty((m, rows[0].size), upd.dtype) for rows in upd.segments]
    kernel = _backend.kernels().bucket_means
    if kernel(upd.segments, order, s, outs, _backend.get_num_threads()):
        if any(not np.isfinite(r).all() for rows in upd.segments for r in rows):
            if check_finite:
                raise upd.nonfinite_error()
        else:  # float32 sums are float64: only float64 near its maximum overflows
            raise ValueError("updates: a bucket mean overflows float64 (values near 1.8e308)")
    return outs


def _bucketing(upd: Updates, s: Any, seed: Any = None, check_finite: bool = True) -> Updates:
    outs = _bucket_means(upd, s, seed, check_finite)
    return as_rows(upd, outs, outs[0].shape[0])


@tensor_io("updates")
def _bucketing_any(updates: Any, s: Any, seed: Any, check_finite: bool, perm: Any = None) -> Any:
    """:func:`bucketing` of every input form (torch/JAX included)."""
    upd = as_updates(updates)
    return _answer(upd, _bucket_means(upd, s, seed, check_finite, perm))


@tensors_via(_bucketing_any)
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
    if type(s) is int and s >= 1 and plain_matrix(updates):  # one kernel call, one draw
        perm = draw_permutation(len(updates), seed)
        done = _backend.kernels().bucket_matrix(updates, perm, s, _backend.get_num_threads())
        if done is not None:
            return done
        return _bucketing_any(updates, s, seed, check_finite, perm)  # NaN/inf, overflow
    return _bucketing_any(updates, s, seed, check_finite)


def _arc_rows(upd: Updates, f: Any, check_finite: bool) -> list[FloatArray] | None:
    """Per segment, the ``(n, len)`` updates after ARC; ``None`` when it clips none.

    The norms are taken once (one kernel pass); the answer is a copy of the other updates
    with the ``k`` largest clipped into it by the clipping kernel (those rows only).
    """
    f = _checks.byzantine_count(f, upd.n, "arc")
    k = arc_count(upd.n, f)
    norms = norms_of(upd, check_finite)  # at k = 0 too: NaN/inf raise
    if k == 0:
        return None
    order = np.argsort(-norms, kind="stable")  # largest first, ties to the lower index
    top = order[:k].tolist()
    threshold = float(norms[order[k]])
    outs = _copy_except(upd, top)
    if threshold > 0:
        clip_rows(upd.take(top), threshold, [[out[i] for i in top] for out in outs], check_finite)
    else:  # the (k+1)-th largest norm is 0: the clipped updates become 0
        for out in outs:
            out[top] = 0
    return outs


def _arc(upd: Updates, f: Any, check_finite: bool = True) -> Updates:
    outs = _arc_rows(upd, f, check_finite)
    return upd if outs is None else as_rows(upd, outs, upd.n)


@tensor_io("updates")
def _arc_any(updates: Any, f: int, *, check_finite: bool) -> Any:
    """:func:`adaptive_robust_clipping` of every input form (torch/JAX included)."""
    upd = as_updates(updates)
    outs = _arc_rows(upd, f, check_finite)
    return _answer(upd, _stacked(upd) if outs is None else outs)


@tensors_via(_arc_any)
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
    done = _backend.kernels().arc_matrix(updates, f, _backend.get_num_threads())
    if done is not None:  # a plain (n, d) ndarray in one kernel call
        return done
    return _arc_any(updates, f, check_finite=check_finite)


def _clip(upd: Updates, clip_norm: Any, check_finite: bool = True) -> Updates:
    bound = _checks.positive(clip_norm, "clip_norm")
    outs = [np.empty((upd.n, rows[0].size), upd.dtype) for rows in upd.segments]
    clip_rows(upd, bound, [list(out) for out in outs], check_finite)
    return as_rows(upd, outs, upd.n)


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
