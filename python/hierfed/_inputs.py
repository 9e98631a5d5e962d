"""User inputs to zero-copy kernel views, with the shape, dtype and finite checks.

Accepted ``updates`` (DESIGN.md, "Inputs and outputs"):

- an ``(n, d)`` array (or ``(n, *shape)``): each update is a row view;
- a sequence of ``n`` arrays of one shape and dtype, read in place (never stacked);
- a sequence of ``n`` models, each a list of arrays with the same shapes (Flower's NDArrays);
  the answer is then a list of arrays of those shapes.

Torch/JAX CPU tensors and other DLPack or ``__array__`` objects are viewed without a copy
(:mod:`hierfed._interop` answers torch and JAX input in the caller's type).
A row is copied only when it is not contiguous in memory (e.g. ``X[:, ::2]``) or misaligned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._interop import dlpack_view
from ._kernels.numpy._rows import scale_weights

FloatArray = NDArray[np.floating[Any]]
Aggregate = FloatArray | list[FloatArray]
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Updates:
    """Validated updates: per segment (a layer, or the whole update), ``n`` 1-D rows.

    Attributes
    ----------
    segments
        ``segments[s][i]`` is update ``i``'s part ``s``, a 1-D C-contiguous view.
        Only non-empty parts are listed.
    shapes
        Output shape of every part, empty parts included.
    kind
        ``"array"``, ``"list"`` or ``"models"``: how the answer is returned.
    n, dtype
        Number of updates and their common dtype.
    """

    segments: list[list[FloatArray]]
    shapes: list[tuple[int, ...]]
    kind: Literal["array", "list", "models"]
    n: int
    dtype: np.dtype[Any]

    def new_outputs(self) -> list[FloatArray]:
        """Uninitialised flat outputs, one per non-empty part."""
        return [np.empty(rows[0].size, dtype=self.dtype) for rows in self.segments]

    def wrap(self, outs: Sequence[FloatArray]) -> Aggregate:
        """Shape kernel outputs like one input update."""
        flat = iter(outs)
        shaped = [
            next(flat).reshape(shape) if math.prod(shape) else np.empty(shape, self.dtype)
            for shape in self.shapes
        ]
        return shaped if self.kind == "models" else shaped[0]

    def take(self, indices: Sequence[int]) -> Updates:
        """The updates at ``indices``, in that order (views, no copy)."""
        return Updates(
            [[rows[i] for i in indices] for rows in self.segments],
            self.shapes,
            self.kind,
            len(indices),
            self.dtype,
        )

    def copy_of(self, i: int) -> Aggregate:
        """A copy of update ``i``, shaped like one input update."""
        return self.wrap([rows[i].copy() for rows in self.segments])

    def nonfinite_error(self, name: str = "updates") -> ValueError:
        """The error naming the first update that holds a NaN or an infinity."""
        for i in range(self.n):
            for rows in self.segments:
                if not np.isfinite(rows[i]).all():
                    return ValueError(
                        f"{name}[{i}] contains a non-finite value (nan or inf); "
                        "pass check_finite=False to skip this check"
                    )
        return ValueError(f"{name} contain a non-finite value")  # pragma: no cover


def refuse_masked(x: Any, where: str) -> None:
    """Refuse a numpy masked array: its data under the mask would be read as if valid."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{where} is a numpy masked array; its mask would be ignored: pass "
            "x.filled(value) or leave the masked entries out"
        )


def _as_array(x: Any, where: str) -> FloatArray:
    """View ``x`` as a numpy array without a copy where possible."""
    refuse_masked(x, where)
    if isinstance(x, np.ndarray):
        arr = x
    elif hasattr(x, "__dlpack__") and not isinstance(x, (list, tuple)):
        arr = dlpack_view(x, where)
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{where} is not an array: {exc}") from None
    if arr.dtype not in SUPPORTED_DTYPES:
        if arr.dtype.kind == "f" and arr.dtype.newbyteorder("=") in SUPPORTED_DTYPES:
            raise TypeError(
                f"{where} has non-native byte order {arr.dtype.str}; "
                "convert with x.astype(x.dtype.newbyteorder('='))"
            )
        if arr.dtype == object:
            raise TypeError(f"{where} is ragged or not numeric (object array)")
        raise TypeError(
            f"{where} has dtype {arr.dtype}; use float32 or float64 (e.g. x.astype(np.float32))"
        )
    canonical = SUPPORTED_DTYPES[SUPPORTED_DTYPES.index(arr.dtype)]
    if arr.dtype is not canonical:  # e.g. dtype("=f8") from newbyteorder: the kernels'
        arr = arr.view(canonical)  # bindings compare dtype objects, so view it as numpy's own
    return arr


