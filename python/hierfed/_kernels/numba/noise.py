"""Numba twins of the noise kernels: uniform, normal and Laplace draws from the ChaCha20
keystream, and the exact discrete Gaussian (Canonne, Kamath and Steinke 2020).

Twins: ``cpp/include/hierfed/noise.hpp`` (bound in ``cpp/src/bind_privacy.cpp``) and
:mod:`hierfed._kernels.numpy.noise` (the definitions, whose constants these use), bit for
bit. Work is split in super-blocks (noise) or chunks (discrete Gaussian), whose results do not
depend on which thread computes them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import prange
from numpy.typing import NDArray

from .._types import FloatArray, Words
from ..numpy import noise as _ref
from ..stream_checks import check_blocks, check_dg_params, check_kind, check_out, check_words
from ._shared import chunk, jit, jit_inline, jit_parallel, use_threads
from .chacha20 import SB_WORDS, state, super_blocks, superblock

__all__ = ["chacha20_noise", "discrete_gaussian"]

_U32 = np.uint32
_U64 = np.uint64
_M32 = np.uint64(0xFFFFFFFF)
_LOG_C_REV = tuple(reversed(_ref.LOG_C[:9]))
_SIN_C_REV = tuple(reversed(_ref.SIN_C[:7]))
_COS_C_REV = tuple(reversed(_ref.COS_C[:8]))
_LOG_C_TOP, _SIN_C_TOP, _COS_C_TOP = _ref.LOG_C[9], _ref.SIN_C[7], _ref.COS_C[8]
_LN2, _SQRT_HALF, _ANGLE = _ref.LN2, _ref.SQRT_HALF, _ref.ANGLE
_TWO_M53, _TWO_M24 = _ref.TWO_M53, _ref.TWO_M24
_MANT53 = np.uint64(_ref.MANT53)
_DG_CAP = np.uint64(_ref.DG_CAP)


@jit_inline
def _log_unit(m: float) -> float:
    """ln(m 2^-53) for integers m in [1, 2^53], as noise.hpp."""
    fr, e = math.frexp(m)
    if fr > _SQRT_HALF:
        f = fr
    else:
        f = fr + fr
        e -= 1
    k = float(e - 53)
    s = (f - 1.0) / (f + 1.0)
    z = s * s
    p = _LOG_C_TOP
    for c in _LOG_C_REV:
        p = p * z + c
    t = s + s
    return k * _LN2 + (t + t * (z * p))


@jit_inline
def _slot(x: Any, k: int, j: int) -> Any:
    return _U64(x[2 * k, j]) | (_U64(x[2 * k + 1, j]) << _U64(32))


@jit_inline
def _box_muller(a: Any, b: Any) -> tuple[float, float]:
    r = math.sqrt(-2.0 * _log_unit(float((a >> _U64(11)) + _U64(1))))
    q = b >> _U64(61)
    mt = (b >> _U64(8)) & _MANT53
    odd = (q & _U64(1)) != _U64(0)
    if odd:
        mt = (_U64(1) << _U64(53)) - mt
    x = float(mt) * _ANGLE
    z = x * x
    ps = _SIN_C_TOP
    for c in _SIN_C_REV:
        ps = ps * z + c
    sn = x + x * (z * ps)
    pc = _COS_C_TOP
    for c in _COS_C_REV:
        pc = pc * z + c
    cs = 1.0 + z * pc
    c0 = sn if odd else cs
    s0 = cs if odd else sn
    quadrant = q >> _U64(1)
    swap = (quadrant & _U64(1)) != _U64(0)
    c1 = s0 if swap else c0
    s1 = c0 if swap else s0
    if quadrant == _U64(1) or quadrant == _U64(2):
        c1 = -c1
    if quadrant >= _U64(2):
        s1 = -s1
    return r * c1, r * s1


@jit_inline
def _laplace(a: Any) -> float:
    e = -_log_unit(float(((a & _U64(0x7FFFFFFFFFFFFFFF)) >> _U64(10)) + _U64(1)))
    return -e if (a >> _U64(63)) != _U64(0) else e


@jit
def _draws(x: Any, kind: int, f32: bool, z: Any) -> None:
    """The draws of one super-block (x word-major) into z, in output order."""
    if kind == 0 and f32:
        for w in range(16):
            for j in range(16):
                z[16 * w + j] = float(x[w, j] >> _U32(8)) * _TWO_M24
        return
    for j in range(16):
        if kind == 1:
            for p in range(4):
                z0, z1 = _box_muller(_slot(x, 2 * p, j), _slot(x, 2 * p + 1, j))
                z[16 * (2 * p) + j] = z0
                z[16 * (2 * p + 1) + j] = z1
        else:
            for k in range(8):
                a = _slot(x, k, j)
                if kind == 2:
                    z[16 * k + j] = _laplace(a)
                else:
                    z[16 * k + j] = float(a >> _U64(11)) * _TWO_M53


@jit_parallel
def _noise_kernel(
    key: Any,
    nonce: Any,
    counter: int,
    out: Any,
    kind: int,
    loc: float,
    scale: float,
    accumulate: bool,
    n_threads: int,
) -> None:
    n = out.size
    f32 = out.itemsize == 4
    per = 256 if (kind == 0 and f32) else 128
    sbs, nch = super_blocks(n, per, n_threads)
    for c in prange(nch):
        x, init = state()
        z = np.empty(SB_WORDS, np.float64)
        for sb in chunk(c, sbs, nch):
            superblock(key, nonce, counter + 16 * sb, x, init)
            _draws(x, kind, f32, z)
            base = sb * per
            m = min(per, n - base)
            if accumulate:
                for i in range(m):
                    out[base + i] = np.float64(out[base + i]) + scale * z[i]
            else:
                for i in range(m):
                    out[base + i] = loc + scale * z[i]


# ---- exact discrete Gaussian ----------------------------------------------------------------
# st = [position in the super-block, blocks used]; buf holds the super-block word-major.


@jit
def _next_word(key: Any, nonce: Any, buf: Any, init: Any, st: Any) -> Any:
    if st[0] == SB_WORDS:
        if st[1] > (1 << 32) - 16:
            raise RuntimeError("discrete_gaussian: a chunk exhausted its 2^32 blocks")
        superblock(key, nonce, st[1], buf, init)
        st[1] += 16
        st[0] = 0
    q = st[0]
    st[0] += 1
    return _U64(buf[q % 16, q // 16])


@jit
def _bits(key: Any, nonce: Any, buf: Any, init: Any, st: Any, b: int) -> Any:
    """b <= 16 bits from the 32-bit reservoir st[2] (st[3] bits left), low bits first."""
    if st[3] < b:
        st[2] = np.int64(_next_word(key, nonce, buf, init, st))
        st[3] = 32
    r = np.uint64(st[2])
    v = r & ((_U64(1) << _U64(b)) - _U64(1))
    st[2] = np.int64(r >> _U64(b))
    st[3] -= b
    return v


@jit
def _bit_length(v: Any) -> int:
    bits = 0
    while v != _U64(0):
        v >>= _U64(1)
        bits += 1
    return bits


@jit
def _uniform_below(key: Any, nonce: Any, buf: Any, init: Any, st: Any, m: Any) -> Any:
    if m == _U64(1):
        return _U64(0)
    bits = _bit_length(m - _U64(1))
    while True:
        if bits <= 16:
            r = _bits(key, nonce, buf, init, st, bits)
        elif bits <= 32:
            r = _next_word(key, nonce, buf, init, st) & ((_U64(1) << _U64(bits)) - _U64(1))
        else:
            hi = _next_word(key, nonce, buf, init, st) & ((_U64(1) << _U64(bits - 32)) - _U64(1))
            r = (hi << _U64(32)) | _next_word(key, nonce, buf, init, st)
        if r < m:
            return r


@jit
def _bernoulli(key: Any, nonce: Any, buf: Any, init: Any, st: Any, num: Any, den: Any) -> bool:
    if num == _U64(0):
        return False
    if num >= den:
        return True
    if den <= (_U64(1) << _U64(32)):
        return bool(_uniform_below(key, nonce, buf, init, st, den) < num)
    mask_hi = (_U64(1) << _U64(_bit_length(den - _U64(1)) - 32)) - _U64(1)
    den_hi = den >> _U64(32)
    num_hi = num >> _U64(32)
    while True:
        hi = _next_word(key, nonce, buf, init, st) & mask_hi
        if hi > den_hi:
            continue
        if hi < num_hi:
            return True
        if hi > num_hi and hi < den_hi:
            return False
        v = (hi << _U64(32)) | _next_word(key, nonce, buf, init, st)
        if v >= den:
            continue
        return bool(v < num)


@jit
def _bernoulli_exp_le1(
    key: Any, nonce: Any, buf: Any, init: Any, st: Any, num: Any, den: Any
) -> bool:
    k = _U64(1)
    while True:
        if _uniform_below(key, nonce, buf, init, st, k) != _U64(0):
            break
        if not _bernoulli(key, nonce, buf, init, st, num, den):
            break
        k += _U64(1)
    return bool((k & _U64(1)) == _U64(1))


@jit
def _square_divmod(a: Any, d: Any) -> tuple[Any, Any]:
    """``(min(a*a // d, 2^62), a*a % d)`` for a < 2^63, 1 <= d <= 2^62 (128-bit by halves)."""
    a1 = a >> _U64(32)
    a0 = a & _M32
    lo0 = a0 * a0
    mid = a1 * a0
    lo = lo0 + (mid << _U64(33))
    carry = _U64(1) if lo < lo0 else _U64(0)
    hi = a1 * a1 + (mid >> _U64(31)) + carry
    rem = _U64(0)
    q = _U64(0)
    saturated = False
    for i in range(127, -1, -1):
        word = hi if i >= 64 else lo
        bit = (word >> _U64(i % 64)) & _U64(1)
        rem = (rem << _U64(1)) | bit
        qbit = _U64(0)
        if rem >= d:
            rem -= d
            qbit = _U64(1)
        if not saturated:
            q = (q << _U64(1)) | qbit
            if q > _DG_CAP:
                saturated = True
    return (_DG_CAP if saturated else q), rem


@jit
def _dg_one(key: Any, nonce: Any, buf: Any, init: Any, st: Any, prm: Any) -> Any:
    t, alpha, beta, denom, ymax = prm[0], prm[1], prm[2], prm[3], prm[4]
    one = _U64(1)
    vmax = ymax // t
    while True:
        u = _uniform_below(key, nonce, buf, init, st, t)
        if not _bernoulli_exp_le1(key, nonce, buf, init, st, u, t):
            continue
        v = _U64(0)
        too_far = False
        while _bernoulli_exp_le1(key, nonce, buf, init, st, one, one):
            v += one
            if v > vmax:
                too_far = True
                break
        if too_far:
            continue
        x = u + t * v
        negative = _bits(key, nonce, buf, init, st, 1) == one
        if negative and x == _U64(0):
            continue
        if x > ymax:
            continue
        xa = x * alpha
        a = xa - beta if xa >= beta else beta - xa
        g, r = _square_divmod(a, denom)
        ok = True
        i = _U64(0)
        while i < g:
            if not _bernoulli_exp_le1(key, nonce, buf, init, st, one, one):
                ok = False
                break
            i += one
        if not ok:
            continue
        if not _bernoulli_exp_le1(key, nonce, buf, init, st, r, denom):
            continue
        return -np.int64(x) if negative else np.int64(x)


@jit_parallel
def _dg_kernel(key: Any, out: Any, prm: Any, chunk: int, n_threads: int) -> None:
    n = out.size
    chunks = (n + chunk - 1) // chunk
    for c in prange(chunks):
        nonce = np.zeros(3, np.uint32)
        nonce[0] = np.uint32(c & 0xFFFFFFFF)
        nonce[1] = np.uint32(c >> 32)
        buf, init = state()
        st = np.zeros(4, np.int64)  # position, blocks used, reservoir, bits in it
        st[0] = SB_WORDS
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            out[i] = _dg_one(key, nonce, buf, init, st, prm)


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
    """Uniform (0), normal (1) or Laplace (2) draws: ``out = loc + scale * draw`` (or +=)."""
    check_words(key, 8, "key")
    check_words(nonce, 3, "nonce")
    check_out(out, (np.dtype(np.float32), np.dtype(np.float64)))
    check_kind(kind)
    per = 256 if (kind == 0 and out.dtype == np.float32) else 128
    check_blocks(int(counter), 16 * -(-out.size // per))
    if out.size:
        used = use_threads(n_threads, out.size, 1 << 15)
        _noise_kernel(
            key,
            nonce,
            int(counter),
            out,
            int(kind),
            float(loc),
            float(scale),
            bool(accumulate),
            used,
        )


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
    """Exact discrete Gaussian samples (CKS 2020); chunk ``c`` uses nonce ``c``."""
    check_words(key, 8, "key")
    check_out(out, (np.dtype(np.int64),))
    check_dg_params(t, alpha, beta, denom, ymax, chunk)
    if out.size:
        prm = np.array([t, alpha, beta, denom, ymax], np.uint64)
        chunks = -(-out.size // chunk)
        used = use_threads(n_threads, out.size, small=0, units=chunks)
        _dg_kernel(key, out, prm, int(chunk), used)
