"""What every numba twin shares: the jit settings, row addresses and views, thread splits.

The kernels read the rows in place through their addresses, collected and checked here
(1-D, C-contiguous, the outputs' dtype and length): no copy, no stacking. One parallel region
covers every segment, split into blocks of coordinates over ``n_threads`` threads (one thread
for a small input, where waking a second costs more than it saves). Kernels compile on first
use, once per dtype, and are cached on disk (``cache=True``, when numba finds a writable cache
directory for these files).

The C++ side of the same jobs: ``cpp/include/hierfed/views.hpp`` (segments of row pointers),
``cpp/include/hierfed/threads.hpp`` (the fork-join) and ``cpp/src/batch.hpp`` (the checks).
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import numba
import numpy as np
from numba.core import types
from numba.core.errors import NumbaError
from numba.extending import intrinsic
from numba.np.numpy_support import carray

from .._types import IntArray, Outs, Rows, Segments

__all__ = [
    "Segs",
    "addresses",
    "block_starts",
    "blocks",
    "checked_address",
    "chunk",
    "input_addresses",
    "jit",
    "jit_inline",
    "jit_parallel",
    "locate",
    "matrix_addresses",
    "tiling",
    "use_threads",
    "view",
]

_ADDRESS_CHUNK = 16  # rows per call of _row_addresses
_MIN_PARALLEL_WORK = 1 << 16  # values below which one thread is used


def _cache_probe() -> None:
    """Nothing: decorated with ``cache=True`` to learn whether these files' kernels can be."""


def _can_cache() -> bool:
    """Whether numba finds a writable cache directory for this file (it raises if not)."""
    try:
        numba.njit(cache=True)(_cache_probe)
    except RuntimeError:  # e.g. a read-only install and no writable user cache directory
        return False
    return True


CACHE = _can_cache()
# error_model="numpy": x / 0 gives inf or nan as in numpy (no exception path), which vectorises
jit = numba.njit(cache=CACHE, nogil=True, fastmath=False, error_model="numpy")
jit_parallel = numba.njit(
    cache=CACHE, nogil=True, fastmath=False, error_model="numpy", parallel=True
)
jit_inline = numba.njit(
    cache=CACHE, nogil=True, fastmath=False, error_model="numpy", inline="always"
)
_CPointer: Any = types.CPointer  # untyped in numba's stubs
_config: Any = numba.config  # its settings are set dynamically
# What use_threads last gave numba.set_num_threads in this thread (numba's setting is
# per thread). The kernels split their work by the count they are passed, so a count someone
# else set meanwhile changes only how many of numba's threads wake, never a result.
_threads_set = threading.local()


def _as_pointer_typing(typingctx: Any, address: Any, like: Any) -> Any:
    """Reinterpret the integer ``address`` as a pointer to elements of ``like``'s dtype."""
    pointer = _CPointer(like.dtype)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(pointer))

    return pointer(address, like), codegen


_as_pointer: Any = intrinsic(_as_pointer_typing)


@jit
def view(address: int, start: int, length: int, like: Any) -> Any:
    """The ``length`` elements from element ``start`` of the array at ``address``."""
    return carray(_as_pointer(address + start * like.itemsize, like), length)


@jit
def block_starts(lens: Any, block: int) -> Any:
    """Segment ``s`` owns blocks ``starts[s]`` to ``starts[s + 1]`` of ``block`` coordinates."""
    starts = np.zeros(lens.size + 1, np.int64)
    for s in range(lens.size):
        starts[s + 1] = starts[s] + (lens[s] + block - 1) // block
    return starts


@jit
def blocks(lens: Any, block: int, n_threads: int) -> tuple[Any, int, int]:
    """:func:`block_starts`, the number of blocks and the threads they go to."""
    starts = block_starts(lens, block)
    nb = starts[-1]
    return starts, nb, min(nb, n_threads)


