"""Numpy reference of the secure-aggregation masks kernel.

Twins: ``cpp/include/hierfed/masks.hpp`` (bound in ``cpp/src/bind_secagg.cpp``) and
:mod:`hierfed._kernels.numba.masks`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .._types import Words
from ..stream_checks import check_out, check_words
from .chacha20 import chacha20_keystream

__all__ = ["apply_masks"]

_MASK_NONCE = np.zeros(3, np.uint32)


def apply_masks(keys: Words, negate: NDArray[np.uint8], out: Words, n_threads: int = 1) -> None:
    """``out += sum_j (-1)^negate[j] keystream_j`` mod 2^32, in place.

    ``keys`` holds 8 little-endian words per mask; mask ``j`` is the RFC 8439 keystream of key
    ``j`` with nonce 0 from counter 0, ``out.size`` words in RFC order.
    """
    if not (isinstance(negate, np.ndarray) and negate.dtype == np.uint8 and negate.ndim == 1):
        raise ValueError("negate must be a 1-D uint8 array")
    check_words(keys, 8 * negate.size, "keys")
    check_out(out, (np.dtype(np.uint32),))
    if -(-out.size // 16) > 1 << 32:
        raise ValueError("out is longer than one keystream (2^36 words)")
    n = out.size
    for j in range(negate.size):
        stream = np.empty(n, np.uint32)
        chacha20_keystream(keys[8 * j : 8 * j + 8], _MASK_NONCE, 0, stream)
        if negate[j]:
            out -= stream
        else:
            out += stream
