"""Numpy references of the noise kernels: uniform, normal and Laplace draws from the ChaCha20
keystream, and the exact discrete Gaussian (Canonne, Kamath and Steinke 2020).

Twins: ``cpp/include/hierfed/noise.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numba.noise`, which takes its constants from here. The noise kernels
work in super-blocks of 16 ChaCha20 blocks; within one, 64-bit slot k of block j is words 2k
(low) and 2k + 1 (high), and outputs are slot-major (output 16 k + j).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._types import FloatArray, Words
from ..stream_checks import check_blocks, check_dg_params, check_kind, check_out, check_words
from .chacha20 import M32, SUPER_BLOCK, chacha20_blocks

__all__ = [
    "ANGLE",
    "COS_C",
    "DG_CAP",
    "LN2",
    "LOG_C",
    "MANT53",
    "NOISE_LAPLACE",
    "NOISE_NORMAL",
    "NOISE_UNIFORM",
    "SIN_C",
    "SQRT_HALF",
    "TWO_M24",
    "TWO_M53",
    "box_muller",
    "chacha20_noise",
    "discrete_gaussian",
    "laplace_draw",
    "log_unit",
    "noise_draws",
]

NOISE_UNIFORM, NOISE_NORMAL, NOISE_LAPLACE = 0, 1, 2
LN2 = 0.6931471805599453
SQRT_HALF = 0.7071067811865476
TWO_M53 = 2.0**-53
TWO_M24 = 2.0**-24
ANGLE = 0.7853981633974483 * TWO_M53  # (pi / 4) 2^-53
MANT53 = (1 << 53) - 1
LOG_C = tuple(1.0 / (2 * j + 3) for j in range(10))  # 2 atanh(s) = 2s (1 + z sum z^j/(2j+3))
SIN_C = tuple((-1.0) ** (j + 1) / math.factorial(2 * j + 3) for j in range(8))
COS_C = tuple((-1.0) ** (j + 1) / math.factorial(2 * j + 2) for j in range(9))
DG_CAP = 1 << 62  # bound of the discrete Gaussian's integers (see noise.hpp)


def log_unit(m: NDArray[np.float64]) -> NDArray[np.float64]:
    """``ln(m 2^-53)`` for integers ``m`` in ``[1, 2^53]``: the polynomial of noise.hpp."""
    fr, e = np.frexp(m)
    big = fr > SQRT_HALF
    f = np.where(big, fr, fr + fr)
    k = (np.where(big, e, e - 1) - 53).astype(np.float64)
    s = (f - 1.0) / (f + 1.0)
    z = s * s
    p = np.full_like(z, LOG_C[9])
    for c in LOG_C[8::-1]:
        p = p * z + c
    t = s + s
    result: NDArray[np.float64] = k * LN2 + (t + t * (z * p))
    return result


def box_muller(
    a: NDArray[np.integer[Any]], b: NDArray[np.integer[Any]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two standard normals per pair of 64-bit slots (see noise.hpp)."""
    r = np.sqrt(-2.0 * log_unit(((a >> 11) + 1).astype(np.float64)))
    q = b >> 61
    mt = (b >> 8) & MANT53
    odd = (q & 1) != 0
    mt = np.where(odd, np.uint64(1 << 53) - mt, mt)
    x = mt.astype(np.float64) * ANGLE
    z = x * x
    ps = np.full_like(z, SIN_C[7])
    for c in SIN_C[6::-1]:
        ps = ps * z + c
    sn = x + x * (z * ps)
    pc = np.full_like(z, COS_C[8])
    for c in COS_C[7::-1]:
        pc = pc * z + c
    cs = 1.0 + z * pc
    c0, s0 = np.where(odd, sn, cs), np.where(odd, cs, sn)
    quadrant = q >> 1
    swap = (quadrant & 1) != 0
    c1, s1 = np.where(swap, s0, c0), np.where(swap, c0, s0)
    neg_c = (quadrant == 1) | (quadrant == 2)
    neg_s = quadrant >= 2
    return r * np.where(neg_c, -c1, c1), r * np.where(neg_s, -s1, s1)


def laplace_draw(a: NDArray[np.integer[Any]]) -> NDArray[np.float64]:
    """Laplace(0, 1): sign from the top bit, magnitude ``-ln u`` from the other 63 bits."""
    e = -log_unit((((a & np.uint64(0x7FFFFFFFFFFFFFFF)) >> 10) + 1).astype(np.float64))
    return np.where((a >> 63) != 0, -e, e)


def noise_draws(words: Words, kind: int, f32: bool) -> NDArray[np.float64]:
    """The draws of super-blocks ``words`` (shape ``(sbs, 16 blocks, 16 words)``), in order."""
    w = words.transpose(0, 2, 1)  # (sbs, word, block)
    if kind == NOISE_UNIFORM and f32:
        return ((w >> 8).astype(np.float64) * TWO_M24).reshape(-1)
    slots = w[:, 0::2, :].astype(np.uint64) | (w[:, 1::2, :].astype(np.uint64) << 32)
    if kind == NOISE_UNIFORM:
        z = (slots >> 11).astype(np.float64) * TWO_M53
    elif kind == NOISE_LAPLACE:
        z = laplace_draw(slots)
    else:
        z = np.empty(slots.shape, np.float64)
        z[:, 0::2], z[:, 1::2] = box_muller(slots[:, 0::2], slots[:, 1::2])
    return z.reshape(-1)


