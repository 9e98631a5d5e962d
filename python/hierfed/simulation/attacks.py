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

The attackers collude and know the topology: ALIE and IPM use the honest updates and the
counts of the aggregation the attacker's update enters (its basket in a hierarchical
federation, all clients in a flat one; see :mod:`hierfed.simulation.runner`).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ATTACKS",
    "DEFAULT_STRENGTH",
    "alie",
    "alie_z",
    "flip_labels",
    "gaussian",
    "ipm",
    "sign_flip",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ATTACKS = ("none", "sign_flip", "gaussian", "label_flip", "alie", "ipm")

# Strength of each attack when none is given (None: the attack has no strength, or ALIE's z
# comes from n and f).
DEFAULT_STRENGTH: dict[str, float | None] = {
    "none": None,
    "sign_flip": 4.0,
    "gaussian": 1.0,
    "label_flip": None,
    "alie": None,
    "ipm": 0.1,
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