def _flat_row(arr: FloatArray) -> FloatArray:
    """1-D C-contiguous, aligned view of ``arr``; a copy only when its memory is strided or
    misaligned (an array over a byte buffer at an odd offset: the kernels read it as T*)."""
    if arr.flags.c_contiguous and arr.flags.aligned:
        return arr.reshape(-1)
    return np.require(arr, requirements=["C", "A"]).reshape(-1)


def _is_model(x: Any) -> bool:
    """A model is a list of layer arrays; a list of numbers is one update."""
    return (
        isinstance(x, (list, tuple))
        and len(x) > 0
        and all(
            not isinstance(layer, np.generic)
            and (hasattr(layer, "shape") or hasattr(layer, "__array__"))
            for layer in x
        )
    )


def _check_same(arr: FloatArray, ref: FloatArray, where: str, ref_where: str) -> None:
    if arr.dtype != ref.dtype:
        raise TypeError(
            f"{where} has dtype {arr.dtype} but {ref_where} has {ref.dtype}; "
            "all updates must share one dtype"
        )
    if arr.shape != ref.shape:
        raise ValueError(
            f"{where} has shape {arr.shape} but {ref_where} has {ref.shape}; "
            "all updates must have the same shape"
        )


def as_updates(updates: Any, name: str = "updates") -> Updates:
    """Validate ``updates`` and view them as kernel segments (no copy of contiguous data).

    Raises
    ------
    TypeError
        Not an array or a sequence, a dtype other than float32/float64, or mixed dtypes.
    ValueError
        No updates, empty updates, or shapes that differ between updates.
    """
    if isinstance(updates, (str, bytes, dict)) or updates is None:
        raise TypeError(
            f"{name} must be an (n, d) array or a sequence of arrays, got {type(updates).__name__}"
        )
    if isinstance(updates, np.ndarray) or (
        hasattr(updates, "__dlpack__") and not isinstance(updates, (list, tuple))
    ):
        arr = _as_array(updates, name)
        if arr.ndim < 2:
            raise ValueError(
                f"{name} must be an (n, d) array or a sequence of n updates; got a "
                f"{arr.ndim}-D array (a single update)"
            )
        if arr.shape[0] == 0:
            raise ValueError(f"{name}: need at least 1 update, got 0")
        if arr.size == 0:
            raise ValueError(f"{name}: updates are empty (0 coordinates)")
        if arr.flags.c_contiguous and arr.flags.aligned:  # every row a view as it is
            rows = list(arr.reshape(arr.shape[0], -1))
        else:
            rows = [_flat_row(arr[i]) for i in range(arr.shape[0])]
        return Updates([rows], [arr.shape[1:]], "array", arr.shape[0], arr.dtype)
    if not isinstance(updates, Sequence):
        try:
            updates = list(updates)
        except TypeError:
            raise TypeError(
                f"{name} must be an (n, d) array or a sequence of arrays, "
                f"got {type(updates).__name__}"
            ) from None
    n = len(updates)
    if n == 0:
        raise ValueError(f"{name}: need at least 1 update, got 0")
    if _is_model(updates[0]):
        return _as_models(updates, name)
    first = _as_array(updates[0], f"{name}[0]")
    rows = [_flat_row(first)]
    for i in range(1, n):
        if _is_model(updates[i]):
            raise TypeError(f"{name}[{i}] is a list of layers but {name}[0] is a single array")
        arr = _as_array(updates[i], f"{name}[{i}]")
        _check_same(arr, first, f"{name}[{i}]", f"{name}[0]")
        rows.append(_flat_row(arr))
    if first.size == 0:
        raise ValueError(f"{name}: updates are empty (0 coordinates)")
    return Updates([rows], [first.shape], "list", n, first.dtype)


