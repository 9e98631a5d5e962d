"""log erfc and log Phi, accurate far into the tails, with numpy and the math module only.

``math.erfc`` (the C library's erfc) up to x = 20; beyond, the asymptotic series
``erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k``, whose first nine
terms are exact to 1e-17 there.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

_SWITCH = 20.0
_ERFC = np.frompyfunc(math.erfc, 1, 1)
_HALF_LOG_PI = 0.5 * math.log(math.pi)


def log_erfc(x: Any) -> NDArray[np.float64]:
    """``log(erfc(x))`` elementwise (float64), finite for every finite ``x``."""
    xs = np.asarray(x, dtype=np.float64)
    out = np.empty(xs.shape, np.float64)
    near = xs < _SWITCH
    with np.errstate(divide="ignore"):
        out[near] = np.log(np.asarray(_ERFC(xs[near]), dtype=np.float64))
    far = xs[~near]
    if far.size:
        w = 1.0 / (2.0 * far * far)
        series = np.ones_like(far)
        term = np.ones_like(far)
        for k in range(1, 10):
            term = term * (-(2 * k - 1) * w)
            series = series + term
        out[~near] = -far * far - np.log(far) - _HALF_LOG_PI + np.log(series)
    return out


def log_erfc_scalar(x: float) -> float:
    """``log(erfc(x))`` of one float."""
    return float(log_erfc(np.array([x]))[0])


def log_ndtr(x: float) -> float:
    """``log(Phi(x))``, the log of the standard normal CDF, accurate in both tails."""
    if x > 0:
        return math.log1p(-0.5 * math.erfc(x / math.sqrt(2.0)))
    return log_erfc_scalar(-x / math.sqrt(2.0)) - math.log(2.0)
