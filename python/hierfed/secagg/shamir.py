"""Shamir secret sharing over the prime field of ``P = 2^127 - 1``.

A 32-byte secret is cut into three field elements (15, 15 and 2 bytes, little-endian), each
shared with its own random polynomial of degree ``threshold - 1``; holder ``x`` (an integer in
``[1, P)``) gets the three evaluations at ``x``. Any ``threshold`` holders reconstruct by
Lagrange interpolation at 0; fewer learn nothing (each element is uniformly distributed given
their shares).
"""

from __future__ import annotations

import math
import operator
import secrets
from collections.abc import Sequence

__all__ = [
    "ELEMENTS",
    "P",
    "bytes_to_elements",
    "elements_to_bytes",
    "interpolate",
    "reconstruct",
    "split",
]

P = (1 << 127) - 1
ELEMENTS = 3  # field elements per 32-byte secret
_CHUNKS = (15, 15, 2)  # bytes per element (each < 2^127)


def bytes_to_elements(secret: bytes) -> tuple[int, ...]:
    """The three field elements of a 32-byte secret."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
        raise ValueError("secret must be 32 bytes")
    out, at = [], 0
    for size in _CHUNKS:
        out.append(int.from_bytes(secret[at : at + size], "little"))
        at += size
    return tuple(out)


def elements_to_bytes(elements: Sequence[int]) -> bytes:
    """The 32-byte secret of three field elements; ValueError if one is out of range."""
    if len(elements) != ELEMENTS:
        raise ValueError(f"a secret has {ELEMENTS} field elements, got {len(elements)}")
    parts = []
    for e, size in zip(elements, _CHUNKS, strict=True):
        if not 0 <= e < 1 << (8 * size):
            raise ValueError("a reconstructed element is out of range: a share is corrupted")
        parts.append(e.to_bytes(size, "little"))
    return b"".join(parts)


def split(elements: Sequence[int], holders: Sequence[int], threshold: int) -> list[tuple[int, ...]]:
    """Shares of ``elements`` for each of ``holders``: ``out[i][e] = f_e(holders[i])``.

    Parameters
    ----------
    elements
        Field elements in ``[0, P)``.
    holders
        Distinct x-coordinates in ``[1, P)``.
    threshold
        Shares needed to reconstruct, in ``[1, len(holders)]``.
    """
    if not 1 <= threshold <= len(holders):
        raise ValueError(f"threshold must be in [1, {len(holders)}], got {threshold}")
    if len(set(holders)) != len(holders) or any(not 0 < x < P for x in holders):
        raise ValueError("holders must be distinct integers in [1, P)")
    if any(not 0 <= e < P for e in elements):
        raise ValueError("elements must be in [0, P)")
    polys = [[e] + [secrets.randbelow(P) for _ in range(threshold - 1)] for e in elements]
    out = []
    for x in holders:
        powers = [1] * threshold
        for j in range(1, threshold):
            powers[j] = powers[j - 1] * x % P
        out.append(tuple(sum(map(operator.mul, coefs, powers)) % P for coefs in polys))
    return out


def lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    """Coefficients ``l_i`` with ``f(0) = sum_i l_i f(xs[i])`` for every ``f`` of degree
    below ``len(xs)``."""
    if len(set(xs)) != len(xs) or any(not 0 < x < P for x in xs):
        raise ValueError("share x-coordinates must be distinct integers in [1, P)")
    total = math.prod(xs)
    nums = [total // xi % P for xi in xs]
    dens = [math.prod([xj - xi for xj in xs if xj != xi]) % P for xi in xs]
    # One inversion for all denominators (Montgomery's trick).
    prefix = [1]
    for den in dens:
        prefix.append(prefix[-1] * den % P)
    inv = pow(prefix[-1], -1, P)
    coefs = [0] * len(xs)
    for i in range(len(xs) - 1, -1, -1):
        coefs[i] = nums[i] * (inv * prefix[i] % P) % P
        inv = inv * dens[i] % P
    return coefs


def interpolate(xs: Sequence[int], shares: Sequence[Sequence[int]], at: int) -> tuple[int, ...]:
    """The elements' polynomials through ``shares`` (held by ``xs``), evaluated at ``at``."""
    if len(set(xs)) != len(xs) or not xs:
        raise ValueError("share x-coordinates must be distinct, and at least one")
    out = [0] * len(shares[0])
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * (at - xj) % P
                den = den * (xi - xj) % P
        li = num * pow(den, -1, P) % P
        for e, v in enumerate(shares[i]):
            out[e] = (out[e] + li * v) % P
    return tuple(out)


def reconstruct(xs: Sequence[int], shares: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The elements shared by ``shares[i]`` (held by ``xs[i]``), interpolated at 0.

    With fewer shares than the threshold the result is a wrong, uniformly random value:
    callers check it (against a public key or a commitment).
    """
    if len(xs) != len(shares) or not xs:
        raise ValueError("reconstruct needs one share per x-coordinate and at least one")
    width = len(shares[0])
    if any(len(s) != width for s in shares):
        raise ValueError("shares must all hold the same number of elements")
    lam = lagrange_at_zero(xs)
    pairs = list(zip(lam, shares, strict=True))
    return tuple(sum(li * s[e] for li, s in pairs) % P for e in range(width))
