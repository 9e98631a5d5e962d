"""SecAgg+ communication graphs and the choice of degree ``k`` and threshold ``t``.

Each client masks against its ``k`` neighbours, and shares its keys among them and itself
(``k + 1`` holders), as in Bonawitz et al.; its neighbours are in a Harary graph
``H(n, k)`` (client ``i`` is joined to ``i +- 1, ..., i +- k/2`` modulo ``n``) whose labels are
a random permutation derived from the session id, as in Bell et al. (CCS 2020). For small
``n``, or on request, the graph is complete (``k = n - 1``, the original SecAgg).

``(k, t)`` follow Bell et al.'s two conditions, with ``m = floor(gamma n)`` colluding clients
(the server's allies) and dropout rate ``delta``:

- security: no honest client has ``2t - k - 1`` or more colluding neighbours (then the server
  can never collect ``t`` shares of both its mask key and its self-mask seed), failure
  probability ``n P[Hypergeom(n - 1, m, k) >= 2t - k - 1] <= 2^-sigma``;
- correctness: every client keeps at least ``t`` live neighbours, failure probability
  ``n P[Binomial(k, delta) > k - t] <= 2^-eta``.

The smallest even ``k`` admitting such a ``t`` is used, with the smallest such ``t`` (most
dropouts tolerated).

Bell et al. also require the honest survivors' subgraph to stay connected (else the server
learns the sums of its components). In ``H(n, k)`` (jumps ``1 .. w``, ``w = k/2``) a removed set
splits the survivors only if it holds two disjoint runs of ``w`` consecutive positions (each
arc between two separated survivors must be cut by a full run). With ``r`` of the ``n``
positions removed at random (the colluders and the dropped; positions are random through the
session's relabelling), two given runs are removed with probability at most
``(r / n)^(2w)``, so ``P[split] <= sum_r P[r removed] min(1, n^2 (r / n)^(2w))``, with ``r``
the ``m`` colluders plus ``Binomial(n - m, delta)`` dropped and no split at all below ``k``
removed (``H(n, k)`` is ``k``-vertex-connected). This third bound must be ``<= 2^-sigma`` too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

__all__ = ["GraphParameters", "choose_parameters", "neighbours"]

SECURITY_BITS = 40
CORRECTNESS_BITS = 20


@dataclass(frozen=True)
class GraphParameters:
    """Degree ``k``, threshold ``t``, whether the graph is complete, and the bounds met.

    ``log2_security_failure``, ``log2_correctness_failure`` and
    ``log2_connectivity_failure`` are the log2 of the bounds of the module docstring (``-inf``
    when the event is impossible).
    """

    n: int
    k: int
    t: int
    complete: bool
    log2_security_failure: float
    log2_correctness_failure: float
    log2_connectivity_failure: float = -math.inf


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _hypergeom_tail(pop: int, marked: int, draws: int, at_least: int) -> float:
    """``P[X >= at_least]``, ``X`` the marked items among ``draws`` taken from ``pop``."""
    lo = max(at_least, 0, draws - (pop - marked))
    hi = min(marked, draws)
    if lo > hi:
        return 0.0
    base = _log_comb(pop, draws)
    return sum(
        math.exp(_log_comb(marked, c) + _log_comb(pop - marked, draws - c) - base)
        for c in range(lo, hi + 1)
    )


def _binom_tail(trials: int, p: float, above: int) -> float:
    """``P[X > above]`` for ``X ~ Binomial(trials, p)``."""
    if above >= trials:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    return sum(
        math.exp(_log_comb(trials, j) + j * lp + (trials - j) * lq)
        for j in range(max(above + 1, 0), trials + 1)
    )


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else -math.inf


def _log2_split(n: int, k: int, colluders: int, delta: float) -> float:
    """log2 of the bound on the honest survivors' subgraph of ``H(n, k)`` splitting."""
    w = k // 2
    honest = n - colluders
    total = 0.0
    for dropped in range(honest + 1):
        removed = colluders + dropped
        if removed < k:
            continue  # k-vertex-connected: fewer than k removed never split it
        if delta <= 0.0:
            break
        if delta >= 1.0 and dropped < honest:
            continue
        log_pmf = (
            _log_comb(honest, dropped)
            + dropped * math.log(delta)
            + (honest - dropped) * math.log1p(-delta)
            if 0.0 < delta < 1.0
            else 0.0
        )
        log_split = min(0.0, 2 * math.log(n) + 2 * w * math.log(removed / n))
        total += math.exp(log_pmf + log_split)
    return _log2(total)


