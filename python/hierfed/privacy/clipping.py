"""Per-update L2 norms and clipping over every input form of :mod:`hierfed._inputs`.

Norms are float64 sums of squares in one fixed order (blocks of 8192 values, 32 lanes, see
``cpp/include/hierfed/clipping.hpp``), so they, and the clipped updates, are the same bit for
bit on every backend and thread count. A per-layer model is clipped as one vector: its norm
covers all its layers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _backend, _checks
from .._inputs import FloatArray, Updates, as_updates
from .._interop import tensor_io, tensors_via
from .._kernels.numpy.clipping import clip_margin, clip_target

__all__ = ["clip_by_l2_norm", "l2_norms"]

_NORM_BLOCK = 8192
_TINY_SQUARES = 2.0**-900


def _margin(upd: Updates) -> float:
    """The clipping factor's slack for these updates (:func:`clip_margin`)."""
    blocks = sum(-(-rows[0].size // _NORM_BLOCK) for rows in upd.segments)
    return clip_margin(blocks, len(upd.segments), upd.dtype.itemsize)


def _target(bound: float, upd: Updates) -> float:
    """The norm clipped updates are scaled to (:func:`clip_target`)."""
    return clip_target(bound, sum(math.prod(shape) for shape in upd.shapes), upd.dtype.itemsize)


def _row(upd: Updates, i: int) -> list[FloatArray]:
    return [rows[i] for rows in upd.segments]


def _careful_norm(parts: list[FloatArray]) -> float:
    """The L2 norm of one update whose plain sum of squares overflowed or underflowed."""
    top = max(float(np.max(np.abs(p))) for p in parts)
    if top == 0.0:
        return 0.0
    return top * math.sqrt(sum(float(np.sum(np.square(p / top, dtype=np.float64))) for p in parts))


def _all_normal(sq: NDArray[np.float64]) -> bool:
    """Whether every sum of squares is one the kernel handled (NaN fails both tests)."""
    if sq.size <= 32:  # for few rows a list is quicker than two reductions
        return all(_TINY_SQUARES <= v < math.inf for v in sq.tolist())
    return bool(np.minimum.reduce(sq) >= _TINY_SQUARES and np.maximum.reduce(sq) < math.inf)


def _special_rows(upd: Updates, sq: NDArray[np.float64], check_finite: bool) -> list[int]:
    """Rows whose sum of squares the kernel left to Python; checks them for NaN/inf."""
    if _all_normal(sq):
        return []
    rows = np.flatnonzero(~((sq >= _TINY_SQUARES) & (sq < math.inf))).tolist()
    for i in rows:
        if not all(np.isfinite(p).all() for p in _row(upd, i)):
            if check_finite:
                raise upd.nonfinite_error()
            sq[i] = math.nan
    return rows


def norms_of(upd: Updates, check_finite: bool = True) -> NDArray[np.float64]:
    """:func:`l2_norms` of validated updates (no second validation)."""
    sq = np.empty(upd.n, np.float64)
    _backend.kernels().l2_sq_norms(upd.segments, sq, _backend.get_num_threads())
    special = _special_rows(upd, sq, check_finite)
    norms = np.sqrt(sq)
    for i in special:
        if not math.isnan(sq[i]):
            norms[i] = _careful_norm(_row(upd, i))
    return norms


@tensor_io("updates")
def l2_norms(updates: Any, *, check_finite: bool = True) -> NDArray[np.float64]:
    """The L2 norm of every update, shape ``(n,)``, float64.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays (read in place) or a sequence of ``n``
        per-layer models (one norm over all layers of each).
    check_finite
        Raise ValueError naming the first update holding NaN or infinity; ``False`` gives NaN
        for such updates.
    """
    return norms_of(as_updates(updates), check_finite)


def _outputs(upd: Updates, out: Any) -> tuple[Any, list[list[FloatArray]]]:
    """The answer in the input's form and its rows per segment (allocated or ``out``'s)."""
    shapes = upd.shapes
    if out is None:
        if upd.kind == "array":
            result: Any = np.empty((upd.n, *shapes[0]), upd.dtype)
        elif upd.kind == "list":
            result = [np.empty(shapes[0], upd.dtype) for _ in range(upd.n)]
        else:
            result = [[np.empty(s, upd.dtype) for s in shapes] for _ in range(upd.n)]
    else:
        result = out
        _check_out(upd, out)
    if upd.kind == "array":  # C-contiguous: its rows as views in one call
        return result, [list(result.reshape(upd.n, -1))]
    if upd.kind == "list":
        per_update = [[result[i].reshape(-1)] for i in range(upd.n)]
    else:
        per_update = [
            [result[i][j].reshape(-1) for j, s in enumerate(shapes) if math.prod(s)]
            for i in range(upd.n)
        ]
    rows = [[per_update[i][s] for i in range(upd.n)] for s in range(len(upd.segments))]
    return result, rows


def _check_array(a: Any, shape: tuple[int, ...], dtype: np.dtype[Any], where: str) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where} must be a numpy array, got {type(a).__name__}")
    if a.shape != shape or a.dtype != dtype:
        raise ValueError(
            f"{where} must have shape {shape} and dtype {dtype}, got {a.shape} {a.dtype}"
        )
    if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable):
        raise ValueError(f"{where} must be C-contiguous, aligned and writeable")


