"""Record-level DP-SGD in a client's local training (Abadi et al. 2016, as Opacus does).

Each step samples every record independently with probability ``q`` (Poisson sampling),
clips each sampled record's gradient to L2 norm ``C``, adds Gaussian noise of standard
deviation ``z C`` to their sum and divides by the expected batch size ``q n``. A client's
updates over a run are then ``(epsilon, delta)``-DP for each of its records, by the RDP of
the subsampled Gaussian (:class:`~hierfed.privacy.RDPAccountant` with ``z``, ``q`` and the
steps taken). Everything after the client (clipping its delta, robust aggregation, secure
aggregation, the server's step) is post-processing, and each record is in one client's data
only, so the largest per-client epsilon is the run's record-level epsilon.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from ..privacy.accountant import DEFAULT_ORDERS, compute_rdp, rdp_to_epsilon
from .models import IntArray, Model

__all__ = ["ORDERS", "dp_sgd", "epsilon_spent", "noise_multiplier_for_epsilon", "steps_per_epoch"]

FloatArray = NDArray[np.float64]
# The RDP orders of the simulation's accounting of subsampled steps: the integers 2..256,
# whose subsampled Gaussian RDP has a closed sum (the accountant's fractional orders cost far
# more to evaluate and tighten epsilon by about 1% here; leaving them out only overstates
# it). Steps without subsampling use the accountant's own orders (closed form at all).
ORDERS = tuple(float(a) for a in range(2, 257))


def steps_per_epoch(sample_rate: float) -> int:
    """DP-SGD steps that visit each record once in expectation: ``ceil(1 / q)``."""
    return math.ceil(1.0 / sample_rate)


def dp_sgd(
    model: Model,
    theta: FloatArray,
    x: FloatArray,
    y: IntArray,
    *,
    steps: int,
    sample_rate: float,
    learning_rate: float,
    record_clip_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator,
) -> FloatArray:
    """``theta_local - theta`` after ``steps`` DP-SGD steps from ``theta`` on ``(x, y)``.

    Parameters
    ----------
    steps, sample_rate
        Steps, and each record's probability ``q`` of being in a step's batch.
    learning_rate
        The step size.
    record_clip_norm
        ``C``: the L2 norm each record's gradient is clipped to.
    noise_multiplier
        ``z``: the noise's standard deviation over ``C``.
    rng
        Draws the batches and the noise.
    """
    w = theta.copy()
    n = y.size
    expected = sample_rate * n
    for _ in range(steps):
        batch = rng.random(n) < sample_rate
        total = rng.normal(0.0, noise_multiplier * record_clip_norm, size=w.shape)
        if batch.any():
            grads = model.per_example_grads(w, x[batch], y[batch])
            norms = np.linalg.norm(grads, axis=1)
            scale = np.minimum(1.0, record_clip_norm / np.maximum(norms, 1e-300))
            total += scale @ grads
        w -= learning_rate * total / expected
    return w - theta


@lru_cache(maxsize=256)
def _one_step(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    return tuple(compute_rdp(noise_multiplier, sample_rate, 1, _orders(sample_rate)))


def _orders(sample_rate: float) -> tuple[float, ...]:
    return DEFAULT_ORDERS if sample_rate == 1.0 else ORDERS


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """The epsilon at ``delta`` of ``steps`` Gaussian steps of ``noise_multiplier``, each
    Poisson-subsampled at ``sample_rate`` (RDP at :data:`ORDERS`, at the accountant's
    default orders when ``sample_rate`` is 1; Balle et al. 2020's conversion)."""
    if steps == 0:
        return 0.0
    rdp = np.array(_one_step(noise_multiplier, sample_rate)) * steps
    return rdp_to_epsilon(_orders(sample_rate), rdp, delta)[0]


def noise_multiplier_for_epsilon(
    epsilon: float, delta: float, steps: int, sample_rate: float = 1.0
) -> float:
    """The noise multiplier whose ``steps``-fold composition of the Gaussian mechanism, each
    Poisson-subsampled at ``sample_rate``, spends ``epsilon`` at ``delta`` by
    :func:`epsilon_spent`: the smallest such value to 1e-4 relative.

    Raises ``ValueError`` when no noise multiplier up to 1e6 reaches ``epsilon``.
    """

    def spent(z: float) -> float:
        return epsilon_spent(z, sample_rate, steps, delta)

    lo, hi = 1e-3, 1.0
    while spent(hi) > epsilon:
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise ValueError(f"epsilon={epsilon} is out of reach over {steps} steps")
    while hi - lo > 1e-4 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if spent(mid) > epsilon else (lo, mid)
    return hi
