"""Byzantine attacks on model updates, each as its paper states it.

- ``sign_flip`` (scaled sign flip): the attacker trains honestly, then sends
  ``-s * g`` for its own update ``g`` (``s`` = strength, default 4: with a fifth of the
  clients attacking, the plain mean's expected step is ``(0.8 - 0.2 s) g``, backwards for
  ``s > 4``).
- ``gaussian``: a vector of i.i.d. ``N(0, sigma^2)`` values (``sigma`` = strength, default
  1), unrelated to the data (Blanchard et al. 2017's Gaussian Byzantine workers).
- ``label_flip``: data poisoning: the attacker trains honestly (clipped like every client) on
  its data with every label ``c`` replaced by ``C - 1 - c`` (:func:`flip_labels`).
- ``alie``, A Little Is Enough (Baruch et al. 2019): every attacker sends
  ``mu - z * sigma``, the coordinate-wise mean and standard deviation (``ddof=1``) of the
  honest updates, with ``z`` from the number of inputs ``n`` and attackers ``f`` of the
  aggregation they join: ``s = floor(n / 2 + 1) - f`` honest inputs to sway,
  ``z = Phi^{-1}((n - s) / n)`` (:func:`alie_z`); a strength overrides ``z``.
- ``ipm``, Inner Product Manipulation (Xie et al. 2019): every attacker sends
  ``-eps * mean(honest updates)`` (``eps`` = strength, default 0.1, the paper's value against
  median-style rules).
- ``optimal_ipm`` and ``optimal_alie``: IPM's ``-tau * mean(honest)`` and ALIE's
  ``mean(honest) + tau * std(honest, ddof=1)`` (ByzFL's sign) with the factor ``tau`` found by
  ByzFL's benchmark line search (:func:`line_search`) against the rule in use: it maximises
  ``|rule(honest + f copies) - mean(honest)|`` (:func:`attack_damage`).
- ``mimic`` (Karimireddy, He & Jaggi 2022): every attacker sends a copy of one honest
  client's update, the client chosen by the paper's online heuristic (:class:`MimicTarget`):
  over the first rounds it learns the direction of largest variance of the honest updates,
  then mimics the client furthest along it, over-representing that client's data.
- ``inf``: every coordinate ``+inf`` (ByzFL's ``Inf``). A federation refuses such updates on
  submission; the simulated flat server drops them too (counted as rejected).

The attackers collude and know the topology: ALIE and IPM use the honest updates and the
counts of the aggregation the attacker's update enters (its basket in a hierarchical
federation, all clients in a flat one; see :mod:`hierfed.simulation.runner`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ATTACKS",
    "DEFAULT_STRENGTH",
    "OPTIMAL",
    "MimicTarget",
    "alie",
    "alie_z",
    "attack_damage",
    "flip_labels",
    "gaussian",
    "inf",
    "ipm",
    "line_search",
    "mimic",
    "optimal_alie",
    "optimal_ipm",
    "sign_flip",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ATTACKS = (
    "none",
    "sign_flip",
    "gaussian",
    "label_flip",
    "alie",
    "ipm",
    "optimal_ipm",
    "optimal_alie",
    "mimic",
    "inf",
)
OPTIMAL = ("optimal_ipm", "optimal_alie")  # the attacks that search against the rule

# Strength of each attack when none is given (None: the attack has no strength, or ALIE's z
# comes from n and f).
DEFAULT_STRENGTH: dict[str, float | None] = {
    "none": None,
    "sign_flip": 4.0,
    "gaussian": 1.0,
    "label_flip": None,
    "alie": None,
    "ipm": 0.1,
    "optimal_ipm": None,
    "optimal_alie": None,
    "mimic": None,
    "inf": None,
}


def sign_flip(update: FloatArray, scale: float) -> FloatArray:
    """``-scale * update``."""
    out: FloatArray = -float(scale) * np.asarray(update, np.float64)
    return out


def gaussian(size: int, sigma: float, rng: np.random.Generator) -> FloatArray:
    """``size`` i.i.d. ``N(0, sigma^2)`` values."""
    out: FloatArray = rng.normal(0.0, float(sigma), size=size)
    return out


def flip_labels(y: IntArray, n_classes: int) -> IntArray:
    """Every label ``c`` replaced by ``n_classes - 1 - c``."""
    out: IntArray = (n_classes - 1 - np.asarray(y)).astype(np.int64)
    return out


def alie_z(n: int, f: int) -> float:
    """Baruch et al. 2019's ``z_max`` for ``n`` inputs of which ``f`` are Byzantine.

    ``s = floor(n / 2 + 1) - f`` and ``z = Phi^{-1}((n - s) / n)``. When the attackers
    already hold a majority (``s < 1``), ``s`` is taken as 1 (``z = Phi^{-1}((n - 1) / n)``).

    Raises
    ------
    ValueError
        Unless ``2 <= n`` and ``1 <= f < n``.
    """
    if not (n >= 2 and 1 <= f < n):
        raise ValueError(f"alie_z needs 2 <= n and 1 <= f < n, got n={n}, f={f}")
    s = max(math.floor(n / 2 + 1) - f, 1)
    return NormalDist().inv_cdf((n - s) / n)


def _honest(honest: FloatArray, least: int) -> FloatArray:
    h = np.asarray(honest, np.float64)
    if h.ndim != 2 or h.shape[0] < least:
        raise ValueError(f"the attack needs an (h, d) array of h >= {least} honest updates")
    return h


def alie(honest: FloatArray, n: int, f: int, z: float | None = None) -> FloatArray:
    """A Little Is Enough: ``mean(honest) - z * std(honest, ddof=1)``, coordinate-wise.

    Parameters
    ----------
    honest
        ``(h, d)`` honest updates (``h >= 2``) of the aggregation the attackers join.
    n, f
        Inputs and Byzantine inputs of that aggregation (for :func:`alie_z`).
    z
        Overrides ``alie_z(n, f)``.
    """
    h = _honest(honest, 2)
    zz = alie_z(n, f) if z is None else float(z)
    out: FloatArray = h.mean(axis=0) - zz * h.std(axis=0, ddof=1)
    return out


def ipm(honest: FloatArray, epsilon: float) -> FloatArray:
    """Inner Product Manipulation: ``-epsilon * mean(honest)``."""
    h = _honest(honest, 1)
    out: FloatArray = -float(epsilon) * h.mean(axis=0)
    return out


Rule = Callable[[FloatArray], FloatArray]  # the aggregate of an (n, d) array of updates


def attack_damage(rule: Rule, honest: FloatArray, byzantine: FloatArray, f: int) -> float:
    """``|rule(honest and f copies of byzantine) - mean(honest)|``, ByzFL's attack objective."""
    h = _honest(honest, 1)
    inputs = np.vstack([h, np.repeat(np.asarray(byzantine, np.float64)[None, :], f, axis=0)])
    return float(np.linalg.norm(np.asarray(rule(inputs), np.float64) - h.mean(axis=0)))