def _check_out(upd: Updates, out: Any) -> None:
    """``out`` must have the answer's form, shapes and dtype, contiguous and writeable."""
    if upd.kind == "array":
        _check_array(out, (upd.n, *upd.shapes[0]), upd.dtype, "out")
        return
    if not isinstance(out, (list, tuple)) or len(out) != upd.n:
        raise ValueError(f"out must be a list of {upd.n} updates like the input")
    for i, item in enumerate(out):
        if upd.kind == "list":
            _check_array(item, upd.shapes[0], upd.dtype, f"out[{i}]")
            continue
        if not isinstance(item, (list, tuple)) or len(item) != len(upd.shapes):
            raise ValueError(f"out[{i}] must be a list of {len(upd.shapes)} layers")
        for j, layer in enumerate(item):
            _check_array(layer, upd.shapes[j], upd.dtype, f"out[{i}][{j}]")


@tensor_io("updates", "out")
def _clip_any(
    updates: Any, max_norm: float, out: Any, *, check_finite: bool, return_norms: bool
) -> Any:
    """:func:`clip_by_l2_norm` of every input form (torch/JAX included) and ``out``."""
    bound = _checks.positive(max_norm, "max_norm")
    upd = as_updates(updates)
    result, out_rows = _outputs(upd, out)
    norms = clip_rows(upd, bound, out_rows, check_finite)
    return (result, norms) if return_norms else result


@tensors_via(_clip_any)
def clip_by_l2_norm(
    updates: Any,
    max_norm: float,
    out: Any = None,
    *,
    check_finite: bool = True,
    return_norms: bool = False,
) -> Any:
    """Scale every update whose L2 norm exceeds ``max_norm`` down to norm ``max_norm``.

    The factor ``max_norm / (norm (1 + m))`` carries a slack ``m`` (about 6e-8 for float32,
    1e-13 for float64) that covers every rounding, so the exact norm of each returned update
    is at most ``max_norm``: the L2 sensitivity the Gaussian mechanism assumes really holds
    (down to subnormal ``max_norm``, where the target is lowered by what rounding to
    subnormal values can add).
    Updates within ``max_norm`` (less the slack) are returned unchanged.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays (read in place) or of ``n`` per-layer
        models (clipped as one vector each).
    max_norm
        The bound, > 0.
    out
        Where to write the answer, in the form it is returned (an array, a list of arrays, a
        list of models); it may be ``updates`` itself to clip in place. The input is never
        written otherwise.
    check_finite
        Raise ValueError naming the first update holding NaN or infinity (``False``: such
        updates come back as NaN).
    return_norms
        Also return the norms before clipping (as :func:`l2_norms`).

    Returns
    -------
    The clipped updates in the input's form (an ``(n, *shape)`` array, a list of arrays or a
    list of models), and the norms if ``return_norms``.
    """
    if out is None:  # a plain (n, d) ndarray in one kernel call; None for anything else
        done = _backend.kernels().clip_matrix(
            updates, max_norm, return_norms, _backend.get_num_threads()
        )
        if done is not None:
            return done
    return _clip_any(updates, max_norm, out, check_finite=check_finite, return_norms=return_norms)


def clip_rows(
    upd: Updates, max_norm: float, out_rows: list[list[FloatArray]], check_finite: bool = True
) -> NDArray[np.float64]:
    """:func:`clip_by_l2_norm` of validated updates into ``out_rows`` (``out_rows[s][i]``, a
    1-D C-contiguous row per segment and update; ``max_norm`` a float > 0); the norms."""
    bound = _target(max_norm, upd)
    sq = np.empty(upd.n, np.float64)
    margin = _margin(upd)
    _backend.kernels().clip_by_l2(
        upd.segments, out_rows, bound, margin, sq, _backend.get_num_threads()
    )
    norms = np.sqrt(sq)
    tiny = bound * 2.0**900  # norms (with the margin) above this have a factor below 2^-900
    if _all_normal(sq) and float(np.maximum.reduce(norms)) * (1.0 + margin) <= tiny:
        return norms  # the kernel wrote every row
    # rows the kernel left alone: over- or underflowing sums, tiny factors, NaN/inf
    special = _special_rows(upd, sq, check_finite)
    norms = np.sqrt(sq)
    big = np.sqrt(np.where(sq >= _TINY_SQUARES, sq, 0.0)) * (1.0 + margin) > tiny
    for i in sorted(set(special) | set(np.flatnonzero(big).tolist())):
        parts = _row(upd, i)
        if math.isnan(sq[i]):
            for s in range(len(parts)):
                out_rows[s][i][...] = math.nan
            continue
        norms[i] = _careful_norm(parts) if i in special else norms[i]
        top = norms[i] * (1.0 + margin)
        for s, p in enumerate(parts):
            if top > bound:  # divide first: bound / top may underflow
                out_rows[s][i][...] = p.astype(np.float64) / top * bound
            else:
                out_rows[s][i][...] = p
    return norms
