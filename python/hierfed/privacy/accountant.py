"""Privacy accounting over rounds: Renyi DP of the (Poisson-subsampled) Gaussian mechanism,
and privacy loss distributions through dp_accounting when it is installed.

Neighbouring relation: add or remove one record (one client, one basket: whatever the
sensitivity was measured for); ``sample_rate`` q is the probability with which each record
independently takes part in a step (Poisson sampling).

RDP of the sampled Gaussian mechanism (Mironov, Talwar & Zhang 2019): at order alpha,
``eps(alpha) = log(A_alpha) / (alpha - 1)`` with ``A_alpha = E_{z ~ N(0, sigma^2)}
[((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]``: a finite sum of positive terms for
integer alpha; for fractional alpha two series split at ``z0`` whose binomial coefficients
change sign beyond alpha. Both are summed in log space with the signs kept (positive and
negative parts apart), until the alternating tail is below 1e-17 of the total. RDP becomes
(epsilon, delta) by Balle et al. 2020 (Theorem 21):
``eps = rdp + log((alpha - 1) / alpha) - (log delta + log alpha) / (alpha - 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _checks
from ._special import log_erfc

__all__ = ["DEFAULT_ORDERS", "PLDAccountant", "RDPAccountant", "compute_rdp", "rdp_to_epsilon"]

# Opacus' orders (1.1 to 10.9 by 0.1, 12 to 63) refined: 1.05 to 10.95 by 0.05, every integer
# from 11 to 64, then up to 1024.
DEFAULT_ORDERS: tuple[float, ...] = (
    tuple(round(1 + k / 20, 2) for k in range(1, 200))
    + tuple(float(a) for a in range(11, 65))
    + (72.0, 80.0, 96.0, 112.0, 128.0, 160.0, 192.0, 256.0, 320.0, 384.0, 512.0, 640.0)
    + (768.0, 896.0, 1024.0)
)
Floats = NDArray[np.float64]
Orders = Sequence[float] | Floats
MAX_ORDER = 100_000.0  # the integer-order sum holds ~alpha terms: 1e5 is a few MB
_CHUNK = 256
_MAX_TERMS = 1 << 22
_TAIL = math.log(1e-17)


def _logsumexp(v: NDArray[np.float64]) -> float:
    if v.size == 0:
        return -math.inf
    top = float(np.max(v))
    if top == -math.inf:
        return -math.inf
    return top + math.log(float(np.sum(np.exp(v - top))))


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for integer alpha >= 2, from A - 1 (accurate when A is close to 1).

    ``A = sum_k C(alpha, k) q^k (1-q)^(alpha-k) e^((k^2-k)/(2 s^2))`` and the weights sum to
    1, so ``A - 1 = sum_{k>=2} C(alpha, k) q^k (1-q)^(alpha-k) expm1((k^2-k)/(2 s^2))``: a
    log-sum-exp of positive terms, then ``log A = log1p(A - 1)``.
    """
    k = np.arange(2, alpha + 1, dtype=np.float64)
    steps = np.log((alpha - np.arange(1, alpha + 1) + 1) / np.arange(1, alpha + 1))
    log_binom = np.cumsum(steps)[1:]  # log C(alpha, k), k = 2..alpha
    x = (k * k - k) / (2 * sigma**2)
    log_expm1 = np.where(x > 30, x + np.log1p(-np.exp(-np.minimum(x, 700))), 0.0)
    small = x <= 30
    log_expm1[small] = np.log(np.expm1(x[small]))
    terms = log_binom + k * math.log(q) + (alpha - k) * math.log1p(-q) + log_expm1
    log_a_minus_1 = _logsumexp(terms)
    if log_a_minus_1 > 30:
        return log_a_minus_1 + math.log1p(math.exp(-log_a_minus_1))
    return math.log1p(math.exp(log_a_minus_1))