def chacha20_noise(
    key: Words,
    nonce: Words,
    counter: int,
    out: FloatArray,
    kind: int,
    loc: float,
    scale: float,
    accumulate: bool,
    n_threads: int = 1,
) -> None:
    """``out = loc + scale * draw`` (or ``out += scale * draw``) in float64, rounded once."""
    check_words(key, 8, "key")
    check_words(nonce, 3, "nonce")
    check_out(out, (np.dtype(np.float32), np.dtype(np.float64)))
    check_kind(kind)
    n = out.size
    f32 = out.dtype == np.float32
    per = 256 if (kind == NOISE_UNIFORM and f32) else 128
    sbs = -(-n // per)
    check_blocks(int(counter), SUPER_BLOCK * sbs)
    words = chacha20_blocks(key, nonce, counter, SUPER_BLOCK * sbs).reshape(sbs, 16, 16)
    z = noise_draws(words, kind, f32)[:n]
    if accumulate:
        out[...] = out.astype(np.float64) + scale * z
    else:
        out[...] = loc + scale * z


class _Words:
    """The keystream of one discrete-Gaussian chunk (nonce = chunk index), word by word."""

    def __init__(self, key: Words, chunk: int) -> None:
        self.key = key
        self.nonce = np.array([chunk & M32, (chunk >> 32) & M32, 0], np.uint32)
        self.blocks = 0
        self.buf: list[int] = []
        self.pos = 0
        self.reservoir = 0
        self.avail = 0

    def next(self) -> int:
        if self.pos == len(self.buf):
            if self.blocks > (1 << 32) - SUPER_BLOCK:
                raise RuntimeError("discrete_gaussian: a chunk exhausted its 2^32 blocks")
            block = chacha20_blocks(self.key, self.nonce, self.blocks, SUPER_BLOCK)
            self.buf = [int(v) for v in block.reshape(-1)]
            self.blocks += SUPER_BLOCK
            self.pos = 0
        self.pos += 1
        return self.buf[self.pos - 1]

    def bits(self, b: int) -> int:
        """``b <= 16`` bits from a 32-bit reservoir, low bits first (refilled when short)."""
        if self.avail < b:
            self.reservoir = self.next()
            self.avail = 32
        v = self.reservoir & ((1 << b) - 1)
        self.reservoir >>= b
        self.avail -= b
        return v


def _uniform_below(src: _Words, m: int) -> int:
    """Uniform in ``[0, m)`` by rejection of masked draws: up to 16 bits from the reservoir,
    up to 32 from one word, more from two (high word first)."""
    if m == 1:
        return 0
    bits = (m - 1).bit_length()
    while True:
        if bits <= 16:
            v = src.bits(bits)
        elif bits <= 32:
            v = src.next() & ((1 << bits) - 1)
        else:
            v = ((src.next() & ((1 << (bits - 32)) - 1)) << 32) | src.next()
        if v < m:
            return v


def _bernoulli(src: _Words, num: int, den: int) -> bool:
    """Bernoulli(num / den); beyond 32 bits the high word decides unless it ties."""
    if num == 0:
        return False
    if num >= den:
        return True
    if den <= 1 << 32:
        return _uniform_below(src, den) < num
    mask_hi = (1 << ((den - 1).bit_length() - 32)) - 1
    den_hi, num_hi = den >> 32, num >> 32
    while True:
        hi = src.next() & mask_hi
        if hi > den_hi:
            continue
        if hi < num_hi:
            return True
        if num_hi < hi < den_hi:
            return False
        v = (hi << 32) | src.next()
        if v >= den:
            continue
        return v < num


def _bernoulli_exp_le1(src: _Words, num: int, den: int) -> bool:
    """Bernoulli(exp(-num/den)), num <= den (CKS 2020, Algorithm 1)."""
    k = 1
    while _uniform_below(src, k) == 0 and _bernoulli(src, num, den):
        k += 1
    return k % 2 == 1


def _discrete_gaussian_one(
    src: _Words, t: int, alpha: int, beta: int, denom: int, ymax: int
) -> int:
    """One sample (CKS 2020, Algorithms 2 and 3), as noise.hpp."""
    vmax = ymax // t
    while True:
        u = _uniform_below(src, t)
        if not _bernoulli_exp_le1(src, u, t):
            continue
        v = 0
        too_far = False
        while _bernoulli_exp_le1(src, 1, 1):
            v += 1
            if v > vmax:
                too_far = True
                break
        if too_far:
            continue
        x = u + t * v
        negative = src.bits(1) == 1
        if negative and x == 0:
            continue
        if x > ymax:
            continue
        a2 = (x * alpha - beta) ** 2
        g, r = min(a2 // denom, DG_CAP), a2 % denom
        if not all(_bernoulli_exp_le1(src, 1, 1) for _ in range(g)):
            continue
        if not _bernoulli_exp_le1(src, r, denom):
            continue
        return -x if negative else x


def discrete_gaussian(
    key: Words,
    out: NDArray[np.int64],
    t: int,
    alpha: int,
    beta: int,
    denom: int,
    ymax: int,
    chunk: int,
    n_threads: int = 1,
) -> None:
    """Exact discrete Gaussian samples; chunk ``c`` of ``chunk`` samples uses nonce ``c``."""
    check_words(key, 8, "key")
    check_out(out, (np.dtype(np.int64),))
    check_dg_params(t, alpha, beta, denom, ymax, chunk)
    n = out.size
    for c in range(-(-n // chunk)):
        src = _Words(key, c)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            out[i] = _discrete_gaussian_one(src, t, alpha, beta, denom, ymax)
