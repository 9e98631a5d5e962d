"""Numba twin of the secure-aggregation masks kernel: the keystreams of many keys added and
subtracted into a uint32 vector in one pass.

Twins: ``cpp/include/hierfed/masks.hpp`` (bound in ``cpp/src/bind_secagg.cpp``) and
:mod:`hierfed._kernels.numpy.masks` (the definition).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._types import Words
from ..stream_checks import check_out, check_words
from ._shared import chunk, jit_parallel, use_threads
from .chacha20 import SB_WORDS, state, super_blocks, superblock

__all__ = ["apply_masks"]


@jit_parallel
def _masks_kernel(keys: Any, negate: Any, out: Any, n_threads: int) -> None:
    n = out.size
    m = negate.size
    sbs, nch = super_blocks(n, SB_WORDS, n_threads)
    for c in prange(nch):
        x, init = state()
        acc = np.empty((16, 16), np.uint32)
        nonce = np.zeros(3, np.uint32)
        for sb in chunk(c, sbs, nch):
            acc[:, :] = 0
            for j in range(m):
                superblock(keys[8 * j : 8 * j + 8], nonce, 16 * sb, x, init)
                if negate[j]:
                    for w in range(16):
                        for b in range(16):
                            acc[w, b] = np.uint32(acc[w, b] - x[w, b])
                else:
                    for w in range(16):
                        for b in range(16):
                            acc[w, b] = np.uint32(acc[w, b] + x[w, b])
            base = sb * SB_WORDS
            for i in range(min(SB_WORDS, n - base)):
                out[base + i] = np.uint32(out[base + i] + acc[i % 16, i // 16])


def apply_masks(keys: Words, negate: NDArray[np.uint8], out: Words, n_threads: int = 1) -> None:
    """``out += sum_j (-1)^negate[j] keystream_j`` mod 2^32 (see the numpy reference)."""
    if not (isinstance(negate, np.ndarray) and negate.dtype == np.uint8 and negate.ndim == 1):
        raise ValueError("negate must be a 1-D uint8 array")
    check_words(keys, 8 * negate.size, "keys")
    check_out(out, (np.dtype(np.uint32),))
    if -(-out.size // 16) > 1 << 32:
        raise ValueError("out is longer than one keystream (2^36 words)")
    if out.size and negate.size:
        used = use_threads(n_threads, out.size * negate.size, 1 << 15)
        _masks_kernel(np.ascontiguousarray(keys), negate, out, used)