@jit_inline
def chunk(c: int, total: int, n_chunks: int) -> range:
    """The items (blocks, rows) of chunk ``c`` when ``total`` are split into ``n_chunks``."""
    return range(c * total // n_chunks, (c + 1) * total // n_chunks)


@jit_inline
def tiling(segs: Any, block: int, n_threads: int) -> tuple[Any, Any, Any, Any, int, int]:
    """A kernel's opening: its segments' row and output addresses, lengths, and :func:`blocks`."""
    ptrs, optrs, lens = segs
    starts, nb, nch = blocks(lens, block, n_threads)
    return ptrs, optrs, lens, starts, nb, nch


@jit_inline
def locate(b: int, starts: Any, lens: Any, block: int) -> tuple[int, int, int]:
    """Block ``b``'s segment (the last whose first block is at most ``b``), first coordinate
    and length."""
    s = int(np.searchsorted(starts, b, side="right")) - 1
    j0 = (b - starts[s]) * block
    return s, j0, min(block, lens[s] - j0)


@jit
def _row_addresses(rows: Any, count: int, length: int, ptrs: Any, at: int) -> bool:
    """Store the data addresses of ``rows[:count]`` (a tuple) from ``ptrs[at]`` on.

    False when one of them is not a C-contiguous array of ``length`` elements. Unboxing a
    tuple of arrays in compiled code costs a fraction of reading each address in Python.
    """
    ok = True
    for i in range(count):
        x = rows[i]
        ptrs[at + i] = x.ctypes.data
        ok &= (x.size == length) & x.flags.c_contiguous
    return ok


def checked_address(row: Any, dtype: np.dtype[Any], length: int, where: str) -> int:
    """The data address of ``row`` after checking its dtype, shape and memory layout."""
    face = getattr(row, "__array_interface__", None)
    if (
        face is None
        or face["shape"] != (length,)
        or face["strides"] not in (None, (dtype.itemsize,))
        or np.dtype(face["typestr"]) != dtype
    ):
        raise ValueError(f"{where} must be a 1-D C-contiguous {dtype} array of length {length}")
    return int(face["data"][0])


def _segment_addresses(
    rows: Rows, s: int, dtype: np.dtype[Any], length: int, ptrs: IntArray
) -> None:
    """Check segment ``s``'s rows and store their addresses at ``ptrs[s * n:]``.

    Rows go to :func:`_row_addresses` in tuples of ``_ADDRESS_CHUNK`` (one compiled signature
    per dtype); a tuple it cannot take (rows of mixed flags, non-arrays) falls back to checking
    each row in Python. ``ptrs`` has room for a padded last tuple.
    """
    n = len(rows)
    chunk = _ADDRESS_CHUNK
    for row in rows:
        if not isinstance(row, np.ndarray) or row.dtype != dtype:
            raise ValueError(f"rows of segment {s} must be {dtype} arrays")
    for q in range(0, n, chunk):
        part = tuple(rows[q : q + chunk])
        count = len(part)
        if count < chunk:
            part += (part[0],) * (chunk - count)
        try:
            ok = _row_addresses(part, count, length, ptrs, s * n + q)
        except (NumbaError, TypeError, ValueError):
            ok = False
        if not ok:
            for i in range(count):
                where = f"segments[{s}][{q + i}]"
                ptrs[s * n + q + i] = checked_address(part[i], dtype, length, where)


class Segs(NamedTuple):
    """The segments as the kernels see them (``views.hpp``'s ``Segment``, for all at once)."""

    ptrs: IntArray  # row i of segment s at ptrs[s * n + i]
    optrs: IntArray  # the output of segment s at optrs[s]
    lens: IntArray  # the length of segment s


def addresses(segments: Segments, outs: Outs) -> tuple[int, Segs]:
    """``n`` and the row and output addresses and segment lengths, every array checked.

    The kernels read raw memory, so a row of the wrong length, dtype or layout must never
    reach them.
    """
    if len(segments) != len(outs):
        raise ValueError(f"{len(segments)} segments but {len(outs)} outputs")
    n = len(segments[0])
    dtype = np.dtype(outs[0].dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"kernels take float32 or float64 arrays, got {dtype}")
    ptrs = np.empty(len(segments) * n + _ADDRESS_CHUNK, np.int64)  # room for a padded tuple
    optrs = np.empty(len(outs), np.int64)
    lens = np.empty(len(outs), np.int64)
    for s, (rows, out) in enumerate(zip(segments, outs, strict=True)):
        length = out.size
        optrs[s] = checked_address(out, dtype, length, f"outs[{s}]")
        if not out.flags.writeable:
            raise ValueError(f"outs[{s}] must be writeable")
        lens[s] = length
        if len(rows) != n:
            raise ValueError(f"segment {s} has {len(rows)} rows, segment 0 has {n}")
        _segment_addresses(rows, s, dtype, length, ptrs)
    return n, Segs(ptrs, optrs, lens)


def matrix_addresses(x: Any, out: Any) -> tuple[int, Segs]:
    """:func:`addresses` of one plain ``(n, d)`` matrix (C-contiguous, aligned, float32 or
    float64: ``plain_matrix``) as one segment and its fresh ``(d,)`` output of the same dtype:
    its rows lie at a fixed stride, so no row needs a check of its own."""
    n, d = x.shape
    if not (x.flags.c_contiguous and out.shape == (d,) and out.dtype == x.dtype):
        raise ValueError("matrix_addresses takes a C-contiguous matrix and a row-sized output")
    # __array_interface__ and one arange: about 4 us of a small call less than ctypes.data
    base, stride = x.__array_interface__["data"][0], d * x.itemsize
    ptrs = np.arange(base, base + (n + _ADDRESS_CHUNK) * stride, stride, dtype=np.int64)
    optrs = np.array([out.__array_interface__["data"][0]], np.int64)
    return n, Segs(ptrs, optrs, np.array([d], np.int64))


def input_addresses(segments: Segments) -> tuple[int, IntArray, IntArray, np.dtype[Any]]:
    """``n``, the row addresses, the segment lengths and the dtype, every row checked.

    As :func:`addresses` for kernels without per-segment outputs: the dtype is the first
    row's and the length of segment ``s`` that of its first row, which every row must share.
    """
    n = len(segments[0])
    for s, rows in enumerate(segments):
        if len(rows) != n:
            raise ValueError(f"segment {s} has {len(rows)} rows, segment 0 has {n}")
    lens = np.zeros(len(segments), np.int64)
    if n == 0:
        return 0, np.empty(0, np.int64), lens, np.dtype(np.float64)
    first = segments[0][0]
    if not isinstance(first, np.ndarray) or first.dtype not in (np.float32, np.float64):
        raise TypeError(f"kernels take float32 or float64 arrays, got {type(first).__name__}")
    dtype = np.dtype(first.dtype)
    ptrs = np.empty(len(segments) * n + _ADDRESS_CHUNK, np.int64)  # room for a padded tuple
    for s, rows in enumerate(segments):
        lens[s] = rows[0].size
        _segment_addresses(rows, s, dtype, int(lens[s]), ptrs)
    return n, ptrs, lens, dtype


def use_threads(
    n_threads: int, work: int, small: int = _MIN_PARALLEL_WORK, units: int | None = None
) -> int:
    """Set and return the threads of the next kernel: ``n_threads``, at most numba's pool and
    ``units`` (the pieces of work there are), and one when ``work`` (values) is below
    ``small``, where waking a second thread costs more than it saves."""
    used = max(1, min(int(n_threads), int(_config.NUMBA_NUM_THREADS)))
    if units is not None:
        used = max(1, min(used, units))
    if work < small:
        used = 1
    if getattr(_threads_set, "value", None) != used:  # numba's setter costs 2 us a call
        numba.set_num_threads(used)
        _threads_set.value = used
    return used
