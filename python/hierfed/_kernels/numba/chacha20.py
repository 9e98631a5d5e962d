"""Numba twin of the ChaCha20 keystream (RFC 8439, section 2.3), in super-blocks of 16 blocks.

Twins: ``cpp/include/hierfed/chacha20.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numpy.chacha20` (the definition). :func:`superblock` and the argument
checks serve the noise and masks twins too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import prange

from .._types import Words
from ..stream_checks import check_blocks, check_out, check_words
from ._shared import chunk, jit, jit_inline, jit_parallel, use_threads

__all__ = [
    "SB_WORDS",
    "chacha20_keystream",
    "state",
    "super_blocks",
    "superblock",
]

_U32 = np.uint32
SB_WORDS = 256  # words of a super-block (16 blocks)


@jit_inline
def _qround(x: Any, a: int, b: int, c: int, d: int) -> None:
    """One quarter round on the 16 lanes (blocks) of rows a, b, c, d of the state."""
    for j in range(16):
        xa = np.uint32(x[a, j] + x[b, j])
        v = xa ^ x[d, j]
        xd = np.uint32((v << _U32(16)) | (v >> _U32(16)))
        xc = np.uint32(x[c, j] + xd)
        v = x[b, j] ^ xc
        xb = np.uint32((v << _U32(12)) | (v >> _U32(20)))
        xa = np.uint32(xa + xb)
        v = xd ^ xa
        xd = np.uint32((v << _U32(8)) | (v >> _U32(24)))
        xc = np.uint32(xc + xd)
        v = xb ^ xc
        x[a, j] = xa
        x[b, j] = np.uint32((v << _U32(7)) | (v >> _U32(25)))
        x[c, j] = xc
        x[d, j] = xd


@jit
def superblock(key: Any, nonce: Any, counter: int, x: Any, init: Any) -> None:
    """The 16 blocks from ``counter`` (mod 2^32) into ``x``, word-major: x[w, j]."""
    for j in range(16):
        init[0, j] = 0x61707865
        init[1, j] = 0x3320646E
        init[2, j] = 0x79622D32
        init[3, j] = 0x6B206574
        for i in range(8):
            init[4 + i, j] = key[i]
        init[12, j] = np.uint32((counter + j) & 0xFFFFFFFF)
        for i in range(3):
            init[13 + i, j] = nonce[i]
    for w in range(16):
        for j in range(16):
            x[w, j] = init[w, j]
    for _ in range(10):
        _qround(x, 0, 4, 8, 12)
        _qround(x, 1, 5, 9, 13)
        _qround(x, 2, 6, 10, 14)
        _qround(x, 3, 7, 11, 15)
        _qround(x, 0, 5, 10, 15)
        _qround(x, 1, 6, 11, 12)
        _qround(x, 2, 7, 8, 13)
        _qround(x, 3, 4, 9, 14)
    for w in range(16):
        for j in range(16):
            x[w, j] = np.uint32(x[w, j] + init[w, j])


@jit_inline
def super_blocks(n: int, per: int, n_threads: int) -> tuple[int, int]:
    """The super-blocks covering ``n`` outputs (``per`` each) and the threads they go to."""
    sbs = (n + per - 1) // per
    return sbs, max(1, min(sbs, n_threads))


@jit_inline
def state() -> tuple[Any, Any]:
    """Room for :func:`superblock`: its output and its initial state, 16 x 16 words each."""
    return np.empty((16, 16), np.uint32), np.empty((16, 16), np.uint32)


@jit_parallel
def _keystream_kernel(key: Any, nonce: Any, counter: int, out: Any, n_threads: int) -> None:
    n = out.size
    sbs, nch = super_blocks(n, SB_WORDS, n_threads)
    for c in prange(nch):
        x, init = state()
        for sb in chunk(c, sbs, nch):
            superblock(key, nonce, counter + 16 * sb, x, init)
            base = sb * SB_WORDS
            for i in range(min(SB_WORDS, n - base)):
                out[base + i] = x[i % 16, i // 16]


def chacha20_keystream(
    key: Words, nonce: Words, counter: int, out: Words, n_threads: int = 1
) -> None:
    """Keystream words from block ``counter`` in RFC order into ``out``."""
    check_words(key, 8, "key")
    check_words(nonce, 3, "nonce")
    check_out(out, (np.dtype(np.uint32),))
    check_blocks(int(counter), -(-out.size // 16))
    if out.size:
        used = use_threads(n_threads, out.size, 1 << 15)
        _keystream_kernel(key, nonce, int(counter), out, used)
