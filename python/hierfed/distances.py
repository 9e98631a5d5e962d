"""Exact squared distances between updates, and from every update to a point.

The kernels square and sum the differences themselves, never ``|x|^2 + |y|^2 - 2 x.y``
(which loses every digit when updates share a large offset). float32 updates are summed in
float32 over runs of 8 terms per lane and in float64 beyond (relative error below 1e-6 for any
input); the order of every operation is fixed by a plan that depends only on the shape of the
input, so every backend, instruction set and thread count gives the same bits, and selections
built on the distances (Krum, Bulyan, NNM) agree exactly.

Pairs the float32 path cannot represent (squares past 3.4e38, or sums so small that float32
underflow could matter) are recomputed in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import _backend
from ._docstrings import fill_doc
from ._inputs import FloatArray, Updates, as_updates
from ._interop import tensor_io

__all__ = ["pairwise_sq_distances"]

_ROW_BYTES = 4096  # one chunk of a row: four of them (a tile's first side) stay in L1
_RUN = 128  # the float32 run of the recipe; chunks are multiples of it
_MAX_UNITS = 32  # units of work summed in order (threads take whole units and row groups)
_TINY = 2.0**-100  # float32 sums below d * _TINY may have lost digits to underflow
_FALLBACK_BLOCK = 1 << 16


def plan(n: int, lens: list[int], itemsize: int) -> tuple[int, int]:
    """``(chunk, n_units)`` of the summation recipe for ``n`` rows of segments ``lens``.

    A chunk is 4 KiB of a row (1024 float32 or 512 float64 coordinates). Units split the
    chunks so that threads have work at small ``n``; their partial sums (one float64 per pair
    each) stay within a thirty-second of the input (at least 1 MiB), so at large ``n`` there is
    one unit and the threads split the pairs instead.
    """
    chunk = max(_RUN, _ROW_BYTES // itemsize // _RUN * _RUN)
    n_chunks = sum(-(-length // chunk) for length in lens)
    pairs = max(1, n * (n - 1) // 2)
    budget = max(n * sum(lens) * itemsize // 32, 1 << 20)
    n_units = max(1, min(n_chunks, _MAX_UNITS, budget // (8 * pairs)))
    return chunk, n_units


def _pair_fallback(upd: Updates, i: int, j: int) -> float:
    """Squared distance of updates ``i`` and ``j`` in float64 (numpy's pairwise sums)."""
    total = 0.0
    for rows in upd.segments:
        a, b = rows[i], rows[j]
        for c in range(0, a.size, _FALLBACK_BLOCK):
            diff = a[c : c + _FALLBACK_BLOCK].astype(np.float64)
            diff -= b[c : c + _FALLBACK_BLOCK]
            with np.errstate(over="ignore"):  # the caller reports an overflow
                total += float(np.add.reduce(diff * diff))
    return total


def pairwise(upd: Updates, check_finite: bool = True) -> NDArray[np.float64]:
    """The ``(n, n)`` squared distances of validated updates (see :func:`pairwise_sq_distances`)."""
    n = upd.n
    out = np.zeros((n, n))
    if n == 1:
        if check_finite and not all(np.isfinite(rows[0]).all() for rows in upd.segments):
            raise upd.nonfinite_error()
        return out
    lens = [rows[0].size for rows in upd.segments]
    chunk, n_units = plan(n, lens, upd.dtype.itemsize)
    kernel = _backend.kernels().pairwise_sq_distances
    kernel(upd.segments, out, chunk, n_units, _backend.get_num_threads())
    bad = ~np.isfinite(out)
    if bad.any() and any(not np.isfinite(r).all() for rows in upd.segments for r in rows):
        if check_finite:
            raise upd.nonfinite_error()
        return out  # undefined for non-finite input, as documented
    if upd.dtype == np.float32:
        bad |= out < sum(lens) * _TINY
        np.fill_diagonal(bad, False)
    for i, j in zip(*np.nonzero(np.triu(bad)), strict=True):
        out[i, j] = out[j, i] = _pair_fallback(upd, int(i), int(j))
    if not np.isfinite(out).all():
        raise ValueError("updates: squared distances overflow float64 (values near 1e154)")
    return out


@tensor_io("updates")
@fill_doc
def pairwise_sq_distances(updates: Any, *, check_finite: bool = True) -> NDArray[np.float64]:
    """Squared Euclidean distances between all pairs of updates, exact to float rounding.

    Parameters
    ----------
    updates
        An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models
        (the distance runs over every layer).
    %(check_finite)s

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` float64, symmetric bit for bit, zero diagonal; within 1e-6 relative of the
        float64 distances (float32 input) or to float64 rounding (float64 input).
    """
    return pairwise(as_updates(updates), check_finite)


def to_point(upd: Updates, point: list[FloatArray]) -> NDArray[np.float64]:
    """Squared distance of every update to ``point`` (its segments), in float64."""
    out = np.empty(upd.n)
    _backend.kernels().sq_distances_to(upd.segments, point, out, _backend.get_num_threads())
    return out