def _bounds(n: int, k: int, t: int, colluders: int, delta: float) -> tuple[float, float]:
    sec = n * _hypergeom_tail(n - 1, colluders, k, 2 * t - k - 1)
    cor = n * _binom_tail(k, delta, k - t)
    return _log2(sec), _log2(cor)


def choose_parameters(
    n: int,
    dropout_rate: float = 0.1,
    collusion_fraction: float = 0.05,
    *,
    complete: bool = False,
) -> GraphParameters:
    """``(k, t)`` for ``n`` clients (see the module docstring).

    Raises ValueError when even the complete graph cannot be secure (too many colluders)
    or the arguments are out of range. When no sparse graph meets both bounds the complete
    graph is used with the smallest secure ``t``; its correctness bound is reported in
    ``log2_correctness_failure`` (small ``n`` with dropouts cannot reach ``2^-20``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}")
    if not 0.0 <= collusion_fraction < 0.5:
        raise ValueError(f"collusion_fraction must be in [0, 0.5), got {collusion_fraction!r}")
    colluders = min(n - 1, math.floor(collusion_fraction * n + 1e-9))
    if not complete:
        for k in range(2, n - 1, 2):
            for t in range((k + 1) // 2 + 1, k + 1):
                sec, cor = _bounds(n, k, t, colluders, dropout_rate)
                if sec > -SECURITY_BITS:
                    continue
                if cor <= -CORRECTNESS_BITS:
                    split = _log2_split(n, k, colluders, dropout_rate)
                    if split <= -SECURITY_BITS:
                        return GraphParameters(n, k, t, False, sec, cor, split)
                break  # a larger t only worsens correctness (and a split needs a larger k)
    k = n - 1
    for t in range((k + 1) // 2 + 1, k + 2):
        sec, cor = _bounds(n, k, t, colluders, dropout_rate)
        if sec <= -SECURITY_BITS:
            return GraphParameters(n, k, t, True, sec, cor)
    raise ValueError(
        f"collusion_fraction={collusion_fraction} is too large for n={n}: no threshold keeps "
        f"the {colluders} colluders from reconstructing a client's keys"
    )


def _permutation(n: int, seed: bytes) -> list[int]:
    """A uniformly random permutation of ``range(n)`` from SHA-256 of ``seed`` (Fisher-Yates
    with rejection sampling)."""
    perm = list(range(n))
    stream = b""
    counter = 0

    def draw(bound: int) -> int:
        nonlocal stream, counter
        bits = bound.bit_length()
        while True:
            if len(stream) < 8:
                stream += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
                counter += 1
            v = int.from_bytes(stream[:8], "little") >> (64 - bits)
            stream = stream[8:]
            if v < bound:
                return v

    for i in range(n - 1, 0, -1):
        j = draw(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def neighbours(params: GraphParameters, session_id: bytes) -> list[tuple[int, ...]]:
    """Sorted neighbour lists of clients ``0 .. n - 1`` (never including the client)."""
    n, k = params.n, params.k
    if params.complete:
        return [tuple(j for j in range(n) if j != i) for i in range(n)]
    perm = _permutation(n, b"hierfed.secagg.graph.v1\x00" + bytes(session_id))
    out: list[set[int]] = [set() for _ in range(n)]
    for pos in range(n):
        for step in range(1, k // 2 + 1):
            a, b = perm[pos], perm[(pos + step) % n]
            out[a].add(b)
            out[b].add(a)
    return [tuple(sorted(s)) for s in out]