def line_search(
    objective: Callable[[float], float],
    *,
    evals: int = 20,
    start: float = 0.0,
    delta: float = 10.0,
    ratio: float = 0.8,
) -> float:
    """The factor ByzFL's benchmark line search finds for ``objective`` (to maximise).

    Expansion: from ``start``, step by ``delta`` while the objective improves, doubling the
    step each time; on the first step that does not improve, shrink it by ``ratio``. Then
    contraction: try ``best + delta``, keep it if better, shrink ``delta`` by ``ratio``, until
    ``evals`` evaluations in all (ByzFL's defaults).
    """
    if isinstance(evals, bool) or not isinstance(evals, int) or evals < 1:
        raise ValueError(f"evals must be an int >= 1, got {evals!r}")
    if not 0.5 < ratio < 1:
        raise ValueError(f"ratio must be in (0.5, 1), got {ratio}")
    if not (math.isfinite(delta) and delta != 0):
        raise ValueError(f"delta must be finite and non-zero, got {delta}")
    best_x, best_y = float(start), objective(float(start))
    expanding = True
    for _ in range(evals - 1):
        x = best_x + delta
        y = objective(x)
        if y > best_y:
            best_x, best_y = x, y
            if expanding:
                delta *= 2
                continue
        expanding = False
        delta *= ratio
    return best_x


