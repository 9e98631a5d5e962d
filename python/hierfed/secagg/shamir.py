"""Shamir secret sharing over the prime field of ``P = 2^127 - 1``.

A secret is a 252-bit integer (32 bytes, little-endian, the top four bits zero: a self-mask
seed draws 252 random bits, an X25519 key keeps its 251 unclamped bits), cut into two 126-bit
field elements, each shared with its own random polynomial of degree ``threshold - 1``; holder
``x`` (an integer in ``[1, P)``) gets the two evaluations at ``x``. Any ``threshold`` holders
reconstruct by Lagrange interpolation at 0; fewer learn nothing (each element is uniformly
distributed given their shares).
"""

from __future__ import annotations

import math
import operator
import os
import secrets
from collections.abc import Sequence

__all__ = [
    "ELEMENTS",
    "SECRET_BITS",
    "P",
    "bytes_to_elements",
    "decode",
    "draw_secret",
    "elements_to_bytes",
    "interpolate",
    "reconstruct",
    "split",
]

P = (1 << 127) - 1
ELEMENTS = 2  # field elements per secret
SECRET_BITS = 252
_HALF = SECRET_BITS // ELEMENTS  # bits per element (each < 2^126 < P)


def draw_secret() -> bytes:
    """A fresh secret: 252 random bits from the OS, as 32 bytes."""
    v = int.from_bytes(os.urandom(32), "little") >> (256 - SECRET_BITS)
    return v.to_bytes(32, "little")


