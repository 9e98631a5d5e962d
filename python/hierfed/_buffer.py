"""Buffered updates by basket, at most one per client (spec/layers.md's update buffer)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PendingUpdate", "UpdateBuffer"]


@dataclass
class PendingUpdate:
    """A buffered update: the federation's own copy and where it came from."""

    client_id: str
    basket_id: str
    update: np.ndarray[Any, Any]
    base_version: int
    staleness: int
    received_at: float


class UpdateBuffer:
    """Buffered updates by basket, at most one per client (not locked: the federation locks)."""

    def __init__(self) -> None:
        self._by_basket: dict[str, dict[str, PendingUpdate]] = {}
        self._basket_of: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._basket_of)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._basket_of

    def add(self, p: PendingUpdate) -> None:
        """Buffer ``p`` (its client must have none buffered)."""
        if p.client_id in self._basket_of:
            raise ValueError(f"client {p.client_id!r} already has a buffered update")
        self._by_basket.setdefault(p.basket_id, {})[p.client_id] = p
        self._basket_of[p.client_id] = p.basket_id

    def count(self, basket_id: str) -> int:
        """Number of updates buffered for ``basket_id``."""
        return len(self._by_basket.get(basket_id, ()))

    def baskets(self) -> list[str]:
        """Baskets holding buffered updates."""
        return [b for b, ps in self._by_basket.items() if ps]

    def oldest(self, basket_id: str) -> float:
        """Arrival time of the basket's oldest buffered update (inf when none)."""
        return min(
            (p.received_at for p in self._by_basket.get(basket_id, {}).values()), default=math.inf
        )

    def basket_updates(self, basket_id: str) -> list[PendingUpdate]:
        """The basket's buffered updates, in arrival order (left buffered)."""
        return list(self._by_basket.get(basket_id, {}).values())

    def savepoint(self, basket_ids: list[str] | None = None) -> Callable[[], None]:
        """A function that puts the buffer (the part of ``basket_ids`` only, when given: the
        caller changes no other basket meanwhile) back as it is now."""
        ids = list(self._by_basket) if basket_ids is None else basket_ids
        saved = {b: dict(self._by_basket.get(b, {})) for b in ids}
        whole = dict(self._basket_of) if basket_ids is None else None

        def rollback() -> None:
            if whole is not None:
                self._by_basket, self._basket_of = {}, whole
            for b, ps in saved.items():
                for cid in self._by_basket.pop(b, {}):
                    self._basket_of.pop(cid, None)
                if ps:
                    self._by_basket[b] = dict(ps)
                    self._basket_of.update(dict.fromkeys(ps, b))

        return rollback

    def pop_basket_updates(self, basket_id: str) -> list[PendingUpdate]:
        """Remove and return the basket's buffered updates, in arrival order."""
        ps = list(self._by_basket.pop(basket_id, {}).values())
        for p in ps:
            del self._basket_of[p.client_id]
        return ps

    def drop_client(self, client_id: str) -> PendingUpdate | None:
        """Remove and return the client's buffered update, if any."""
        basket = self._basket_of.pop(client_id, None)
        return None if basket is None else self._by_basket[basket].pop(client_id)

    def move(self, client_id: str, basket_id: str) -> None:
        """Re-file the client's buffered update under ``basket_id`` (after a split)."""
        p = self.drop_client(client_id)
        if p is not None:
            self.add(dataclasses.replace(p, basket_id=basket_id))

    def all(self) -> list[PendingUpdate]:
        """Every buffered update."""
        return [p for ps in self._by_basket.values() for p in ps.values()]
