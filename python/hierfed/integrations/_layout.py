"""Named arrays (a model's layers) to one flat vector and back.

:class:`ArrayLayout` records the names, shapes and dtypes of a model's arrays and where each
floating-point array sits in one flat vector: the form every hierfed rule and the federation
take (one vector per client). Arrays that are not floating point (e.g. a batch-norm's step
counter) are not aggregated: they stay out of the vector and :meth:`ArrayLayout.restore`
takes them from a reference model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ArrayLayout"]

Arrays = Mapping[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class ArrayLayout:
    """Where each named array of a model sits in one flat vector.

    Attributes
    ----------
    names, shapes, dtypes
        Every array of the model, in order.
    offsets
        Start of each array in the vector; ``-1`` for arrays that are not floating point.
    dtype
        The vector's dtype: float64 if any array is float64, else float32.
    size
        The vector's length.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype[Any], ...]
    offsets: tuple[int, ...]
    dtype: np.dtype[Any]
    size: int

    @classmethod
    def of(cls, arrays: Arrays) -> ArrayLayout:
        """The layout of ``arrays`` (a mapping name -> array, in the model's order)."""
        if not arrays:
            raise ValueError("the model has no arrays")
        names, shapes, dtypes, offsets = [], [], [], []
        size, wide = 0, False
        for name, value in arrays.items():
            arr = np.asarray(value)
            names.append(str(name))
            shapes.append(tuple(arr.shape))
            dtypes.append(arr.dtype)
            if arr.dtype.kind == "f":
                offsets.append(size)
                size += arr.size
                wide |= arr.dtype.itemsize > 4
            else:
                offsets.append(-1)
        if size == 0:
            raise ValueError("the model has no floating-point values to aggregate")
        dtype = np.dtype(np.float64 if wide else np.float32)
        return cls(tuple(names), tuple(shapes), tuple(dtypes), tuple(offsets), dtype, size)

    def check(self, arrays: Arrays, where: str = "model") -> None:
        """Raise ``ValueError`` unless ``arrays`` has this layout's names, shapes and dtypes."""
        keys = [str(k) for k in arrays]
        if keys != list(self.names):
            missing = sorted(set(self.names) - set(keys))
            extra = sorted(set(keys) - set(self.names))
            raise ValueError(
                f"{where} has arrays {keys[:4]}...; expected {list(self.names)[:4]}... "
                f"(missing {missing[:3]}, unexpected {extra[:3]}, or another order)"
            )
        for name, shape, dtype in zip(self.names, self.shapes, self.dtypes, strict=True):
            arr = np.asarray(arrays[name])
            if arr.shape != shape or arr.dtype != dtype:
                raise ValueError(
                    f"{where}[{name!r}] is {arr.shape} {arr.dtype}; expected {shape} {dtype}"
                )

    def flatten(self, arrays: Arrays, where: str = "model") -> np.ndarray[Any, Any]:
        """The floating-point arrays of ``arrays`` concatenated into a new vector."""
        self.check(arrays, where)
        out = np.empty(self.size, self.dtype)
        for name, shape, offset in zip(self.names, self.shapes, self.offsets, strict=True):
            if offset >= 0:
                n = math.prod(shape)
                out[offset : offset + n] = np.asarray(arrays[name]).reshape(-1)
        return out

    def parts(self, vector: Any) -> dict[str, np.ndarray[Any, Any]]:
        """Views of ``vector``'s pieces, each shaped like its array (floating-point ones)."""
        vec = np.asarray(vector)
        if vec.shape != (self.size,):
            raise ValueError(f"vector has shape {vec.shape}; the layout needs ({self.size},)")
        return {
            name: vec[offset : offset + math.prod(shape)].reshape(shape)
            for name, shape, offset in zip(self.names, self.shapes, self.offsets, strict=True)
            if offset >= 0
        }

    def restore(self, vector: Any, reference: Arrays) -> dict[str, np.ndarray[Any, Any]]:
        """The named arrays of ``vector`` in their own dtypes (new arrays, the model's order);
        arrays that are not floating point are copied from ``reference``."""
        parts = self.parts(vector)
        out = {}
        for name, dtype in zip(self.names, self.dtypes, strict=True):
            source = parts[name] if name in parts else np.asarray(reference[name])
            out[name] = np.array(source, dtype=dtype, copy=True)
        return out
