"""Fixed-point encoding of float updates for summation mod 2^32.

A value ``x`` is clipped to ``[-c, c]`` and mapped to ``y = (x + c) / (2c) * (2^b - 1)`` in
``[0, 2^b - 1]``, then rounded stochastically: up with probability ``y - floor(y)``, using
uniforms from the cryptographically secure :class:`~hierfed.privacy.NoiseGenerator`, so the
encoding is unbiased (``E[q] = y``). A sum of ``n`` encodings stays below ``n 2^b``, which must
be below ``2^32`` so that nothing wraps: ``b`` is chosen from the number of *clients* ``n``
(never from the neighbour count).

The clip ``c`` must lie in ``[MIN_CLIP, MAX_CLIP] = [2^-960, 2^960]``, where every step of
encoding and decoding is a finite, normal float operation, so the result stays within the
quantisation bound (one step ``2c / (2^b - 1)`` per value): the grid step ``2c / (2^b - 1)``
and its inverse are normal for every ``b <= 31`` once ``c >= 2^-992``, and a decoded sum of up
to ``2^31`` encodings (at most ``2^33 c`` in magnitude) is finite once ``c <= 2^990``; the
limits leave 30 bits of margin. Outside, ``x + c`` or ``2c`` overflows (``clip=1e308``: a NaN
sum) or ``(2^b - 1) / (2c)`` does (``clip=1e-310``: ``-c`` decoded as ``+c``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..privacy.rng import NoiseGenerator

__all__ = ["MAX_CLIP", "MIN_CLIP", "check_clip", "decode_sum", "encode", "max_bits"]

_MODULUS = 1 << 32
MIN_CLIP = 2.0**-960
MAX_CLIP = 2.0**960


def max_bits(n: int) -> int:
    """The largest ``b`` with ``n 2^b < 2^32``; ValueError when there is none."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    b = ((_MODULUS - 1) // n).bit_length() - 1
    if b < 1:
        raise ValueError(f"n={n} clients leave no bit per value below 2^32 (need n < 2^31)")
    return b


def check_bits(bits: int, n: int) -> int:
    """``bits`` if ``n 2^bits < 2^32`` and ``bits >= 1``, else a ValueError saying why."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    if bits < 1 or n << bits >= _MODULUS:
        raise ValueError(
            f"bits={bits} with n={n} clients: the sum could reach n * 2^bits >= 2^32 and wrap; "
            f"use bits <= {max_bits(n)}"
        )
    return bits


def _check_bound(value: float, name: str, rule: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    if not MIN_CLIP <= v <= MAX_CLIP:
        raise ValueError(
            f"{rule} must be in [2^-960, 2^960] (about 1e-289 to 1e289), got {v!r}: "
            "outside, the fixed-point encoding overflows or underflows"
        )
    return v


def check_clip(clip: float, max_weight: float = 1.0) -> float:
    """``clip`` as a float, after checking it (and ``clip * max_weight``, the bound of a
    weighted sum's values, and ``max_weight``, the bound of its weights) against
    ``[MIN_CLIP, MAX_CLIP]``; TypeError or ValueError naming the argument otherwise."""
    c = _check_bound(clip, "clip", "clip")
    w = _check_bound(max_weight, "max_weight", "max_weight")
    _check_bound(c * w, "clip * max_weight", "clip * max_weight (a weighted sum's bound)")
    return c


def encode(
    x: NDArray[np.floating[Any]], clip: float, bits: int, generator: NoiseGenerator
) -> NDArray[np.uint32]:
    """The unbiased ``bits``-bit encoding of ``x`` clipped to ``[-clip, clip]`` (uint32)."""
    c = check_clip(clip)
    if not 1 <= bits <= 31:
        raise ValueError(f"bits must be in [1, 31], got {bits}")
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(v).all():
        raise ValueError("x must be finite (NaN or infinity found)")
    top = float((1 << bits) - 1)
    y = (np.clip(v, -c, c) + c) * (top / (2.0 * c))
    np.clip(y, 0.0, top, out=y)
    low = np.floor(y)
    up = generator.uniform(size=y.size) < (y - low)
    out: NDArray[np.uint32] = (low + up).astype(np.uint32)
    return out


def decode_sum(
    total: NDArray[np.uint32], count: int, clip: float, bits: int
) -> NDArray[np.float64]:
    """The float sum of ``count`` encodings whose uint32 sum is ``total``."""
    c = check_clip(clip)
    top = float((1 << bits) - 1)
    out: NDArray[np.float64] = total.astype(np.float64) * (2.0 * c / top) - count * c
    return out
