"""Plain numpy references of the kernels: slow, obvious, the definition in code.

Every backend module (``_core`` via ``_kernels_cpp``, ``_kernels_numba``, this one) exposes the
same kernel contract, used by :mod:`hierfed.aggregator` through :mod:`hierfed._backend`:

``kernel(segments, outs, ..., weights, n_threads) -> bool``

- ``segments[s][i]`` is update ``i``'s part ``s``: a 1-D C-contiguous float32 or float64 array
  (one dtype throughout) of length ``outs[s].size``. A 2-D input is one segment; a per-layer
  model input has one segment per layer.
- ``outs[s]`` is a 1-D C-contiguous array of that dtype, written in place.
- ``weights`` is ``None`` or a validated float64 array of length ``n`` (finite, >= 0, sum > 0).
- The return value is ``True`` when a non-finite input value was seen; the outputs are then
  unspecified and the caller raises.

Weighted order statistics break ties by row index (a stable sort): among equal values the
update with the lower index counts as the smaller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

Rows = Sequence[NDArray[np.floating]]


def _stack(rows: Rows) -> NDArray[np.float64]:
    return np.stack([np.asarray(r, dtype=np.float64) for r in rows])


def midpoint(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """The median of two middle values ``a <= b``: halves first (no overflow near the float64
    maximum), and ``a`` itself where they are equal (halving rounds below the smallest normal
    float64, so ``0.5a + 0.5a`` can exceed ``a`` by one unit; for ``a < b`` the result always
    lies in ``[a, b]``)."""
    out: NDArray[np.float64] = np.where(a == b, a, 0.5 * a + 0.5 * b)
    return out


def _any_nonfinite(segments: Sequence[Rows]) -> bool:
    return any(not np.isfinite(r).all() for rows in segments for r in rows)


def mean(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Weighted mean ``sum(w_i x_i) / sum(w_i)`` per coordinate, in float64."""
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        w = np.ones(len(rows)) if weights is None else weights
        with np.errstate(over="ignore"):  # the caller reports an overflowing mean
            out[...] = (w[:, None] * x).sum(axis=0) / w.sum()
    return False