def _alie_plus(h: FloatArray, tau: float) -> FloatArray:
    out: FloatArray = h.mean(axis=0) + tau * h.std(axis=0, ddof=1)
    return out


def optimal_ipm(honest: FloatArray, f: int, rule: Rule, **search: Any) -> FloatArray:
    """IPM's ``-tau * mean(honest)`` with ``tau`` from :func:`line_search` on
    :func:`attack_damage` against ``rule`` with ``f`` attackers (``search``: its options)."""
    h = _honest(honest, 1)
    mu = h.mean(axis=0)
    tau = line_search(lambda t: attack_damage(rule, h, -t * mu, f), **search)
    return ipm(h, tau)


def optimal_alie(honest: FloatArray, f: int, rule: Rule, **search: Any) -> FloatArray:
    """ALIE's ``mean(honest) + tau * std(honest, ddof=1)`` with ``tau`` from
    :func:`line_search` on :func:`attack_damage` against ``rule`` with ``f`` attackers."""
    h = _honest(honest, 2)
    tau = line_search(lambda t: attack_damage(rule, h, _alie_plus(h, t), f), **search)
    return _alie_plus(h, tau)


def mimic(honest: FloatArray, index: int) -> FloatArray:
    """A copy of honest update ``index``."""
    h = _honest(honest, 1)
    if not 0 <= index < h.shape[0]:
        raise ValueError(f"index must be in [0, {h.shape[0]}), got {index}")
    out: FloatArray = h[index].copy()
    return out


def inf(size: int) -> FloatArray:
    """``size`` values of ``+inf``."""
    out: FloatArray = np.full(size, np.inf)
    return out


class MimicTarget:
    """Whom Mimic copies: Karimireddy et al. 2022's online heuristic (as ByzFL's
    ``WorkerWithMaxVariance``).

    For the first ``steps_to_learn`` calls it copies honest update 0 and learns ``z``, the
    direction of largest variance of the honest updates (one step of power iteration per call
    on the running mean ``mu``: ``z <- (t z + u / |u|) / (t + 1)``, normalised, with
    ``u = sum_i (x_i - mu) <x_i - mu, z>``); then it copies the update furthest along ``z``,
    ``argmax_i |<x_i, z>|``.

    Parameters
    ----------
    steps_to_learn
        Calls spent learning ``z``.
    rng
        Draws the starting ``z`` (uniform in ``[0, 1)^d``).
    """

    def __init__(self, steps_to_learn: int, rng: np.random.Generator) -> None:
        if isinstance(steps_to_learn, bool) or not isinstance(steps_to_learn, int):
            raise TypeError("steps_to_learn must be an int")
        if steps_to_learn < 0:
            raise ValueError(f"steps_to_learn must be >= 0, got {steps_to_learn}")
        self.steps_to_learn = steps_to_learn
        self.rng = rng
        self.step = 0
        self.z: FloatArray | None = None
        self.mu: FloatArray | None = None

    def __call__(self, honest: FloatArray) -> int:
        """The index of the honest update to copy this round (and one learning step)."""
        h = _honest(honest, 1)
        t = self.step
        self.step += 1
        if t >= self.steps_to_learn:
            if self.z is None:
                return 0
            return int(np.argmax(np.abs(h @ self.z)))
        d = int(h.shape[1])
        z: FloatArray = self.rng.random(d) if self.z is None else self.z
        mu: FloatArray = np.zeros(d) if self.mu is None else self.mu
        mu = mu * (t / (t + 1)) + h.mean(axis=0) / (t + 1)
        dev = h - mu
        u = (dev * (dev @ z)[:, None]).sum(axis=0)
        norm = float(np.linalg.norm(u))
        if norm > 0:
            z = z * (t / (t + 1)) + u / norm / (t + 1)
            z = z / np.linalg.norm(z)
        self.z, self.mu = z, mu
        return 0
