"""Search recorded payload bytes for a known vector: as float32 / float64 values and as
fixed-point integers (scaled by 1/gamma and rounded, compared mod 2^32: int32 and uint32 alike),
at every byte alignment, tolerant of rounding (a window of consecutive values, each within
``tol``, is a hit)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

WINDOW = 6
STARTS = 4


def _starts(target: np.ndarray, floor: float) -> list[int]:
    """Up to STARTS window starts whose values all exceed ``floor`` in size (a window of
    zeros or tiny values would match unrelated padding)."""
    big = np.abs(target) > floor
    ok = [q for q in range(len(target) - WINDOW + 1) if big[q : q + WINDOW].all()]
    if len(ok) <= STARTS:
        return ok
    return [ok[i] for i in np.linspace(0, len(ok) - 1, STARTS).astype(int)]


def _hit(view: np.ndarray, target: np.ndarray, starts: list[int], close: object) -> bool:
    for q in starts:
        window = target[q : q + WINDOW]
        first = np.flatnonzero(close(view[: len(view) - WINDOW + 1], window[0]))  # type: ignore[operator]
        for p in first:
            if close(view[p : p + WINDOW], window).all():  # type: ignore[operator]
                return True
    return False


def _views(raw: bytes, dtype: str) -> Iterable[np.ndarray]:
    size = np.dtype(dtype).itemsize
    for offset in range(size):
        count = (len(raw) - offset) // size
        if count >= WINDOW:
            yield np.frombuffer(raw, dtype, count, offset)


def contains_float(raw: bytes, vector: np.ndarray, rtol: float = 1e-5) -> bool:
    """Whether ``raw`` holds a window of ``vector`` as float32 or float64 values."""
    target = np.asarray(vector, np.float64)
    starts = _starts(target, 1e-6)
    assert starts, "the vector has no window of non-negligible values to search for"

    def close(v: np.ndarray, t: object) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return np.abs(v.astype(np.float64) - t) <= rtol * np.abs(t)  # type: ignore[operator]

    return any(
        _hit(view, target, starts, close) for dt in ("<f4", "<f8") for view in _views(raw, dt)
    )


def contains_fixed(raw: bytes, integers: np.ndarray, tol: int) -> bool:
    """Whether ``raw`` holds a window of ``integers`` as 32-bit words (mod 2^32), each within
    ``tol``."""
    target = np.asarray(integers, np.int64)
    starts = _starts(target, 2 * tol + 1)
    assert starts, "the integers have no window of large enough values to search for"

    def close(v: np.ndarray, t: object) -> np.ndarray:
        d = (v.astype(np.int64) - t + (1 << 31)) % (1 << 32) - (1 << 31)  # type: ignore[operator]
        return np.abs(d) <= tol

    return any(_hit(view, target, starts, close) for view in _views(raw, "<u4"))
