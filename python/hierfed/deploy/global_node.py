"""The global aggregator of the deployment: it relays, and releases only a noised sum.

It is trusted for availability and nothing else. It relays members' sealed updates to their
basket aggregators (it cannot open them), runs the SecAgg+ server among the basket
aggregators (it learns only the sum of the survivors' masked words), and turns that sum into
the global update here: decode the distributed discrete Gaussian's words, divide by the
survivors' public weights. Each unmasked sum is a release of every survivor's basket model
under the noise no coalition of it and ``colluders`` baskets can remove; its accountant counts
them (the unit: one basket's model added or removed).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _checks
from ..privacy import RDPAccountant
from ..privacy.distributed import DistributedDiscreteGaussian

__all__ = ["GlobalAggregator"]


class GlobalAggregator:
    """Decodes each round's SecAgg+ sum into the global update, and accounts the releases.

    Parameters
    ----------
    ddg
        The deployment's distributed discrete Gaussian (the baskets build the same one).
    delta
        The delta :meth:`privacy_spent` reports at.
    accountant
        RDP accountant of the releases (default: a fresh :class:`~hierfed.privacy.RDPAccountant`).
    """

    def __init__(
        self,
        ddg: DistributedDiscreteGaussian,
        *,
        delta: float = 1e-5,
        accountant: RDPAccountant | None = None,
    ) -> None:
        if not isinstance(ddg, DistributedDiscreteGaussian):
            raise TypeError(f"ddg must be a DistributedDiscreteGaussian, got {type(ddg).__name__}")
        self.ddg = ddg
        self.delta = _checks.probability_open(delta, "delta")
        self.accountant = RDPAccountant() if accountant is None else accountant
        if not isinstance(self.accountant, RDPAccountant):
            raise TypeError("accountant must be an RDPAccountant")
        self.rounds = 0
        self.last_stats: dict[str, Any] = {}

    def rotation_seed(self) -> bytes | None:
        """A fresh public rotation seed for the next round (drawn after the members' updates
        are in, so no input is chosen knowing it); ``None`` when the mechanism does not
        rotate."""
        return os.urandom(32) if self.ddg.rotate else None

    def release(
        self,
        total: Any,
        *,
        survivors: int,
        weight_sum: float,
        rotation_seed: bytes | None,
    ) -> NDArray[np.float64] | None:
        """The global update from SecAgg+'s uint32 ``total`` of ``survivors`` basket inputs.

        ``weight_sum`` is the survivors' public weights' sum; 0 (every survivor was empty)
        gives ``None``: no update, the round's noise alone. A sum of fewer than ``n_min``
        survivors is refused (ValueError) and not accounted: it must not be used. Otherwise
        the release is accounted before anything is returned.
        """
        n = _checks.count(survivors, "survivors")
        w = _checks.non_negative(weight_sum, "weight_sum")
        if not math.isfinite(w) or w > n:
            raise ValueError(f"weight_sum must be finite and at most survivors ({n}), got {w}")
        noised = self.ddg.decode(total, rotation_seed, survivors=n)  # refuses n < n_min
        self.ddg.record(self.accountant)
        self.rounds += 1
        epsilon = self.accountant.get_epsilon(self.delta)
        self.last_stats = {
            "round_id": self.rounds - 1,
            "survivors": n,
            "weight_sum": w,
            "secure_agg_used": True,
            "privacy": "distributed",
            "privacy_unit": "basket",
            "noise_sigma": self.ddg.sigma,
            "privacy_spent": (epsilon, self.delta),
            "wrap_probability": self.ddg.wrap_probability(n),
        }
        if w == 0:
            return None
        update: NDArray[np.float64] = noised / w
        return update

    def privacy_spent(self) -> tuple[float, float]:
        """(epsilon, delta) over every release so far (a basket's model added or removed)."""
        if self.rounds == 0:
            return 0.0, self.delta
        return self.accountant.get_epsilon(self.delta), self.delta
