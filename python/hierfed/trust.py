"""Basket trust and reliability: Layer 2's ``weighting="trust"``.

A basket model's weight is its size (``n_contributors``) times the operator's trust in the
basket (``Layer2Config.basket_trust``, 1 by default, 0 leaves the basket out) times, with
``Layer2Config.reliability``, a reliability score learnt over past rounds from the basket's
agreement with the robust consensus (which needs the basket models in the clear: no secure
aggregation):

- each round's consensus is the coordinate-wise median of the clipped basket models;
- a basket's agreement is ``min(1, m / d)``, ``d`` its model's L2 distance to the consensus
  and ``m`` the median of those distances over the round's baskets (a basket no farther than
  the typical one scores 1; one ``k`` times farther scores ``1 / k``);
- its reliability is the exponential average ``r = decay r + (1 - decay) agreement``, from 1,
  and weights the basket from the next round on.

With two baskets the median is their mean and both agree with it alike: the score needs three
or more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .coordinatewise import median

__all__ = ["ReliabilityTracker", "agreement", "check_config", "trust_weights"]


def agreement(models: Sequence[np.ndarray[Any, Any]]) -> NDArray[np.float64]:
    """Each model's agreement in ``[0, 1]`` with the coordinate-wise median of ``models``."""
    consensus = np.asarray(median(list(models)), dtype=np.float64)
    d = np.array([float(np.linalg.norm(np.asarray(m, np.float64) - consensus)) for m in models])
    typical = float(np.median(d))
    if typical == 0.0:  # most models are the consensus: the others disagree entirely
        out: NDArray[np.float64] = (d == 0.0).astype(np.float64)
        return out
    scores: NDArray[np.float64] = np.minimum(1.0, typical / np.maximum(d, 1e-300))
    return scores


class ReliabilityTracker:
    """Reliability scores of baskets, by id (see the module's docstring).

    Parameters
    ----------
    decay
        Weight of the past in ``[0, 1)``.
    """

    def __init__(self, decay: float = 0.5) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
            raise ValueError(f"reliability_decay must be a number in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.scores: dict[str, float] = {}

    def score(self, basket_id: str) -> float:
        """The basket's reliability (1 for a basket never seen)."""
        return self.scores.get(basket_id, 1.0)

    def observe(self, basket_ids: Sequence[str], models: Sequence[np.ndarray[Any, Any]]) -> None:
        """Update the scores of ``basket_ids`` from one round's (clipped) models; a basket
        with several models in the round takes the mean of their agreements."""
        if len(models) < 2:
            return
        got: dict[str, list[float]] = {}
        for b, a in zip(basket_ids, agreement(models), strict=True):
            got.setdefault(b, []).append(float(a))
        for b, values in got.items():
            self.scores[b] = self.decay * self.score(b) + (1 - self.decay) * float(np.mean(values))

    def load(self, scores: Mapping[str, Any]) -> None:
        """Take saved scores (each a number in ``[0, 1]``; ``ValueError`` otherwise)."""
        checked = {}
        for b, s in scores.items():
            ok = not isinstance(s, bool) and isinstance(s, (int, float)) and math.isfinite(s)
            if not isinstance(b, str) or not ok or not 0 <= s <= 1:
                raise ValueError(f"reliability of {b!r} must be a number in [0, 1], got {s!r}")
            checked[b] = float(s)
        self.scores = checked


def check_config(config: Any) -> None:
    """Check a Layer 2 config's ``basket_trust``, ``reliability`` and ``reliability_decay``
    (``ValueError``/``TypeError`` naming the field)."""
    if not isinstance(config.basket_trust, Mapping):
        raise TypeError("basket_trust must be a dict of basket id to trust")
    for b, t in config.basket_trust.items():
        ok = not isinstance(t, bool) and isinstance(t, (int, float)) and math.isfinite(t)
        if not isinstance(b, str) or not ok or t < 0:
            raise ValueError(f"basket_trust[{b!r}] must be a finite number >= 0, got {t!r}")
    if not isinstance(config.reliability, bool):
        raise TypeError("reliability must be a bool")
    ReliabilityTracker(config.reliability_decay)
    if config.reliability and config.use_secure_aggregation:
        raise ValueError(
            "reliability needs the basket models in the clear; secure aggregation reveals "
            "only their sum: set use_secure_aggregation=False"
        )
    trusting = (
        config.weighting is not None
        and str(getattr(config.weighting, "value", config.weighting)) == "trust"
    )
    if (config.reliability or config.basket_trust) and not trusting:
        raise ValueError('basket_trust and reliability apply with weighting="trust"')


def trust_weights(
    models: Sequence[Any],
    sizes: NDArray[np.float64],
    basket_trust: Mapping[str, float],
    tracker: ReliabilityTracker,
) -> NDArray[np.float64]:
    """Normalised weights: ``sizes`` (the size weights) times each basket's trust times its
    reliability score (1 for baskets never scored, and every basket without reliability)."""
    factors = np.array(
        [basket_trust.get(m.basket_id, 1.0) * tracker.score(m.basket_id) for m in models]
    )
    w = sizes * factors
    if w.sum() <= 0:
        raise ValueError("every basket model has weight zero (trust times reliability)")
    out: NDArray[np.float64] = w / w.sum()
    return out
