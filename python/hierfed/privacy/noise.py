"""Noise added in place to arrays and per-layer models, from a :class:`NoiseGenerator`."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from .. import _checks
from .._interop import tensor_io
from .rng import _LAPLACE, _NORMAL, NoiseGenerator

__all__ = ["add_gaussian_noise", "add_laplace_noise"]

X = TypeVar("X")  # the caller's array, tensor or per-layer list: noised and returned


def _arrays(x: Any) -> list[np.ndarray[Any, Any]]:
    """The float arrays of ``x`` (an array, or a list/tuple of arrays: a per-layer model)."""
    parts = list(x) if isinstance(x, (list, tuple)) else [x]
    if not parts:
        raise ValueError("x must hold at least one array")
    for i, a in enumerate(parts):
        where = "x" if not isinstance(x, (list, tuple)) else f"x[{i}]"
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{where} must be a numpy array, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{where} has dtype {a.dtype}; noise goes into float32 or float64")
        if not a.flags.writeable:
            raise ValueError(f"{where} must be writeable (noise is added in place)")
    return parts


def _add(x: X, kind: int, scale: float, generator: NoiseGenerator | None) -> X:
    gen = NoiseGenerator() if generator is None else generator
    if not isinstance(gen, NoiseGenerator):
        raise TypeError(f"generator must be a NoiseGenerator, got {type(gen).__name__}")
    for a in _arrays(x):
        if a.flags.c_contiguous and a.flags.aligned:
            gen._noise_into(a.reshape(-1), kind, 0.0, scale, accumulate=True)
        else:  # the same values: the sum is formed in float64 and rounded once
            tmp = np.require(a, np.float64, ["C", "A"]).reshape(-1)  # a copy
            gen._noise_into(tmp, kind, 0.0, scale, accumulate=True)
            a[...] = tmp.reshape(a.shape)
    return x


@tensor_io("x", writes="x")
def add_gaussian_noise(x: X, sigma: float, generator: NoiseGenerator | None = None) -> X:
    """Add ``N(0, sigma^2)`` noise to every value of ``x`` in place and return ``x``.

    Parameters
    ----------
    x
        A float32/float64 array, or a list of them (a per-layer model); each value becomes
        ``x + sigma z``, formed in float64 and rounded once.
    sigma
        Standard deviation, >= 0.
    generator
        The noise source; default a fresh secure :class:`NoiseGenerator`.

    Notes
    -----
    Float noise leaks through its low bits (Mironov 2012); for exact privacy add
    ``NoiseGenerator.discrete_gaussian`` noise to fixed-point integers instead.
    """
    return _add(x, _NORMAL, _checks.non_negative(sigma, "sigma"), generator)


@tensor_io("x", writes="x")
def add_laplace_noise(x: X, scale: float, generator: NoiseGenerator | None = None) -> X:
    """Add Laplace(0, ``scale``) noise to every value of ``x`` in place and return ``x``."""
    return _add(x, _LAPLACE, _checks.non_negative(scale, "scale"), generator)
