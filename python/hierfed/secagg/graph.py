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

:func:`parameter_bounds` gives the three bounds of one ``(k, t)`` exactly as
:func:`choose_parameters` computes them, so that a client can check server-proposed
parameters; :func:`colluder_split_bound` is the third bound for the colluders alone, for
clients that check the dropouts exactly with :func:`survivors_connected` (``O(n)``, from the
ring positions). :func:`client_neighbours` is one client's row of :func:`neighbours` in
``O(n)``; :func:`ring_positions` exposes the session's relabelling.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CORRECTNESS_BITS",
    "SECURITY_BITS",
    "GraphParameters",
    "choose_parameters",
    "client_neighbours",
    "colluder_count",
    "colluder_split_bound",
    "neighbours",
    "parameter_bounds",
    "ring_order",
    "ring_positions",
    "survivors_connected",
]

SECURITY_BITS = 40
CORRECTNESS_BITS = 20
_GRAPH_DOMAIN = b"hierfed.secagg.graph.v1\x00"


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


def _check_count(value: int, name: str, low: int, high: int) -> int:
    """``value`` if it is an int in ``[low, high]``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _check_rate(value: float, name: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not 0.0 <= value < high:
        raise ValueError(f"{name} must be in [0, {high}), got {value!r}")
    return float(value)


class _Bounds:
    """The three failure bounds for ``n`` clients, ``m`` colluders and dropout rate ``delta``.

    ``lf[i] = lgamma(i + 1)`` is built once (``math.lgamma``: deterministic), so that each
    bound is a few numpy operations over its exact range of terms (no truncation): the
    log-binomial coefficients are ``(lf[a] - lf[b]) - lf[a - b]``, the terms ``exp`` of
    their sums. Every caller (:func:`choose_parameters` and :func:`parameter_bounds`) goes
    through these methods, so a reported bound is the one a decision was made on.
    """

    def __init__(self, n: int, colluders: int, delta: float) -> None:
        self.n, self.m, self.delta = n, colluders, delta
        self.lf = np.array([math.lgamma(i + 1) for i in range(n + 1)])
        self._tails: dict[int, tuple[int, int, NDArray[np.float64]]] = {}

    def _log_comb(self, a: int | NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.float64]:
        lf = self.lf
        out: NDArray[np.float64] = (lf[a] - lf[b]) - lf[a - b]
        return out

    def _hypergeom_tails(self, k: int) -> tuple[int, int, NDArray[np.float64]]:
        """``(lo, hi, tails)``: ``tails[c - lo] = P[X >= c]`` for ``X`` the colluders among
        ``k`` neighbours drawn from the ``n - 1`` others, ``c`` in ``[lo, hi]``."""
        got = self._tails.get(k)
        if got is None:
            pop, m = self.n - 1, self.m
            lo, hi = max(0, k - (pop - m)), min(m, k)
            c = np.arange(lo, hi + 1)
            log_terms = self._log_comb(m, c) + self._log_comb(pop - m, k - c)
            base = float(self._log_comb(pop, np.array(k)))
            tails = np.cumsum(np.exp(log_terms - base)[::-1])[::-1]
            got = self._tails[k] = (lo, hi, tails)
        return got

    def security(self, k: int, t: int) -> float:
        """log2 of ``n P[X >= 2t - k - 1]`` (``X`` the colluding neighbours of a client)."""
        lo, hi, tails = self._hypergeom_tails(k)
        at_least = max(2 * t - k - 1, lo)
        return _log2(self.n * float(tails[at_least - lo])) if at_least <= hi else -math.inf

    def correctness(self, k: int, t: int) -> float:
        """log2 of ``n P[Binomial(k, delta) > k - t]`` (a client left with fewer than ``t``
        live holders among its ``k`` neighbours)."""
        delta, above = self.delta, k - t
        if above >= k or delta <= 0.0:
            return -math.inf
        j = np.arange(max(above + 1, 0), k + 1)
        log_terms = self._log_comb(k, j) + j * math.log(delta) + (k - j) * math.log1p(-delta)
        return _log2(self.n * float(np.exp(log_terms).sum()))

    def connectivity(self, k: int) -> float:
        """log2 of the bound on the honest survivors' subgraph of ``H(n, k)`` splitting."""
        n, m, delta = self.n, self.m, self.delta
        honest = n - m
        if delta <= 0.0:
            return -math.inf  # only the colluders are removed: see colluder_split_bound
        dropped = np.arange(max(k - m, 0), honest + 1)  # fewer than k removed: no split
        if dropped.size == 0:
            return -math.inf
        log_pmf = (
            self._log_comb(honest, dropped)
            + dropped * math.log(delta)
            + (honest - dropped) * math.log1p(-delta)
        )
        log_split = np.minimum(0.0, 2 * math.log(n) + 2 * (k // 2) * np.log((m + dropped) / n))
        return _log2(float(np.exp(log_pmf + log_split).sum()))

    def smallest_secure_t(self, k: int, t_low: int, t_high: int) -> int | None:
        """The smallest ``t`` in ``[t_low, t_high]`` meeting the security bound (binary search:
        the bound only falls as ``t`` grows), or None."""
        if t_low > t_high or self.security(k, t_high) > -SECURITY_BITS:
            return None
        while t_low < t_high:
            mid = (t_low + t_high) // 2
            if self.security(k, mid) <= -SECURITY_BITS:
                t_high = mid
            else:
                t_low = mid + 1
        return t_low


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else -math.inf


def _log2_split(n: int, k: int, colluders: int, delta: float) -> float:
    """log2 of the bound on the honest survivors' subgraph of ``H(n, k)`` splitting."""
    return _Bounds(n, colluders, delta).connectivity(k)


def colluder_count(n: int, collusion_fraction: float) -> int:
    """``m = floor(gamma n)`` colluders (at most ``n - 1``), as :func:`choose_parameters` counts
    them: the ``colluders`` to pass to :func:`parameter_bounds`."""
    n = _check_count(n, "n", 2, 1 << 31)
    gamma = _check_rate(collusion_fraction, "collusion_fraction", 0.5)
    return min(n - 1, math.floor(gamma * n + 1e-9))


def parameter_bounds(
    n: int, k: int, t: int, colluders: int, dropout_rate: float, *, complete: bool
) -> tuple[float, float, float]:
    """``(log2 security, log2 correctness, log2 connectivity)`` failure bounds of ``(k, t)``.

    The bounds of the module docstring, computed exactly as :func:`choose_parameters` does
    (``-inf`` for an impossible event; connectivity is ``-inf`` for the complete graph, whose
    survivors are always connected). A client can call it to check server-proposed
    ``(k, t)``: accept when security and connectivity are ``<= -SECURITY_BITS``. ``O(n)``
    time and memory (a table of ``n + 1`` log-factorials; about 0.2 ms at ``n = 1000``).

    Parameters
    ----------
    n
        Number of clients (>= 2).
    k
        Degree: even in ``[2, n - 2]`` for the Harary graph, ``n - 1`` when ``complete``.
    t
        Threshold, in ``[1, k + 1]`` (the ``k + 1`` holders of a client's shares).
    colluders
        Number of colluding clients, in ``[0, n - 1]``.
    dropout_rate
        In ``[0, 1)``.
    complete
        Whether the graph is complete.
    """
    n = _check_count(n, "n", 2, 1 << 31)
    if not isinstance(complete, bool):
        raise TypeError(f"complete must be a bool, got {type(complete).__name__}")
    if complete:
        k = _check_count(k, "k", n - 1, n - 1)
    else:
        k = _check_count(k, "k", 2, n - 2)
        if k % 2:
            raise ValueError(f"k must be even for the Harary graph H(n, k), got {k}")
    t = _check_count(t, "t", 1, k + 1)
    m = _check_count(colluders, "colluders", 0, n - 1)
    bounds = _Bounds(n, m, _check_rate(dropout_rate, "dropout_rate", 1.0))
    split = -math.inf if complete else bounds.connectivity(k)
    return bounds.security(k, t), bounds.correctness(k, t), split


def colluder_split_bound(n: int, k: int, colluders: int) -> float:
    """log2 of the bound on the colluders alone splitting the honest clients of ``H(n, k)``.

    ``min(1, n^2 (m / n)^(2w))`` with ``w = k / 2`` and ``m = colluders`` when ``m >= k``;
    ``-inf`` below (``H(n, k)`` is ``k``-vertex-connected). For clients that check the
    dropouts exactly (:func:`survivors_connected`) and need a bound for the colluders only.
    """
    n = _check_count(n, "n", 2, 1 << 31)
    k = _check_count(k, "k", 2, n - 1)
    m = _check_count(colluders, "colluders", 0, n - 1)
    if m < k:
        return -math.inf
    return min(0.0, 2 * math.log2(n) + 2 * (k // 2) * math.log2(m / n))


def choose_parameters(
    n: int,
    dropout_rate: float = 0.1,
    collusion_fraction: float = 0.05,
    *,
    complete: bool = False,
) -> GraphParameters:
    """``(k, t)`` for ``n`` clients (see the module docstring).

    For each even ``k`` from 2 up, the smallest ``t`` meeting the security bound (found by
    binary search) is taken; the first ``k`` whose correctness and connectivity bounds also
    hold at that ``t`` is returned. ``O(n^2)`` numpy work in the worst case (no sparse graph
    fits, e.g. ``dropout_rate=0.5``), a few milliseconds for ``n = 1000`` by default.

    Raises ValueError when even the complete graph cannot be secure (too many colluders)
    or the arguments are out of range. When no sparse graph meets both bounds the complete
    graph is used with the smallest secure ``t``; its correctness bound is reported in
    ``log2_correctness_failure`` (small ``n`` with dropouts cannot reach ``2^-20``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    dropout_rate = _check_rate(dropout_rate, "dropout_rate", 1.0)
    collusion_fraction = _check_rate(collusion_fraction, "collusion_fraction", 0.5)
    colluders = colluder_count(n, collusion_fraction)
    bounds = _Bounds(n, colluders, dropout_rate)
    if not complete:
        for k in range(2, n - 1, 2):
            t = bounds.smallest_secure_t(k, (k + 1) // 2 + 1, k)
            if t is None:
                continue
            cor = bounds.correctness(k, t)
            if cor <= -CORRECTNESS_BITS:
                split = bounds.connectivity(k)
                if split <= -SECURITY_BITS:
                    return GraphParameters(n, k, t, False, bounds.security(k, t), cor, split)
    k = n - 1
    t = bounds.smallest_secure_t(k, (k + 1) // 2 + 1, k + 1)
    if t is not None:
        return GraphParameters(n, k, t, True, bounds.security(k, t), bounds.correctness(k, t))
    raise ValueError(
        f"collusion_fraction={collusion_fraction} is too large for n={n}: no threshold keeps "
        f"the {colluders} colluders from reconstructing a client's keys"
    )


def _permutation(n: int, seed: bytes) -> list[int]:
    """A uniformly random permutation of ``range(n)`` from SHAKE-256 of ``seed``: Fisher-Yates
    over 64-bit words, each draw ``v mod bound`` with ``v`` rejected above the largest multiple
    of ``bound`` (so exactly uniform; a rejection is rarer than ``n / 2^64``)."""
    perm = list(range(n))
    count = n + 8
    words = struct.unpack(f"<{count}Q", hashlib.shake_256(seed).digest(8 * count))
    at = 0
    for i in range(n - 1, 0, -1):
        bound = i + 1
        limit = (1 << 64) - (1 << 64) % bound
        while True:
            if at == len(words):  # practically never: extend the stream
                count *= 2
                words = struct.unpack(f"<{count}Q", hashlib.shake_256(seed).digest(8 * count))
            v = words[at]
            at += 1
            if v < limit:
                break
        j = v % bound
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def ring_order(params: GraphParameters, session_id: bytes) -> list[int]:
    """The client at each position of the ring of ``H(n, k)`` (``_permutation`` of the id).

    ``O(n)`` SHA-256 work: a client computes it once and passes it as ``order`` to
    :func:`client_neighbours` and :func:`survivors_connected`.
    """
    if not isinstance(session_id, (bytes, bytearray, memoryview)):
        raise TypeError(f"session_id must be bytes, got {type(session_id).__name__}")
    return _permutation(params.n, _GRAPH_DOMAIN + bytes(session_id))


def ring_positions(params: GraphParameters, session_id: bytes) -> list[int]:
    """The ring position of each client: client ``i`` sits at ``ring_positions(...)[i]``.

    In ``H(n, k)`` two clients are neighbours iff their positions are at most ``k / 2`` apart
    around the ring of ``n`` positions. For the complete graph the positions exist but do not
    matter (every pair is joined).
    """
    order = ring_order(params, session_id)
    pos = [0] * params.n
    for p, client in enumerate(order):
        pos[client] = p
    return pos


def neighbours(params: GraphParameters, session_id: bytes) -> list[tuple[int, ...]]:
    """Sorted neighbour lists of clients ``0 .. n - 1`` (never including the client)."""
    n, k = params.n, params.k
    if params.complete:
        return [tuple(j for j in range(n) if j != i) for i in range(n)]
    perm = ring_order(params, session_id)
    out: list[set[int]] = [set() for _ in range(n)]
    for pos in range(n):
        for step in range(1, k // 2 + 1):
            a, b = perm[pos], perm[(pos + step) % n]
            out[a].add(b)
            out[b].add(a)
    return [tuple(sorted(s)) for s in out]


def client_neighbours(
    params: GraphParameters,
    session_id: bytes,
    index: int,
    *,
    order: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """``neighbours(params, session_id)[index]`` in ``O(n)``, without building the graph
    (``order``: the :func:`ring_order` if already computed)."""
    n = params.n
    index = _check_count(index, "index", 0, n - 1)
    if params.complete:
        return tuple(j for j in range(n) if j != index)
    perm = ring_order(params, session_id) if order is None else order
    at = perm.index(index)
    w = params.k // 2
    return tuple(sorted({perm[(at + s) % n] for s in range(-w, w + 1) if s}))


def survivors_connected(
    params: GraphParameters,
    session_id: bytes,
    survivors: Collection[int],
    *,
    order: Sequence[int] | None = None,
) -> bool:
    """Whether the subgraph induced on ``survivors`` (client indices) is connected, in ``O(n)``.

    The empty set and a single client count as connected; so does every set in the complete
    graph. In ``H(n, k)`` with ``w = k / 2``, take the survivors' ring positions in circular
    order: two survivors are joined iff their positions are at most ``w`` apart, so the
    survivors are connected iff at most one gap between circularly consecutive survivors is
    longer than ``w`` positions. (With no long gap, or one, the consecutive pairs form a
    cycle or a path; with two or more, an edge spans at most ``w`` positions and so cannot
    cross a long gap, and the survivors between two long gaps are cut off from the rest.)
    """
    n = params.n
    alive = set(survivors)
    if any(isinstance(s, bool) or not isinstance(s, int) for s in alive) or (
        alive and not 0 <= min(alive) <= max(alive) < n
    ):
        raise ValueError(f"survivors must be client indices in [0, {n})")
    if params.complete or len(alive) <= 1:
        return True
    ring = ring_order(params, session_id) if order is None else order
    pos = [p for p, client in enumerate(ring) if client in alive]
    w = params.k // 2
    long_gaps = sum(b - a > w for a, b in itertools.pairwise(pos))
    long_gaps += pos[0] + n - pos[-1] > w
    return long_gaps <= 1