def _as_models(models: Sequence[Any], name: str) -> Updates:
    """Per-layer models (Flower's NDArrays): one segment per non-empty layer."""
    first = [_as_array(layer, f"{name}[0][{j}]") for j, layer in enumerate(models[0])]
    dtype = first[0].dtype
    for j, layer in enumerate(first):
        if layer.dtype != dtype:
            raise TypeError(
                f"{name}[0][{j}] has dtype {layer.dtype} but {name}[0][0] has {dtype}; "
                "all layers must share one dtype"
            )
    columns: list[list[FloatArray]] = [[_flat_row(layer)] for layer in first]
    for i in range(1, len(models)):
        model = models[i]
        if not _is_model(model):
            raise TypeError(f"{name}[{i}] is not a list of layers but {name}[0] is")
        if len(model) != len(first):
            raise ValueError(f"{name}[{i}] has {len(model)} layers but {name}[0] has {len(first)}")
        for j, layer in enumerate(model):
            arr = _as_array(layer, f"{name}[{i}][{j}]")
            _check_same(arr, first[j], f"{name}[{i}][{j}]", f"{name}[0][{j}]")
            columns[j].append(_flat_row(arr))
    if sum(layer.size for layer in first) == 0:
        raise ValueError(f"{name}: updates are empty (0 coordinates)")
    segments = [col for col in columns if col[0].size]
    return Updates(segments, [layer.shape for layer in first], "models", len(models), dtype)


def as_weights(weights: Any, n: int, name: str = "weights") -> NDArray[np.float64] | None:
    """Validate per-update weights: length ``n``, finite, non-negative, not all zero.

    Returns them scaled by a power of two so that the largest lies in ``[0.5, 1)``.
    """
    if weights is None:
        return None
    refuse_masked(weights, name)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of {n} real numbers") from None
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{name}: need one weight per update ({n}), got shape {w.shape}")
    low, top = float(w.min()), float(w.max())  # NaN in both; one test passes every valid w
    if not (low >= 0.0 and top < math.inf):
        bad = np.flatnonzero(~np.isfinite(w))
        if bad.size:
            raise ValueError(f"{name} must be finite; {name}[{bad[0]}] = {w[bad[0]]}")
        neg = np.flatnonzero(w < 0)
        raise ValueError(f"{name} must be >= 0; {name}[{neg[0]}] = {w[neg[0]]}")
    if top <= 0:
        raise ValueError(f"{name} are all zero; at least one must be positive")
    return scale_weights(w, top)


def as_point(point: Any, upd: Updates, name: str) -> list[FloatArray]:
    """Validate ``point`` as one update like those of ``upd``: its kernel segments.

    ``point`` is an array shaped like one update (a list of layer arrays for per-layer
    updates); it is converted to the updates' dtype. Raises TypeError or ValueError naming
    ``name`` when it does not fit, or holds a NaN or infinity.
    """
    if upd.kind == "models":
        if not _is_model(point) or len(point) != len(upd.shapes):
            raise TypeError(f"{name} must be a list of {len(upd.shapes)} layer arrays")
        for j, layer in enumerate(point):
            refuse_masked(layer, f"{name}[{j}]")
        layers = [np.asarray(layer) for layer in point]
    else:
        refuse_masked(point, name)
        layers = [np.asarray(point)]
    parts = []
    for j, (layer, shape) in enumerate(zip(layers, upd.shapes, strict=True)):
        where = name if upd.kind != "models" else f"{name}[{j}]"
        if layer.dtype.kind not in "fiu":
            raise TypeError(f"{where} must be a real array, got dtype {layer.dtype}")
        if layer.shape != shape:
            raise ValueError(f"{where} has shape {layer.shape}; the updates have {shape}")
        if not np.isfinite(layer).all():
            raise ValueError(f"{where} contains a non-finite value (nan or inf)")
        if layer.size:
            parts.append(np.require(layer, upd.dtype, ["C", "A"]).reshape(-1))
    return parts