def trimmed_mean(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    n_trim: int,
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Per coordinate drop the ``n_trim`` smallest and largest values, weighted mean of the rest.

    The kept weight of a coordinate can be zero only with zero weights; its result is then NaN.
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        n = x.shape[0]
        order = np.argsort(x, axis=0, kind="stable")[n_trim : n - n_trim]
        kept = np.take_along_axis(x, order, axis=0)
        w = np.ones(n) if weights is None else weights
        kw = w[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[...] = (kw * kept).sum(axis=0) / kw.sum(axis=0)
    return False


def median(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Coordinate-wise (weighted) median.

    In (value, index) order, ``below[q]`` is the weight at or below rank ``q`` (summed upwards)
    and ``above[q]`` the weight above it (summed downwards): ``lo`` is the first rank with
    ``below >= above`` (half the total reached), ``hi`` the first with ``below > above``, and
    the median is ``(lo + hi) / 2``. Comparing the two sides rather than ``2c`` with the total
    makes equal weights give exactly the unweighted median. Unweighted this is ``np.median``.
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        order = np.argsort(x, axis=0, kind="stable")
        s = np.take_along_axis(x, order, axis=0)
        w = np.ones(x.shape[0]) if weights is None else weights
        ws = w[order]
        below = np.cumsum(ws, axis=0)  # weight at or below each rank, summed upwards
        above = np.zeros_like(ws)  # weight above each rank, summed downwards
        above[:-1] = np.cumsum(ws[:0:-1], axis=0)[::-1]
        lo = np.argmax(below >= above, axis=0)
        hi = np.argmax(below > above, axis=0)
        cols = np.arange(x.shape[1])
        out[...] = midpoint(s[lo, cols], s[hi, cols])
    return False


def mix_rows(
    segments: Sequence[Rows],
    weights: NDArray[np.float64],
    outs: Sequence[NDArray[np.floating]],
    n_threads: int = 1,
) -> bool:
    """``outs[s][o] = sum_i weights[o, i] x_i / sum_i weights[o, i]`` for every segment.

    ``weights`` is ``(m, n)``, non-negative, each row with a positive sum; ``outs[s]`` is
    ``(m, len_s)``. Many weighted means of the same rows (nearest-neighbour mixing).
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        out[...] = weights @ _stack(rows) / weights.sum(axis=1)[:, None]
    return False


# --------------------------------------------------------------------------------------------
# Distance kernels. The compiled and numba kernels follow a fixed summation recipe (see
# ``pairwise_sq_distances`` in :mod:`hierfed._kernels_numba`) so that they agree bit for bit;
# the reference is the plain float64 definition, which they match to rounding.


def pairwise_sq_distances(
    segments: Sequence[Rows],
    out: NDArray[np.float64],
    chunk: int = 0,
    n_units: int = 1,
    n_threads: int = 1,
) -> None:
    """``out[i, j] = sum_c (x_i[c] - x_j[c])**2`` over every segment, in float64.

    ``chunk`` and ``n_units`` fix the summation order of the fast kernels; the reference sums
    exactly in float64 (``math.fsum``-accurate pairwise sums suffice here) and ignores them.
    Non-finite input gives non-finite entries; the caller checks.
    """
    n = len(segments[0])
    out[...] = 0.0
    for rows in segments:
        x = _stack(rows)
        for i in range(n):
            diff = x[i + 1 :] - x[i]
            sq = np.einsum("ij,ij->i", diff, diff) if diff.size else np.zeros(0)
            out[i, i + 1 :] += sq
    iu = np.triu_indices(n, 1)
    out[(iu[1], iu[0])] = out[iu]
    out[np.diag_indices(n)] = 0.0


def sq_distances_to(
    segments: Sequence[Rows],
    point: Sequence[NDArray[np.floating]],
    out: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """``out[i] = sum_c (x_i[c] - point[c])**2`` over every segment, in float64.

    ``point[s]`` is segment ``s`` of the point, in the rows' dtype.
    """
    out[...] = 0.0
    for rows, p in zip(segments, point, strict=True):
        diff = _stack(rows) - np.asarray(p, dtype=np.float64)
        out += np.einsum("ij,ij->i", diff, diff)


def mean_around_median(
    segments: Sequence[Rows],
    outs: Sequence[NDArray[np.floating]],
    n_keep: int,
    weights: NDArray[np.float64] | None,
    n_threads: int = 1,
) -> bool:
    """Per coordinate, the weighted mean of the ``n_keep`` values closest to the median.

    Bulyan's last step (El Mhamdi et al. 2018): ``med`` the column's median (the two middle
    values by :func:`midpoint`), distances ``|x_i - med|`` in float64, the ``n_keep`` smallest
    distances taken with ties to the lower row index (a stable sort). Kept weights
    summing to zero give NaN; the caller checks.
    """
    if _any_nonfinite(segments):
        return True
    for rows, out in zip(segments, outs, strict=True):
        x = _stack(rows)
        n = x.shape[0]
        s = np.sort(x, axis=0)
        med = midpoint(s[(n - 1) // 2], s[n // 2])
        order = np.argsort(np.abs(x - med), axis=0, kind="stable")[:n_keep]
        kept = np.take_along_axis(x, order, axis=0)
        w = np.ones(n) if weights is None else weights
        kw = w[order]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[...] = (kw * kept).sum(axis=0) / kw.sum(axis=0)
    return False


# ============================================================================================
# Privacy kernels (issue 4): ChaCha20 keystream, noise, exact discrete Gaussian, L2 norms and
# clipping. The definitions of the streams and transforms are the ones of cpp/include/hierfed/
# chacha20.hpp, noise.hpp and clipping.hpp; every backend gives the same bits.
#
# Keys and nonces are uint32 arrays of 8 and 3 little-endian words. The noise kernels work in
# super-blocks of 16 ChaCha20 blocks; within one, 64-bit slot k of block j is words 2k (low)
# and 2k + 1 (high), and outputs are slot-major (output 16 k + j).

SUPER_BLOCK = 16  # ChaCha20 blocks per super-block
NOISE_UNIFORM, NOISE_NORMAL, NOISE_LAPLACE = 0, 1, 2
NORM_BLOCK = 8192  # values per block of the canonical sum of squares
NORM_LANES = 32  # lanes of the canonical sum of squares
TINY_SQUARES = 2.0**-900  # sums below this are redone with scaling by the caller
TINY_FACTOR = 2.0**-900  # clipping factors below this are applied by the caller
_M32 = 0xFFFFFFFF
_SIGMA_WORDS = np.array([0x61707865, 0x3320646E, 0x79622D32, 0x6B206574], np.uint32)
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


_SHIFTS = {n: (np.uint32(n), np.uint32(32 - n)) for n in (7, 8, 12, 16)}


def _rotl(v: NDArray[np.uint32], n: int) -> NDArray[np.uint32]:
    left, right = _SHIFTS[n]
    return (v << left) | (v >> right)


def chacha20_blocks(
    key: NDArray[np.uint32], nonce: NDArray[np.uint32], counter: int, n_blocks: int
) -> NDArray[np.uint32]:
    """Blocks ``counter .. counter + n_blocks - 1`` (RFC 8439, 2.3), shape ``(n_blocks, 16)``.

    The counter wraps modulo 2^32 (callers never output a wrapped block).
    """
    state = np.empty((16, n_blocks), np.uint32)
    state[0:4] = _SIGMA_WORDS[:, None]
    state[4:12] = np.asarray(key, np.uint32)[:, None]
    state[12] = ((counter + np.arange(n_blocks, dtype=np.uint64)) & _M32).astype(np.uint32)
    state[13:16] = np.asarray(nonce, np.uint32)[:, None]
    # The rows of the 4x4 state, each holding its 4 words for every block: a column round is
    # one quarter round on whole rows, a diagonal round the same on rows b, c, d turned left
    # by 1, 2, 3 words (so word i of each row lines up with diagonal i).
    a, b, c, d = (state[4 * r : 4 * r + 4].copy() for r in range(4))

    def quarter(
        a: NDArray[np.uint32], b: NDArray[np.uint32], c: NDArray[np.uint32], d: NDArray[np.uint32]
    ) -> tuple[NDArray[np.uint32], ...]:
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
    key: NDArray[np.uint32],
    nonce: NDArray[np.uint32],
    counter: int,
    out: NDArray[np.uint32],
    n_threads: int = 1,
) -> None:
    """Keystream words from block ``counter`` in RFC order into ``out``."""
    n = out.size
    out[...] = chacha20_blocks(key, nonce, counter, -(-n // 16)).reshape(-1)[:n]


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


def noise_draws(words: NDArray[np.uint32], kind: int, f32: bool) -> NDArray[np.float64]:
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
    key: NDArray[np.uint32],
    nonce: NDArray[np.uint32],
    counter: int,
    out: NDArray[np.floating],
    kind: int,
    loc: float,
    scale: float,
    accumulate: bool,
    n_threads: int = 1,
) -> None:
    """``out = loc + scale * draw`` (or ``out += scale * draw``) in float64, rounded once."""
    n = out.size
    f32 = out.dtype == np.float32
    per = 256 if (kind == NOISE_UNIFORM and f32) else 128
    sbs = -(-n // per)
    words = chacha20_blocks(key, nonce, counter, SUPER_BLOCK * sbs).reshape(sbs, 16, 16)
    z = noise_draws(words, kind, f32)[:n]
    if accumulate:
        out[...] = out.astype(np.float64) + scale * z
    else:
        out[...] = loc + scale * z


class _Words:
    """The keystream of one discrete-Gaussian chunk (nonce = chunk index), word by word."""

    def __init__(self, key: NDArray[np.uint32], chunk: int) -> None:
        self.key = key
        self.nonce = np.array([chunk & _M32, (chunk >> 32) & _M32, 0], np.uint32)
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
    key: NDArray[np.uint32],
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
    n = out.size
    for c in range(-(-n // chunk)):
        src = _Words(key, c)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            out[i] = _discrete_gaussian_one(src, t, alpha, beta, denom, ymax)


def block_sum_squares(x: NDArray[np.floating]) -> float:
    """Canonical float64 sum of squares of one block (<= NORM_BLOCK values), see clipping.hpp."""
    v = np.zeros(-(-x.size // NORM_LANES) * NORM_LANES, np.float64)
    v[: x.size] = x
    with np.errstate(over="ignore", under="ignore"):  # the caller redoes such rows
        lanes = np.cumsum((v * v).reshape(-1, NORM_LANES), axis=0)[-1]  # in index order
    h = NORM_LANES // 2
    while h >= 1:
        lanes = lanes[:h] + lanes[h : 2 * h]
        h //= 2
    return float(lanes[0])


def row_sum_squares(parts: Sequence[NDArray[np.floating]]) -> float:
    """Canonical sum of squares of one update given as its segments (blocks, then segments)."""
    total = 0.0
    for x in parts:
        seg = 0.0
        for j in range(0, x.size, NORM_BLOCK):
            seg += block_sum_squares(x[j : j + NORM_BLOCK])
        total += seg
    return total


def clip_factor(total: float, max_norm: float, margin: float) -> float:
    """Scale of a row from its sum of squares; 0.0 when the caller must decide."""
    if not (total >= TINY_SQUARES) or not math.isfinite(total):
        return 0.0
    bound = math.sqrt(total) * (1.0 + margin)
    f = max_norm / bound if bound > max_norm else 1.0
    return f if f >= TINY_FACTOR else 0.0


def l2_sq_norms(segments: Sequence[Rows], sq: NDArray[np.float64], n_threads: int = 1) -> None:
    """Canonical float64 sum of squares of every update into ``sq``."""
    for i in range(sq.size):
        sq[i] = row_sum_squares([rows[i] for rows in segments])


def clip_by_l2(
    segments: Sequence[Rows],
    outs: Sequence[Sequence[NDArray[np.floating]]],
    max_norm: float,
    margin: float,
    sq: NDArray[np.float64],
    n_threads: int = 1,
) -> None:
    """Sums of squares into ``sq``; rows whose factor is known are scaled into ``outs``."""
    l2_sq_norms(segments, sq)
    for i in range(sq.size):
        f = clip_factor(float(sq[i]), max_norm, margin)
        if f == 0.0:
            continue
        for rows, out_rows in zip(segments, outs, strict=True):
            out_rows[i][...] = rows[i].astype(np.float64) * f


# ---- secure-aggregation masks (cpp/include/hierfed/masks.hpp) --------------------------------

_MASK_NONCE = np.zeros(3, np.uint32)


def apply_masks(
    keys: NDArray[np.uint32],
    negate: NDArray[np.uint8],
    out: NDArray[np.uint32],
    n_threads: int = 1,
) -> None:
    """``out += sum_j (-1)^negate[j] keystream_j`` mod 2^32, in place.

    ``keys`` holds 8 little-endian words per mask; mask ``j`` is the RFC 8439 keystream of key
    ``j`` with nonce 0 from counter 0, ``out.size`` words in RFC order.
    """
    if not (isinstance(negate, np.ndarray) and negate.dtype == np.uint8 and negate.ndim == 1):
        raise ValueError("negate must be a 1-D uint8 array")
    if not (isinstance(keys, np.ndarray) and keys.dtype == np.uint32 and keys.ndim == 1):
        raise ValueError("keys must be a 1-D uint32 array")
    if keys.size != 8 * negate.size:
        raise ValueError("keys must hold 8 uint32 words per entry of negate")
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint32 and out.ndim == 1):
        raise ValueError("out must be a 1-D uint32 array")
    n = out.size
    for j in range(negate.size):
        stream = np.empty(n, np.uint32)
        chacha20_keystream(keys[8 * j : 8 * j + 8], _MASK_NONCE, 0, stream)
        if negate[j]:
            out -= stream
        else:
            out += stream
