"""The records of :mod:`hierfed.basket`: its config, client and basket snapshots, statuses.

They live here, below both :mod:`hierfed.basket` (the manager, which re-exports them) and
:mod:`hierfed._basket_state` (the saved form), so that neither imports the other back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _checks

__all__ = ["BasketConfig", "BasketInfo", "BasketStatus", "ClientInfo", "as_features"]


def as_features(features: ArrayLike) -> NDArray[np.float64]:
    """A read-only float64 copy of a fingerprint: finite, numeric, 1-D, non-empty."""
    arr = np.asarray(features)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"features must be a numeric (int or float) array, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"features must be a non-empty 1-D array, got shape {arr.shape}")
    out = arr.astype(np.float64, copy=True)
    if not np.isfinite(out).all():
        raise ValueError("features must be finite (no NaN or infinity)")
    out.setflags(write=False)
    return out


@dataclass
class BasketConfig:
    """Basket sizes and staleness; validated on creation (``ValueError``/``TypeError``).

    Attributes
    ----------
    min_clients
        Clients needed for a basket to be ACTIVE (to gossip and aggregate), ``>= 1``.
    max_clients
        A basket holding more is split, ``>= min_clients``. Halves of a split may hold fewer
        than ``min_clients`` (FORMING) unless ``max_clients >= 2 * min_clients - 1``.
    stale_threshold
        Seconds without activity after which a basket is STALE, ``> 0``.
    allow_cross_domain
        Let a domain without a basket pool into a small basket of another domain (see
        :mod:`hierfed.basket`).
    """

    min_clients: int = 3
    max_clients: int = 100
    stale_threshold: float = 600.0
    allow_cross_domain: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``TypeError``/``ValueError`` naming the first field that breaks its rule."""
        _checks.count(self.min_clients, "min_clients", 1)
        _checks.count(self.max_clients, "max_clients", 1)
        if self.max_clients < self.min_clients:
            raise ValueError(
                f"max_clients must be >= min_clients, got max_clients={self.max_clients} "
                f"< min_clients={self.min_clients}"
            )
        _checks.positive(self.stale_threshold, "stale_threshold")
        if not isinstance(self.allow_cross_domain, bool):
            raise TypeError(
                f"allow_cross_domain must be a bool, got {type(self.allow_cross_domain).__name__}"
            )


@dataclass
class ClientInfo:
    """One registered client (a snapshot when returned by :class:`BasketManager`).

    ``basket_id`` is the client's basket (always set for a registered client), ``features``
    its optional fingerprint (float64), ``joined_at`` / ``last_active`` times on the
    manager's clock, ``n_updates`` the updates recorded by ``record_update`` and
    ``trust_score`` a weight for its updates (1.0 by default).
    """

    client_id: str
    domain_id: str
    basket_id: str | None
    features: NDArray[np.float64] | None
    joined_at: float
    last_active: float
    n_updates: int = 0
    trust_score: float = 1.0

    def __eq__(self, other: object) -> bool:
        """Field-wise equality; fingerprints compare by value."""
        if not isinstance(other, ClientInfo):
            return NotImplemented
        if self.features is None or other.features is None:
            if self.features is not other.features:
                return False
        elif not np.array_equal(self.features, other.features):
            return False
        return all(
            getattr(self, f.name) == getattr(other, f.name)
            for f in dataclasses.fields(self)
            if f.name != "features"
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like every eq dataclass


class BasketStatus(Enum):
    """Lifecycle state of a basket (see :mod:`hierfed.basket` for the triggers)."""

    FORMING = "forming"
    ACTIVE = "active"
    STALE = "stale"
    DISBANDED = "disbanded"


@dataclass
class BasketInfo:
    """A snapshot of one basket: its clients and status at the time it was taken.

    ``domain_id`` is the domain the basket was created for; ``domains`` (an extension) holds
    that domain and the domains of all its clients, which differ only for cross-domain pools.
    """

    basket_id: str
    domain_id: str
    status: BasketStatus
    clients: set[str]
    created_at: float
    last_activity: float
    domains: set[str] = field(default_factory=set)
