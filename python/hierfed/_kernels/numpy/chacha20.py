"""Numpy reference of the ChaCha20 keystream (RFC 8439, section 2.3).

Twins: ``cpp/include/hierfed/chacha20.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numba.chacha20`. Keys and nonces are uint32 arrays of 8 and 3
little-endian words; a request past block 2^32 - 1 is refused (``stream_checks``).
"""

from __future__ import annotations

import numpy as np

from .._types import Words
from ..stream_checks import check_blocks, check_out, check_words

__all__ = ["M32", "SUPER_BLOCK", "chacha20_blocks", "chacha20_keystream"]

SUPER_BLOCK = 16  # ChaCha20 blocks per super-block
M32 = 0xFFFFFFFF
_SIGMA_WORDS = np.array([0x61707865, 0x3320646E, 0x79622D32, 0x6B206574], np.uint32)
_SHIFTS = {n: (np.uint32(n), np.uint32(32 - n)) for n in (7, 8, 12, 16)}


def _rotl(v: Words, n: int) -> Words:
    left, right = _SHIFTS[n]
    return (v << left) | (v >> right)


def chacha20_blocks(key: Words, nonce: Words, counter: int, n_blocks: int) -> Words:
    """Blocks ``counter .. counter + n_blocks - 1`` (RFC 8439, 2.3), shape ``(n_blocks, 16)``.

    The counter wraps modulo 2^32 (callers never output a wrapped block).
    """
    state = np.empty((16, n_blocks), np.uint32)
    state[0:4] = _SIGMA_WORDS[:, None]
    state[4:12] = np.asarray(key, np.uint32)[:, None]
    state[12] = ((counter + np.arange(n_blocks, dtype=np.uint64)) & M32).astype(np.uint32)
    state[13:16] = np.asarray(nonce, np.uint32)[:, None]
    # The rows of the 4x4 state, each holding its 4 words for every block: a column round is
    # one quarter round on whole rows, a diagonal round the same on rows b, c, d turned left
    # by 1, 2, 3 words (so word i of each row lines up with diagonal i).
    a, b, c, d = (state[4 * r : 4 * r + 4].copy() for r in range(4))

    def quarter(a: Words, b: Words, c: Words, d: Words) -> tuple[Words, ...]:
        for d_shift, b_shift in ((16, 12), (8, 7)):
            a += b
            d ^= a
            d = _rotl(d, d_shift)
            c += d
            b ^= c
            b = _rotl(b, b_shift)
        return a, b, c, d

    left = [np.roll(np.arange(4), -k) for k in range(4)]  # word order of a row turned left k
    right = [np.roll(np.arange(4), k) for k in range(4)]
    for _ in range(10):
        a, b, c, d = quarter(a, b, c, d)
        a, b, c, d = quarter(a, b[left[1]], c[left[2]], d[left[3]])
        b, c, d = b[right[1]], c[right[2]], d[right[3]]
    x = np.concatenate((a, b, c, d))
    return np.ascontiguousarray((x + state).T)


def chacha20_keystream(
    key: Words, nonce: Words, counter: int, out: Words, n_threads: int = 1
) -> None:
    """Keystream words from block ``counter`` in RFC order into ``out``."""
    check_words(key, 8, "key")
    check_words(nonce, 3, "nonce")
    check_out(out, (np.dtype(np.uint32),))
    check_blocks(int(counter), -(-out.size // 16))
    n = out.size
    out[...] = chacha20_blocks(key, nonce, counter, -(-n // 16)).reshape(-1)[:n]