def bytes_to_elements(secret: bytes) -> tuple[int, ...]:
    """The two field elements of a secret (32 bytes holding a value below ``2^252``)."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != 32:
        raise ValueError("secret must be 32 bytes")
    v = int.from_bytes(secret, "little")
    if v >> SECRET_BITS:
        raise ValueError(f"secret must be below 2^{SECRET_BITS}")
    return (v & ((1 << _HALF) - 1), v >> _HALF)


def elements_to_bytes(elements: Sequence[int]) -> bytes:
    """The 32-byte secret of two field elements; ValueError if one is out of range."""
    if len(elements) != ELEMENTS:
        raise ValueError(f"a secret has {ELEMENTS} field elements, got {len(elements)}")
    if any(not 0 <= e < 1 << _HALF for e in elements):
        raise ValueError("a reconstructed element is out of range: a share is corrupted")
    return (elements[0] | elements[1] << _HALF).to_bytes(32, "little")


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


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """``1 / v mod P`` for every (nonzero) ``v``, with one inversion (Montgomery's trick)."""
    prefix = [1]
    for v in values:
        prefix.append(prefix[-1] * v % P)
    inv = pow(prefix[-1], -1, P)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = inv * prefix[i] % P
        inv = inv * values[i] % P
    return out


def _weights(xs: Sequence[int]) -> list[int]:
    """Barycentric weights ``w_i = 1 / prod_{j != i} (x_i - x_j)`` (one inversion for all)."""
    return _batch_inverse([math.prod([xi - xj for xj in xs if xj != xi]) % P for xi in xs])


def _lagrange(xs: Sequence[int], w: Sequence[int]) -> list[int]:
    """``l_i(0) = w_i prod_{j != i} (0 - x_j)`` from the weights ``w`` of ``xs``."""
    total = math.prod(xs)
    sign = -1 if len(xs) % 2 == 0 else 1  # (-1)^(len - 1)
    return [sign * (total // xi) * wi % P for xi, wi in zip(xs, w, strict=True)]


def lagrange_at_zero(xs: Sequence[int]) -> list[int]:
    """Coefficients ``l_i`` with ``f(0) = sum_i l_i f(xs[i])`` for every ``f`` of degree
    below ``len(xs)``."""
    if len(set(xs)) != len(xs) or any(not 0 < x < P for x in xs):
        raise ValueError("share x-coordinates must be distinct integers in [1, P)")
    return _lagrange(xs, _weights(xs))


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


# ---- robust reconstruction (Reed-Solomon decoding, Gao 2003) --------------------------------

Poly = list[int]  # coefficients, lowest degree first, over GF(P)


def _trim(a: Poly) -> Poly:
    while a and a[-1] == 0:
        a.pop()
    return a


def _sub(a: Poly, b: Poly) -> Poly:
    out = [0] * max(len(a), len(b))
    for i, v in enumerate(a):
        out[i] = v
    for i, v in enumerate(b):
        out[i] = (out[i] - v) % P
    return _trim(out)


def _mul(a: Poly, b: Poly) -> Poly:
    if not a or not b:
        return []
    out = [0] * (len(a) + len(b) - 1)
    for i, u in enumerate(a):
        if u:
            for j, v in enumerate(b):
                out[i + j] += u * v
    return _trim([v % P for v in out])


def _divmod(a: Poly, b: Poly) -> tuple[Poly, Poly]:
    rem = list(a)
    if len(rem) < len(b):
        return [], _trim(rem)
    inv = pow(b[-1], -1, P)
    quot = [0] * (len(rem) - len(b) + 1)
    for i in range(len(quot) - 1, -1, -1):
        c = rem[i + len(b) - 1] * inv % P
        quot[i] = c
        if c:
            for j, v in enumerate(b):
                rem[i + j] = (rem[i + j] - c * v) % P
    return _trim(quot), _trim(rem[: len(b) - 1])


def _evaluate(a: Poly, x: int) -> int:
    acc = 0
    for c in reversed(a):
        acc = (acc * x + c) % P
    return acc


def _interpolate_poly(xs: Sequence[int], ys: Sequence[int]) -> Poly:
    """The polynomial of degree below ``len(xs)`` through the points (Newton's form)."""
    m = len(xs)
    coef = [y % P for y in ys]
    for j in range(1, m):
        for i in range(m - 1, j - 1, -1):
            coef[i] = (coef[i] - coef[i - 1]) * pow(xs[i] - xs[i - j], -1, P) % P
    out: Poly = []
    for i in range(m - 1, -1, -1):  # Horner on the Newton basis
        out = _sub(_mul(out, [(-xs[i]) % P, 1]), [(-coef[i]) % P]) if out else [coef[i]]
    return _trim(out)


def _gao(xs: Sequence[int], ys: Sequence[int], threshold: int) -> Poly | None:
    """The polynomial of degree below ``threshold`` agreeing with all but at most
    ``(len(xs) - threshold) // 2`` of the points, or None when there is none."""
    g0: Poly = [1]
    for x in xs:
        g0 = _mul(g0, [(-x) % P, 1])
    g1 = _interpolate_poly(xs, ys)
    stop = (len(xs) + threshold) / 2
    r0, r1, v0, v1 = g0, g1, [], [1]
    while r1 and len(r1) - 1 >= stop:
        q, r = _divmod(r0, r1)
        r0, r1 = r1, r
        v0, v1 = v1, _sub(v0, _mul(q, v1))
    if not v1:
        return None
    f, rem = _divmod(r1, v1)
    if rem or len(f) > threshold:
        return None
    return f


_INVERSES = [0, 1]  # 1 / i mod P for small i, grown on demand


def _small_inverses(bound: int) -> list[int]:
    """``1 / i mod P`` for ``i`` in ``[0, bound)`` (0 at 0): ``inv(i) = -(P // i) inv(P % i)``."""
    inv = _INVERSES
    for i in range(len(inv), bound):
        inv.append(-(P // i) * inv[P % i] % P)
    return inv


def _on_polynomial(
    xs: Sequence[int], shares: Sequence[Sequence[int]], threshold: int, w: Sequence[int]
) -> bool:
    """Whether every share lies on the polynomials through the first ``threshold`` shares
    (``w``: the weights of their x-coordinates).

    Barycentric evaluation: ``f(x) = l(x) sum_i w_i y_i / (x - x_i)`` with
    ``l(x) = prod_i (x - x_i)`` and ``w_i = 1 / prod_{b != i} (x_i - x_b)``; the differences of
    small x-coordinates come from a table of inverses, so each check costs ``O(threshold)``.
    """
    base = list(xs[:threshold])
    span = max(xs) - min(xs) + 1
    if span > 1 << 20:
        return all(
            interpolate(base, shares[:threshold], x) == tuple(s)
            for x, s in zip(xs[threshold:], shares[threshold:], strict=True)
        )
    inv = _small_inverses(span)
    # One random combination of the elements' polynomials checks all of them: a share off any
    # of them is off the combination except with probability below width / P.
    rho = [pow(secrets.randbelow(P - 1) + 1, e, P) for e in range(len(shares[0]))]
    ys = [sum(map(operator.mul, rho, s)) % P for s in shares]
    z = [wi * y % P for wi, y in zip(w, ys, strict=False)]
    for x, y in zip(xs[threshold:], ys[threshold:], strict=True):
        ell = math.prod([x - xb for xb in base]) % P
        d = [inv[x - xb] if x > xb else P - inv[xb - x] for xb in base]
        if ell * sum(map(operator.mul, z, d)) % P != y:
            return False
    return True


def decode(
    xs: Sequence[int], shares: Sequence[Sequence[int]], threshold: int
) -> tuple[tuple[int, ...], list[int]]:
    """The shared elements despite corrupted shares, and the x-coordinates of the bad ones.

    Each element's shares are a Reed-Solomon codeword of its degree ``threshold - 1``
    polynomial, so with ``m`` shares up to ``e = (m - threshold) // 2`` corrupted ones are
    corrected (and found). The fast path interpolates ``threshold`` shares and checks that
    every other share lies on that polynomial; only on a mismatch is Gao's decoder run.
    Raises ValueError when some element has no polynomial within ``e`` errors (more
    corruption than the shares can correct): never a wrong value with ``e`` or fewer errors.
    """
    m = len(xs)
    if m != len(shares) or m < threshold or threshold < 1:
        raise ValueError(f"decode needs at least threshold={threshold} shares, got {m}")
    if len(set(xs)) != m or any(not 0 < x < P for x in xs):
        raise ValueError("share x-coordinates must be distinct integers in [1, P)")
    width = len(shares[0])
    base = xs[:threshold]
    w = _weights(base)
    lam = _lagrange(base, w)
    secret = [sum(li * s[e] for li, s in zip(lam, shares, strict=False)) % P for e in range(width)]
    if _on_polynomial(xs, shares, threshold, w):
        return tuple(secret), []
    bad: set[int] = set()
    out = []
    for e in range(width):
        f = _gao(xs, [s[e] for s in shares], threshold)
        if f is None:
            raise ValueError(
                f"the {m} shares cannot be decoded: more than {(m - threshold) // 2} are corrupted"
            )
        bad.update(x for x, s in zip(xs, shares, strict=True) if _evaluate(f, x) != s[e])
        out.append(f[0] if f else 0)
    return tuple(out), sorted(bad)