def _log_a_frac(q: float, sigma: float, alpha: float) -> float:
    """log A_alpha for fractional alpha (Mironov, Talwar & Zhang 2019, section 3.3).

    ``A = sum_i C(alpha, i) [q^i (1-q)^(alpha-i) e^((i^2-i)/(2s^2)) Phi((z0 - i) / s)
    + q^(alpha-i) (1-q)^i e^((j^2-j)/(2s^2)) Phi((j - z0) / s)]``, ``j = alpha - i``. The
    coefficients alternate in sign for i > alpha; positive and negative terms are summed
    apart and subtracted once.
    """
    z0 = sigma**2 * math.log(1 / q - 1) + 0.5
    log_q, log_1mq = math.log(q), math.log1p(-q)
    root2s = math.sqrt(2) * sigma

    def log_half(log_cs: Floats, a: Floats, b: Floats, erfc_arg: Floats) -> Floats:
        """log of ``|C| q^a (1-q)^b e^((a^2-a)/(2s^2)) erfc(erfc_arg / (sqrt(2) s)) / 2``."""
        return (
            log_cs
            + a * log_q
            + b * log_1mq
            + (a * a - a) / (2 * sigma**2)
            + math.log(0.5)
            + log_erfc(erfc_arg / root2s)
        )

    pos, neg = -math.inf, -math.inf
    log_c, sign = 0.0, 1.0  # log |C(alpha, i0)| and its sign, carried across chunks
    i0 = 0
    while i0 < _MAX_TERMS:
        i = np.arange(i0, i0 + _CHUNK, dtype=np.float64)
        ratio = alpha - i  # C(alpha, i + 1) = C(alpha, i) (alpha - i) / (i + 1)
        steps = np.log(np.abs(ratio)) - np.log(i + 1)
        log_cs = log_c + np.concatenate(([0.0], np.cumsum(steps[:-1])))
        signs = sign * np.concatenate(([1.0], np.cumprod(np.sign(ratio[:-1]))))
        j = alpha - i
        log_s0 = log_half(log_cs, i, j, i - z0)
        log_s1 = log_half(log_cs, j, i, z0 - j)
        terms = np.concatenate((log_s0, log_s1))
        term_signs = np.concatenate((signs, signs))
        pos = _log_add(pos, _logsumexp(terms[term_signs > 0]))
        neg = _log_add(neg, _logsumexp(terms[term_signs < 0]))
        log_c = log_cs[-1] + steps[-1]
        sign = signs[-1] * np.sign(ratio[-1])
        i0 += _CHUNK
        last = max(log_s0[-1], log_s1[-1])
        decreasing = log_s0[-1] <= log_s0[-2] and log_s1[-1] <= log_s1[-2]
        if i0 > alpha + 2 and decreasing and last < pos + _TAIL:
            break
    else:
        return math.inf  # not converged: exclude this order (never understate privacy loss)
    if neg >= pos:  # pragma: no cover - A_alpha >= 1 > 0
        return math.inf
    return pos + math.log1p(-math.exp(neg - pos))


@lru_cache(maxsize=1024)
def _rdp_one(q: float, sigma: float, alpha: float) -> float:
    if q == 0:
        return 0.0
    if sigma == 0:
        return math.inf
    if q == 1:
        return alpha / (2 * sigma**2)
    if float(alpha).is_integer():
        log_a = _log_a_int(q, sigma, int(alpha))
    else:
        log_a = _log_a_frac(q, sigma, alpha)
    return max(0.0, log_a / (alpha - 1))


