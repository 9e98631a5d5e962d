"""Noise calibration: the analytic Gaussian mechanism (Balle & Wang 2018), the classic
formula for comparison, and the Laplace scale.

A mechanism ``M(x) = f(x) + N(0, sigma^2 I)`` with L2 sensitivity ``Delta`` (the most ``f`` can
change between neighbouring datasets) is (epsilon, delta)-DP exactly when (Balle & Wang 2018,
Theorem 8)
``Phi(Delta / (2 sigma) - epsilon sigma / Delta) - e^epsilon Phi(-Delta / (2 sigma) - epsilon
sigma / Delta) <= delta``. :func:`analytic_gaussian_sigma` returns the smallest such sigma.
"""

from __future__ import annotations

import math

from .. import _checks
from ._special import log_ndtr

__all__ = [
    "analytic_gaussian_sigma",
    "classic_gaussian_sigma",
    "gaussian_delta",
    "laplace_scale",
]


def _log_b(epsilon: float, a: float, b: float) -> float:
    """``log(Phi(a) - e^epsilon Phi(b))``, or -inf where it is <= 0."""
    la, lb = log_ndtr(a), log_ndtr(b)
    gap = epsilon + lb - la
    if la == -math.inf or gap >= 0:  # Phi(a) underflowed: so did the difference
        return -math.inf
    return la + math.log(-math.expm1(gap))


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The smallest delta for which N(0, sigma^2) noise is (epsilon, delta)-DP (Theorem 8)."""
    s = _checks.positive(sigma, "sigma")
    eps = _checks.non_negative(epsilon, "epsilon")
    d = _checks.positive(sensitivity, "sensitivity")
    u = d / s
    a = u / 2 - eps / u
    if a < -40:  # delta <= Phi(a) < 1e-349: zero in floating point (and eps / u may be inf)
        return 0.0
    return math.exp(_log_b(eps, a, -u / 2 - eps / u))


def _check_eps_delta(
    epsilon: float, delta: float, sensitivity: float
) -> tuple[float, float, float]:
    return (
        _checks.positive(epsilon, "epsilon"),
        _checks.probability_open(delta, "delta"),
        _checks.positive(sensitivity, "sensitivity"),
    )


def analytic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest sigma making Gaussian noise (epsilon, delta)-DP (Balle & Wang 2018).

    Algorithm 1 of the paper: with ``B(v) = Phi(+-sqrt(epsilon v)) - e^epsilon
    Phi(-sqrt(epsilon (v + 2)))`` evaluated in log space (no cancellation at large epsilon or
    tiny delta), ``v*`` is found by bisection to the last bit and
    ``sigma = alpha(v*) Delta / sqrt(2 epsilon)``. Valid for every epsilon > 0, unlike the
    classic formula.

    Parameters
    ----------
    epsilon
        > 0.
    delta
        In (0, 1).
    sensitivity
        L2 sensitivity Delta of the released quantity, > 0.
    """
    eps, dlt, sens = _check_eps_delta(epsilon, delta, sensitivity)
    log_delta = math.log(dlt)
    log_delta0 = _log_b(eps, 0.0, -math.sqrt(2 * eps))
    plus = log_delta >= log_delta0

    def log_b(v: float) -> float:
        a = math.sqrt(eps * v)
        return _log_b(eps, a if plus else -a, -math.sqrt(eps * (v + 2)))

    def below(v: float) -> bool:  # B+(v) <= delta (plus) or B-(v) > delta (minus)
        return (log_b(v) <= log_delta) if plus else (log_b(v) > log_delta)

    lo, hi = 0.0, 1.0
    while below(hi):
        lo, hi = hi, 2 * hi
        if hi > 1e300:  # pragma: no cover - delta is in (0, 1)
            raise ValueError("no sigma found: check epsilon and delta")
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if below(mid):
            lo = mid
        else:
            hi = mid
    v = lo if plus else hi
    root_half, root_1 = math.sqrt(v / 2), math.sqrt(1 + v / 2)
    alpha = 1 / (root_1 + root_half) if plus else root_1 + root_half
    return alpha * sens / math.sqrt(2 * eps)


def classic_gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """``sqrt(2 ln(1.25 / delta)) Delta / epsilon`` (Dwork & Roth 2014, Theorem A.1).

    For comparison only: proved for epsilon < 1; above epsilon of about 8.4 it gives less
    noise than (epsilon, delta)-DP needs. Use :func:`analytic_gaussian_sigma`.
    """
    eps, dlt, sens = _check_eps_delta(epsilon, delta, sensitivity)
    return math.sqrt(2 * math.log(1.25 / dlt)) * sens / eps


def laplace_scale(epsilon: float, sensitivity: float = 1.0) -> float:
    """Scale ``b = Delta_1 / epsilon`` making Laplace noise epsilon-DP (L1 sensitivity)."""
    eps = _checks.positive(epsilon, "epsilon")
    return _checks.positive(sensitivity, "sensitivity") / eps
