"""Hostile and odd inputs for the harnesses: shapes (0 and 1 included), dtypes, strides,
alignment, NaN/inf, huge and denormal values, bad weights and bad parameters."""

from __future__ import annotations

from typing import Any

import numpy as np
from _data import Data

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
ODD_DTYPES = (
    np.dtype(np.float16),
    np.dtype(np.int32),
    np.dtype(np.int64),
    np.dtype(np.uint8),
    np.dtype(np.complex128),
    np.dtype(np.bool_),
    np.dtype(">f8"),
    np.dtype(">f4"),
    np.dtype(object),
)
SPECIALS = (np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, 1.4e-45, 1e-310, 1e-38, 3.3e38, 1e308)


def dtype(data: Data) -> np.dtype[Any]:
    """float32/float64 mostly; now and then a dtype the API must refuse."""
    return data.pick(ODD_DTYPES) if data.chance(24) else data.pick(FLOATS)


def values(data: Data, shape: tuple[int, ...], dt: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """Values of one regime (normal, ties, offset, huge, tiny, raw bits) plus a few specials."""
    size = int(np.prod(shape))
    rng = data.rng()
    regime = data.int(0, 7)
    if regime == 0:
        x = rng.standard_normal(size) * 10.0 ** data.int(-3, 3)
    elif regime == 1:  # ties everywhere: the order statistics' and selections' hard case
        x = rng.integers(-2, 3, size).astype(np.float64)
    elif regime == 2:  # a shared offset: |x|^2 + |y|^2 - 2xy would lose every digit
        x = 10.0 ** data.int(3, 9) + rng.standard_normal(size)
    elif regime == 3:  # near the dtype's maximum
        top = 3.4e38 if dt == np.float32 else 1.7e308
        x = rng.uniform(-1.0, 1.0, size) * top * 10.0 ** -data.int(0, 2)
    elif regime == 4:  # denormal and tiny
        x = rng.standard_normal(size) * (1e-42 if dt == np.float32 else 1e-315)
    elif regime == 5:  # any bit pattern of the dtype
        width = np.dtype(np.float32 if dt == np.float32 else np.float64)
        with np.errstate(all="ignore"):
            x = np.frombuffer(rng.bytes(size * width.itemsize), width).astype(np.float64)
    elif regime == 6:  # a few clients far away (Byzantine-like) among normal ones
        x = rng.standard_normal(size)
        x[rng.random(size) < 0.2] = 1e6 * (data.int(0, 1) * 2 - 1)
    else:
        x = np.full(size, data.pick((0.0, 1.0, -2.5, 1e-300)))
    for _ in range(data.int(0, 2) if data.chance(3) else 0):
        if size:
            x[data.int(0, size - 1)] = data.pick(SPECIALS) * data.pick((1, -1))
    with np.errstate(all="ignore"):
        if dt.kind in "fc":
            return x.reshape(shape).astype(dt)
        if dt.kind == "O":
            return x.reshape(shape).astype(object)
        return np.nan_to_num(x).clip(-100, 100).reshape(shape).astype(dt)


def layout(data: Data, a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The same values in C order, Fortran order, strided, reversed, unaligned or read-only."""
    kind = data.int(0, 9)
    if kind == 1 and a.ndim >= 1:
        out = np.empty((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)[..., ::2]
        out[...] = a
        return out
    if kind == 2:
        return np.asfortranarray(a)
    if kind == 3 and a.ndim >= 1:
        return a[::-1].copy()[::-1]
    if kind == 4 and a.dtype.kind in "fiu" and a.dtype.itemsize > 1:
        return layout_unaligned(a)
    if kind == 5:
        b = a.copy()
        b.flags.writeable = False
        return b
    return np.ascontiguousarray(a)


def layout_unaligned(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A C-contiguous copy of ``a`` at an odd address."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def shape(data: Data) -> tuple[int, ...]:
    """The shape of one update (empty and 1-element shapes included; sometimes large)."""
    if data.chance(40):
        return (data.int(8192, 40000),)
    kind = data.int(0, 5)
    if kind == 0:
        return (data.int(0, 2),)
    if kind == 1:
        return (data.int(1, 3), data.int(0, 7))
    if kind == 2:
        return ()
    return (data.int(1, 40),)


def updates(data: Data, n_max: int = 12) -> Any:
    """Updates in any accepted form (array, list of arrays, list of models) or a broken one."""
    n = data.int(0, n_max) if data.chance(4) else data.int(1, min(n_max, 9))
    dt = dtype(data)
    form = data.int(0, 5)
    if form == 0:  # one (n, ...) array
        return layout(data, values(data, (n, *shape(data)), dt))
    if form <= 3:  # a list of n arrays of one shape (values drawn at once: faster)
        block = values(data, (n, *shape(data)), dt)
        rows = [layout(data, block[i, ...]) for i in range(n)]
        if n and data.chance(20):  # one of another shape or dtype
            i = data.int(0, n - 1)
            rows[i] = values(data, shape(data), dtype(data))
        return rows if data.int(0, 3) else tuple(rows)
    shapes = [shape(data) for _ in range(data.int(1, 3))]  # per-layer models
    layers = [values(data, (n, *s), dt) for s in shapes]
    models = [[layout(data, layer[i, ...]) for layer in layers] for i in range(n)]
    if n and data.chance(20):
        models[data.int(0, n - 1)].pop()
    return models


def n_of(u: Any) -> int:
    """The number of updates of ``u`` (whatever its form)."""
    return int(u.shape[0]) if isinstance(u, np.ndarray) and u.ndim else len(u)


def weights(data: Data, n: int) -> Any:
    """None, fine weights, or broken ones (negative, NaN, all zero, wrong length, huge)."""
    kind = data.int(0, 11)
    rng = data.rng()
    if kind <= 2:
        return None
    if kind <= 5:
        return rng.uniform(0.0, 2.0, n)
    if kind == 6:  # some zero
        w = rng.integers(0, 2, n).astype(np.float64)
        return list(w)
    if kind == 7:
        w = rng.uniform(0.0, 1.0, n) * 10.0 ** data.int(-320, 308)
        return w
    if kind == 8:
        w = np.ones(n)
        if n:
            w[data.int(0, n - 1)] = data.pick((-1.0, np.nan, np.inf, -0.0, 1e308, 5e-324))
        return w
    if kind == 9:
        return np.ones(max(0, n + data.pick((-1, 1))))
    if kind == 10:
        return np.zeros(n)
    return data.pick((np.ones((n, 1)), "abc", [1] * n, [True] * n, np.ones(n, np.float32)))


def count(data: Data, n: int) -> Any:
    """An int near the valid range, or a value of the wrong type."""
    if data.chance(12):
        return data.pick((None, 1.5, True, "2", np.int64(1), np.float64(1.0), 2**70, -(2**70)))
    return data.int(-2, n + 2)


def real(data: Data) -> Any:
    """A real parameter: usually reasonable, sometimes zero, negative, NaN, inf or not a number."""
    kind = data.int(0, 9)
    if kind <= 5:
        return 10.0 ** (data.int(-80, 80) / 10.0)
    if kind == 6:
        return data.float64()
    if kind == 7:
        return data.pick((0.0, -1.0, np.nan, np.inf, 5e-324, 1e308, 0))
    if kind == 8:
        return data.pick((np.float32(0.5), np.int64(3), 2))
    return data.pick((None, "1", True, [1.0], 1j))


def clone(x: Any) -> Any:
    """A deep copy of arrays and lists of arrays that keeps each array's writeable flag."""
    if isinstance(x, np.ndarray):
        y = x.copy()
        if not x.flags.c_contiguous:  # strided like x
            y = np.empty((*x.shape, 2), x.dtype)[..., 0]
            y[...] = x
        if not x.flags.aligned:
            y = layout_unaligned(y)
        y.flags.writeable = x.flags.writeable
        return y
    if isinstance(x, (list, tuple)):
        return type(x)(clone(v) for v in x)
    return x