def _orders(orders: Orders | None) -> NDArray[np.float64]:
    if orders is None:
        return np.array(DEFAULT_ORDERS)
    arr = np.asarray(orders, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("orders must not be empty")
    if not np.isfinite(arr).all() or (arr <= 1).any():
        raise ValueError("orders must be finite and > 1")
    if (arr > MAX_ORDER).any():
        raise ValueError(
            f"orders must be <= {MAX_ORDER:g} (the RDP at order alpha sums about alpha terms: "
            f"time and memory grow with it); got {float(arr.max()):g}"
        )
    return arr


def compute_rdp(
    noise_multiplier: float,
    sample_rate: float = 1.0,
    steps: int = 1,
    orders: Orders | None = None,
) -> NDArray[np.float64]:
    """RDP at each order of ``steps`` Poisson-subsampled Gaussian steps.

    ``noise_multiplier`` is sigma / sensitivity; ``sample_rate`` q in [0, 1].
    """
    sigma = _checks.non_negative(noise_multiplier, "noise_multiplier")
    q = _checks.real(sample_rate, "sample_rate")
    if not 0 <= q <= 1:
        raise ValueError(f"sample_rate must be in [0, 1], got {q}")
    n = _checks.count(steps, "steps")
    arr = _orders(orders)
    rdp = np.array([_rdp_one(q, sigma, float(a)) for a in arr])
    with np.errstate(invalid="ignore"):  # inf * 0 steps
        return np.where(n == 0, 0.0, rdp * n)


def rdp_to_epsilon(orders: Orders, rdp: Orders, delta: float) -> tuple[float, float]:
    """(epsilon, best order) from RDP curve at ``delta`` (Balle et al. 2020, Theorem 21)."""
    dlt = _checks.probability_open(delta, "delta")
    a = _orders(orders)
    r = np.asarray(rdp, dtype=np.float64)
    if r.shape != a.shape:
        raise ValueError("rdp must have one value per order")
    if not r.any():  # nothing spent: no conversion slack
        return 0.0, float(a[0])
    with np.errstate(invalid="ignore"):
        eps = r + np.log1p(-1 / a) - (math.log(dlt) + np.log(a)) / (a - 1)
    eps = np.where(np.isnan(eps), np.inf, eps)
    best = int(np.argmin(eps))
    return max(0.0, float(eps[best])), float(a[best])


class RDPAccountant:
    """Renyi-DP accountant of Gaussian and Poisson-subsampled Gaussian steps.

    Parameters
    ----------
    orders
        Renyi orders (> 1, at most :data:`MAX_ORDER` = 1e5) to track; default
        :data:`DEFAULT_ORDERS` (1.05 to 10.95 by 0.05, every integer to 64, then to 1024).

    Notes
    -----
    Each :meth:`step` adds the RDP of ``steps`` applications of a mechanism adding
    N(0, (noise_multiplier sensitivity)^2) noise to a sum over a Poisson sample of rate
    ``sample_rate`` (add/remove-one neighbours); :meth:`add_rdp` adds another mechanism's
    RDP curve; composition adds RDP order by order.
    """

    def __init__(self, orders: Sequence[float] | None = None) -> None:
        self.orders = _orders(orders)
        self._rdp = np.zeros_like(self.orders)
        self.history: list[tuple[float, float, int]] = []
        self.curves_added = 0  # add_rdp calls: mechanisms dp_accounting cannot describe

    def step(self, noise_multiplier: float, sample_rate: float = 1.0, steps: int = 1) -> None:
        """Record ``steps`` uses of the (subsampled) Gaussian mechanism."""
        rdp = compute_rdp(noise_multiplier, sample_rate, steps, self.orders)
        self._rdp = self._rdp + rdp
        self.history.append((float(noise_multiplier), float(sample_rate), int(steps)))

    def add_rdp(self, rdp: Orders, steps: int = 1) -> None:
        """Record ``steps`` uses of a mechanism given by its RDP curve at :attr:`orders`.

        For mechanisms other than the Gaussian (e.g. the distributed discrete Gaussian,
        :class:`~hierfed.privacy.DistributedDiscreteGaussian`): ``rdp[i]`` must bound its
        Renyi divergence at ``orders[i]`` (>= 0; ``inf`` where there is no bound).
        :meth:`to_dp_event` refuses once a curve has been added: dp_accounting has no event
        for it.
        """
        r = np.asarray(rdp, dtype=np.float64)
        if r.shape != self.orders.shape:
            raise ValueError(
                f"rdp must have one value per order ({self.orders.size}), got shape {r.shape}"
            )
        if np.isnan(r).any() or (r < 0).any():
            raise ValueError("rdp must be >= 0 at every order (inf allowed, NaN not)")
        n = _checks.count(steps, "steps")
        if n:
            self._rdp = self._rdp + r * n
        self.curves_added += 1

    @property
    def rdp(self) -> NDArray[np.float64]:
        """Accumulated RDP at each order."""
        return self._rdp.copy()

    def get_privacy_spent(self, delta: float) -> tuple[float, float]:
        """(epsilon, best order) of everything recorded, at ``delta``."""
        return rdp_to_epsilon(self.orders, self._rdp, delta)

    def get_epsilon(self, delta: float) -> float:
        """Epsilon of everything recorded, at ``delta``."""
        return self.get_privacy_spent(delta)[0]

    def get_delta(self, epsilon: float) -> float:
        """Delta of everything recorded, at ``epsilon`` (the same conversion, inverted)."""
        eps = _checks.non_negative(epsilon, "epsilon")
        if not self._rdp.any():  # nothing spent: no privacy loss at any epsilon
            return 0.0
        a = self.orders
        with np.errstate(invalid="ignore", over="ignore"):
            log_delta = (a - 1) * (self._rdp - eps + np.log1p(-1 / a)) - np.log(a)
        log_delta = np.where(np.isnan(log_delta), np.inf, log_delta)
        return float(min(1.0, math.exp(min(0.0, float(np.min(log_delta))))))

    def to_dp_event(self) -> Any:
        """The recorded steps as a dp_accounting ``DpEvent`` (needs the ``dp`` extra)."""
        if self.curves_added:
            raise ValueError(
                "this accountant holds RDP curves added by add_rdp: dp_accounting has no "
                "event for them"
            )
        dpa = _dp_accounting()
        events = [_event(dpa, sigma, q, n) for sigma, q, n in self.history]
        return dpa.ComposedDpEvent(events)


def _dp_accounting() -> Any:
    try:
        import dp_accounting
        import dp_accounting.pld
    except ImportError as exc:
        raise ImportError("dp_accounting is not installed: `pip install 'hierfed[dp]'`") from exc
    return dp_accounting


def _event(dpa: Any, sigma: float, q: float, steps: int) -> Any:
    gaussian = dpa.GaussianDpEvent(sigma)
    single = gaussian if q == 1 else dpa.PoissonSampledDpEvent(q, gaussian)
    return dpa.SelfComposedDpEvent(single, steps)


class PLDAccountant:
    """Privacy loss distribution accountant (dp_accounting's), with the RDP accountant's API.

    Tighter than RDP for many compositions. Needs the ``dp`` extra (dp_accounting).

    Parameters
    ----------
    value_discretization_interval
        dp_accounting's discretisation of the privacy loss (smaller: tighter and slower).
    """

    def __init__(self, value_discretization_interval: float = 1e-4) -> None:
        dpa = _dp_accounting()
        self._dpa = dpa
        self._accountant = dpa.pld.PLDAccountant(
            dpa.NeighboringRelation.ADD_OR_REMOVE_ONE,
            value_discretization_interval=_checks.positive(
                value_discretization_interval, "value_discretization_interval"
            ),
        )
        self.history: list[tuple[float, float, int]] = []

    def step(self, noise_multiplier: float, sample_rate: float = 1.0, steps: int = 1) -> None:
        """Record ``steps`` uses of the (subsampled) Gaussian mechanism."""
        sigma = _checks.positive(noise_multiplier, "noise_multiplier")
        q = _checks.real(sample_rate, "sample_rate")
        if not 0 < q <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {q}")
        n = _checks.count(steps, "steps")
        self._accountant.compose(_event(self._dpa, sigma, q, n))
        self.history.append((sigma, q, n))

    def get_epsilon(self, delta: float) -> float:
        """Epsilon of everything recorded, at ``delta``."""
        return float(self._accountant.get_epsilon(_checks.probability_open(delta, "delta")))

    def get_delta(self, epsilon: float) -> float:
        """Delta of everything recorded, at ``epsilon``."""
        return float(self._accountant.get_delta(_checks.non_negative(epsilon, "epsilon")))

    def get_privacy_spent(self, delta: float) -> tuple[float, float]:
        """(epsilon, delta) of everything recorded."""
        return self.get_epsilon(delta), float(delta)

    def to_dp_event(self) -> Any:
        """The recorded steps as a dp_accounting ``DpEvent``."""
        return self._dpa.ComposedDpEvent([_event(self._dpa, *h) for h in self.history])
