"""Domain baskets: clients grouped by domain, with a lifecycle, assignment, split and staleness.

:class:`BasketManager` keeps every client in exactly one live basket (``spec/basket.md``). The
rules below are the contract; each method's docstring points back here.

Lifecycle
    ``FORMING -> ACTIVE -> STALE -> DISBANDED``. The first three are derived from the basket's
    state whenever it is read, so they can never be out of date: STALE when the time since the
    basket's last activity is at least ``stale_threshold`` seconds (on the manager's clock),
    else ACTIVE with at least ``min_clients`` clients, else FORMING. Activity is the basket's
    creation, a client joining or leaving it, :meth:`BasketManager.touch_basket` and
    :meth:`BasketManager.record_update` of a member; :meth:`BasketManager.touch_client` alone
    marks the client, not its basket. Any activity brings a stale basket back to ACTIVE or
    FORMING. DISBANDED is terminal and set by :meth:`BasketManager.disband_basket`, by a split
    (the old basket is disbanded, both halves get new ids) or when the last client leaves (the
    spec's "marked for cleanup"). A disbanded basket keeps its record: ``get_basket`` returns
    it with status DISBANDED and no clients, nothing is ever assigned to it, activity on it is
    ignored, and it never counts in stats, staleness or :meth:`BasketManager.list_baskets`
    (unless asked). Basket ids are never reused.

Assignment (``add_client``, spec logic 1-4)
    The candidates are the live baskets serving the client's domain (its primary domain, or
    one that holds a client of the domain) with fewer than ``max_clients`` clients. When the
    client has a fingerprint and some candidates hold fingerprints of the domain, the client
    joins the candidate whose domain centroid is nearest (squared Euclidean); otherwise the
    fullest candidate, so baskets reach ``min_clients`` quickly. Ties go to the older basket.
    Stale baskets are candidates like any other (the join revives them). When every basket of
    the domain is full a new basket is created; when the domain has no basket, the
    cross-domain rule applies, else its first basket is created. Cost: O(baskets of the
    domain) per client; lookups by client or basket id are O(1).

Cross-domain (``allow_cross_domain=True``)
    A client whose domain has no live basket yet joins the fullest basket of another domain
    that still holds fewer than ``min_clients`` clients (ties to the older), instead of
    starting a singleton basket: small domains pool until they reach quorum. Later clients of
    its domain find that basket (it now serves their domain) and fill it like any other; when
    it is full they get a basket of their own domain. Fingerprints are not compared across
    domains. A pooled basket keeps the ``domain_id`` of the domain it was created for;
    ``BasketInfo.domains`` lists all the domains of its clients.

Split
    Whenever a basket holds more than ``max_clients`` clients (a disband can overfill one)
    it is split in two, repeatedly if needed. When every client has a fingerprint of one
    common length, by 2-means (:func:`hierfed._basket_split.two_means`: farthest-pair start,
    Lloyd iterations, sides capped at ``max_clients``); otherwise by a random halving seeded
    from the manager's seed and the basket id (sizes differ by at most one). Both sides are
    never empty. The old basket is disbanded and the halves are new baskets of its domain.

Disband
    The basket is disbanded and each of its clients (in id order) goes to another live basket
    of its own domain, chosen as in assignment among those with room; when they are all full,
    to the one assignment would prefer regardless of room, which is then split. A domain
    with no other basket gets one new basket (or, with ``allow_cross_domain``, the
    cross-domain rule applies). Disbanding merges small baskets into their neighbours.

Ids
    Generated basket ids are ``f"{domain}_basket_{k}"`` with a per-domain counter ``k``
    (skipping ids taken by hand-named baskets). Unknown client or basket ids raise
    ``ValueError`` naming the id, except in the lookups returning ``Optional``
    (``get_basket``, ``get_client_basket``, ``get_client``), which return ``None``, and
    ``remove_client``, which returns ``False``.

Concurrency
    One re-entrant lock guards all state; every method is atomic. Returned
    :class:`BasketInfo` / :class:`ClientInfo` objects and client sets are snapshots (copies):
    mutating them changes nothing inside the manager and later changes do not show in them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _checks
from ._basket_records import BasketConfig, BasketInfo, BasketStatus, ClientInfo, as_features
from ._basket_split import random_halves, two_means
from ._basket_state import dump, load

__all__ = ["BasketConfig", "BasketInfo", "BasketManager", "BasketStatus", "ClientInfo"]

_T = TypeVar("_T")


def _check_id(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must be a non-empty str")
    return value


def _known(table: Mapping[str, _T], key: Any, name: str) -> _T:
    """``table[key]``; ``key`` must be a non-empty str that ``table`` holds."""
    _check_id(key, name)
    found = table.get(key)
    if found is None:
        raise ValueError(f"unknown {name} {key!r}")
    return found


class _Basket:
    """The manager's mutable record of a basket (never handed out)."""

    __slots__ = (
        "basket_id",
        "clients",
        "created_at",
        "disbanded",
        "domain_counts",
        "domain_id",
        "fcount",
        "fsum",
        "last_activity",
        "seq",
    )

    def __init__(self, basket_id: str, domain_id: str, seq: int, now: float) -> None:
        self.basket_id = basket_id
        self.domain_id = domain_id
        self.seq = seq
        self.clients: set[str] = set()
        self.created_at = now
        self.last_activity = now
        self.disbanded = False
        self.domain_counts: dict[str, int] = {}  # clients per domain
        self.fsum: dict[str, NDArray[np.float64]] = {}  # fingerprint sum per domain
        self.fcount: dict[str, int] = {}  # fingerprints per domain

    def domains(self) -> set[str]:
        """The primary domain and every domain with a client here."""
        return {self.domain_id, *self.domain_counts}

    def centroid(self, domain: str) -> NDArray[np.float64] | None:
        """Mean fingerprint of this basket's clients of ``domain``, if any have one."""
        count = self.fcount.get(domain, 0)
        return self.fsum[domain] / count if count else None


class BasketManager:
    """Clients grouped into domain baskets (see the module docstring for every rule).

    Parameters
    ----------
    config
        Sizes and staleness; the default :class:`BasketConfig` when ``None``. Copied.
    clock
        Returns the current time in seconds; injectable so tests control staleness. Use
        ``time.time`` when states are saved and restored in another process.
    seed
        Seeds the random halving of splits without complete fingerprints; ``None`` draws
        fresh entropy (kept in :meth:`state_dict`).
    """

    def __init__(
        self,
        config: BasketConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        if config is None:
            config = BasketConfig()
        if not isinstance(config, BasketConfig):
            raise TypeError(f"config must be a BasketConfig, got {type(config).__name__}")
        config.validate()
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        if seed is not None:
            _checks.count(seed, "seed", 0)
        self._config = dataclasses.replace(config)
        self._clock = clock
        self._entropy = int(np.random.SeedSequence(seed).entropy)  # type: ignore[arg-type]
        self._lock = threading.RLock()
        self._clients: dict[str, ClientInfo] = {}
        self._baskets: dict[str, _Basket] = {}  # every basket ever, in creation order
        self._live: dict[str, None] = {}  # ids of baskets not disbanded, in creation order
        self._serving: dict[str, dict[str, None]] = {}  # domain -> live baskets serving it
        self._counters: dict[str, int] = {}  # domain -> next k of f"{domain}_basket_{k}"
        self._seq = 0
        self._dims: dict[str, list[int]] = {}  # domain -> [fingerprint length, clients with one]
        self._now()  # fail early on a clock that does not return a number

    # ------------------------------------------------------------------ small helpers
    @property
    def config(self) -> BasketConfig:
        """A copy of the configuration in use."""
        return dataclasses.replace(self._config)

    def _now(self) -> float:
        now = self._clock()
        if isinstance(now, bool) or not isinstance(now, (int, float, np.integer, np.floating)):
            raise TypeError(f"clock must return a number, got {type(now).__name__}")
        return float(now)

    def _client(self, client_id: Any) -> ClientInfo:
        return _known(self._clients, client_id, "client_id")

    def _basket(self, basket_id: Any) -> _Basket:
        return _known(self._baskets, basket_id, "basket_id")

    def _status(self, basket: _Basket, now: float) -> BasketStatus:
        if basket.disbanded:
            return BasketStatus.DISBANDED
        if now - basket.last_activity >= self._config.stale_threshold:
            return BasketStatus.STALE
        if len(basket.clients) >= self._config.min_clients:
            return BasketStatus.ACTIVE
        return BasketStatus.FORMING

    def _snapshot(self, basket: _Basket, now: float) -> BasketInfo:
        return BasketInfo(
            basket_id=basket.basket_id,
            domain_id=basket.domain_id,
            status=self._status(basket, now),
            clients=set(basket.clients),
            created_at=basket.created_at,
            last_activity=basket.last_activity,
            domains=basket.domains() if not basket.disbanded else {basket.domain_id},
        )

    @staticmethod
    def _client_snapshot(client: ClientInfo) -> ClientInfo:
        features = None if client.features is None else client.features.copy()
        return dataclasses.replace(client, features=features)

    # ------------------------------------------------------------------ basket records
    def _next_id(self, domain: str) -> str:
        k = self._counters.get(domain, 0)
        while f"{domain}_basket_{k}" in self._baskets:
            k += 1
        self._counters[domain] = k + 1
        return f"{domain}_basket_{k}"

    def _new_basket(self, domain: str, now: float, basket_id: str | None = None) -> _Basket:
        basket = _Basket(basket_id or self._next_id(domain), domain, self._seq, now)
        self._seq += 1
        self._baskets[basket.basket_id] = basket
        self._live[basket.basket_id] = None
        self._serving.setdefault(domain, {})[basket.basket_id] = None
        return basket

    def _attach(self, client: ClientInfo, basket: _Basket, now: float) -> None:
        domain = client.domain_id
        basket.clients.add(client.client_id)
        basket.domain_counts[domain] = basket.domain_counts.get(domain, 0) + 1
        self._serving.setdefault(domain, {})[basket.basket_id] = None
        if client.features is not None:
            if domain in basket.fsum:
                basket.fsum[domain] = basket.fsum[domain] + client.features
            else:
                basket.fsum[domain] = client.features.copy()
            basket.fcount[domain] = basket.fcount.get(domain, 0) + 1
        client.basket_id = basket.basket_id
        basket.last_activity = now

    def _detach(self, client: ClientInfo, basket: _Basket, now: float) -> None:
        domain = client.domain_id
        basket.clients.discard(client.client_id)
        basket.domain_counts[domain] -= 1
        if basket.domain_counts[domain] == 0:
            del basket.domain_counts[domain]
            if domain != basket.domain_id:
                self._unserve(domain, basket.basket_id)
        if client.features is not None:
            basket.fcount[domain] -= 1
            if basket.fcount[domain] == 0:
                del basket.fcount[domain], basket.fsum[domain]
            else:
                basket.fsum[domain] = basket.fsum[domain] - client.features
        client.basket_id = None
        basket.last_activity = now

    def _unserve(self, domain: str, basket_id: str) -> None:
        serving = self._serving.get(domain)
        if serving is not None:
            serving.pop(basket_id, None)
            if not serving:
                del self._serving[domain]

    def _retire(self, basket: _Basket) -> None:
        """Mark an (already emptied) basket DISBANDED and drop it from every index."""
        for domain in basket.domains():
            self._unserve(domain, basket.basket_id)
        basket.disbanded = True
        basket.clients.clear()
        basket.domain_counts.clear()
        basket.fsum.clear()
        basket.fcount.clear()
        self._live.pop(basket.basket_id, None)

    # ------------------------------------------------------------------ choice rules
    @staticmethod
    def _best(
        candidates: Iterable[_Basket], domain: str | None, features: NDArray[np.float64] | None
    ) -> _Basket:
        """Nearest domain centroid when comparable, else the fullest; ties to the older."""
        candidates = list(candidates)
        if features is not None and domain is not None:
            scored = []
            for basket in candidates:
                centroid = basket.centroid(domain)
                if centroid is not None:
                    dist = float(np.sum((centroid - features) ** 2))
                    scored.append((dist, -len(basket.clients), basket.seq, basket))
            if scored:
                return min(scored, key=lambda s: s[:3])[3]
        return min(candidates, key=lambda b: (-len(b.clients), b.seq))

    def _choose(self, client: ClientInfo) -> _Basket | None:
        """The basket assignment picks for ``client`` or ``None`` when a new one is due."""
        domain, cap = client.domain_id, self._config.max_clients
        serving = [self._baskets[b] for b in self._serving.get(domain, ())]
        if serving:
            room = [b for b in serving if len(b.clients) < cap]
            return self._best(room, domain, client.features) if room else None
        if self._config.allow_cross_domain:
            small = self._config.min_clients
            pool = [self._baskets[b] for b in self._live]
            pool = [b for b in pool if len(b.clients) < small]
            if pool:
                return self._best(pool, None, None)
        return None

    def _split(self, basket: _Basket, now: float) -> tuple[str, str]:
        members = sorted(basket.clients)
        feats = [f for c in members if (f := self._clients[c].features) is not None]
        labels = None
        if len(feats) == len(members) and len({f.shape for f in feats}) == 1:
            labels = two_means(np.stack(feats), self._config.max_clients)
        if labels is None:
            key = tuple(basket.basket_id.encode())
            rng = np.random.default_rng(np.random.SeedSequence(self._entropy, spawn_key=key))
            labels = random_halves(len(members), rng)
        clients = [self._clients[c] for c in members]
        for client in clients:
            self._detach(client, basket, now)
        self._retire(basket)
        halves = (self._new_basket(basket.domain_id, now), self._new_basket(basket.domain_id, now))
        for client, side in zip(clients, labels.tolist(), strict=True):
            self._attach(client, halves[int(side)], now)
        return halves[0].basket_id, halves[1].basket_id

    def _split_oversized(self, basket_ids: Iterable[str], now: float) -> None:
        work = list(dict.fromkeys(basket_ids))
        while work:
            basket = self._baskets[work.pop()]
            if not basket.disbanded and len(basket.clients) > self._config.max_clients:
                work.extend(self._split(basket, now))

    # ------------------------------------------------------------------ membership
    def add_client(self, client_id: str, domain_id: str, features: ArrayLike | None = None) -> str:
        """Register a client and assign it to a basket (module docstring: Assignment).

        Parameters
        ----------
        client_id
            A new, non-empty id; a registered id raises ``ValueError``.
        domain_id
            The client's domain, a non-empty str.
        features
            Optional fingerprint: a finite numeric 1-D array, of the same length for every
            client of the domain.

        Returns
        -------
        The id of the basket the client joined.
        """
        _check_id(client_id, "client_id")
        _check_id(domain_id, "domain_id")
        feats = None if features is None else as_features(features)
        with self._lock:
            if client_id in self._clients:
                raise ValueError(f"client_id {client_id!r} is already registered")
            dims = self._dims.get(domain_id)
            if feats is not None and dims is not None and dims[0] != feats.size:
                raise ValueError(
                    f"features has length {feats.size} but domain {domain_id!r} uses "
                    f"fingerprints of length {dims[0]}"
                )
            now = self._now()
            client = ClientInfo(client_id, domain_id, None, feats, now, now, 0, 1.0)
            basket = self._choose(client) or self._new_basket(domain_id, now)
            self._attach(client, basket, now)
            self._clients[client_id] = client
            if feats is not None:
                self._dims.setdefault(domain_id, [feats.size, 0])[1] += 1
            return basket.basket_id

    def remove_client(self, client_id: str) -> bool:
        """Unregister a client; ``False`` when it is unknown.

        Its basket continues; the basket is disbanded when this was its last client.
        """
        _check_id(client_id, "client_id")
        with self._lock:
            if client_id not in self._clients:
                return False
            now = self._now()  # before any change: a failing clock leaves the state intact
            client = self._clients.pop(client_id)
            assert client.basket_id is not None
            basket = self._baskets[client.basket_id]
            self._detach(client, basket, now)
            if not basket.clients:
                self._retire(basket)
            if client.features is not None:
                dims = self._dims[client.domain_id]
                dims[1] -= 1
                if dims[1] == 0:
                    del self._dims[client.domain_id]
            return True

    def create_basket(self, domain_id: str, basket_id: str | None = None) -> str:
        """Create an empty (FORMING) basket for ``domain_id`` and return its id.

        ``basket_id`` (an extension) names it; it must not name any basket, live or not.
        """
        _check_id(domain_id, "domain_id")
        if basket_id is not None:
            _check_id(basket_id, "basket_id")
        with self._lock:
            if basket_id is not None and basket_id in self._baskets:
                raise ValueError(f"basket_id {basket_id!r} already exists")
            return self._new_basket(domain_id, self._now(), basket_id).basket_id

    def disband_basket(self, basket_id: str) -> dict[str, str]:
        """Disband a basket and reassign its clients (module docstring: Disband).

        Returns
        -------
        The moved clients and their new baskets (an extension; empty when the basket was
        already disbanded, which is not an error).
        """
        with self._lock:
            basket = self._basket(basket_id)
            if basket.disbanded:
                return {}
            now = self._now()
            clients = [self._clients[c] for c in sorted(basket.clients)]
            for client in clients:
                self._detach(client, basket, now)
            self._retire(basket)
            targets: list[str] = []
            for client in clients:
                target = self._choose(client)
                if target is None:
                    serving = [self._baskets[b] for b in self._serving.get(client.domain_id, ())]
                    target = (
                        self._best(serving, client.domain_id, client.features)
                        if serving
                        else self._new_basket(client.domain_id, now)
                    )
                self._attach(client, target, now)
                targets.append(target.basket_id)
            self._split_oversized(targets, now)
            return {c.client_id: c.basket_id for c in clients if c.basket_id is not None}

    def split_basket(self, basket_id: str) -> tuple[str, str]:
        """Split a live basket of at least two clients in two (module docstring: Split).

        The old basket is disbanded; returns the ids of the two new baskets.
        """
        with self._lock:
            basket = self._basket(basket_id)
            if basket.disbanded:
                raise ValueError(f"basket {basket_id!r} is disbanded and cannot be split")
            if len(basket.clients) < 2:
                raise ValueError(
                    f"basket {basket_id!r} has {len(basket.clients)} client(s); a split needs 2"
                )
            return self._split(basket, self._now())

    # ------------------------------------------------------------------ activity
    def touch_client(self, client_id: str) -> None:
        """Mark a client active now (its basket's activity is unchanged)."""
        with self._lock:
            self._client(client_id).last_active = self._now()

    def touch_basket(self, basket_id: str) -> None:
        """Mark a basket active now; ignored for a disbanded basket."""
        with self._lock:
            basket = self._basket(basket_id)
            if not basket.disbanded:
                basket.last_activity = self._now()

    def record_update(self, client_id: str) -> None:
        """Count an update: touch the client, ``n_updates += 1``, touch its basket."""
        with self._lock:
            client = self._client(client_id)
            now = self._now()
            client.last_active = now
            client.n_updates += 1
            assert client.basket_id is not None
            self._baskets[client.basket_id].last_activity = now

    def set_trust_score(self, client_id: str, trust_score: float) -> None:
        """Set a client's trust score, a finite number >= 0 (an extension)."""
        score = _checks.non_negative(trust_score, "trust_score")
        with self._lock:
            self._client(client_id).trust_score = score

    # ------------------------------------------------------------------ queries
    def get_basket(self, basket_id: str) -> BasketInfo | None:
        """A snapshot of the basket, ``None`` when unknown (disbanded ones are returned)."""
        _check_id(basket_id, "basket_id")
        with self._lock:
            basket = self._baskets.get(basket_id)
            return None if basket is None else self._snapshot(basket, self._now())

    def get_client_basket(self, client_id: str) -> str | None:
        """The id of the client's basket, ``None`` when the client is unknown."""
        _check_id(client_id, "client_id")
        with self._lock:
            client = self._clients.get(client_id)
            return None if client is None else client.basket_id

    def get_client(self, client_id: str) -> ClientInfo | None:
        """A snapshot of the client, ``None`` when unknown."""
        _check_id(client_id, "client_id")
        with self._lock:
            client = self._clients.get(client_id)
            return None if client is None else self._client_snapshot(client)

    def get_basket_clients(self, basket_id: str) -> set[str]:
        """A copy of the basket's client ids (empty once disbanded); unknown ids raise."""
        with self._lock:
            return set(self._basket(basket_id).clients)

    def list_baskets(self, include_disbanded: bool = False) -> list[BasketInfo]:
        """Snapshots of the live baskets (and disbanded ones if asked), in creation order."""
        with self._lock:
            now = self._now()
            ids: Iterable[str] = self._baskets if include_disbanded else self._live
            return [self._snapshot(self._baskets[b], now) for b in ids]

    def get_stale_baskets(self, threshold: float | None = None) -> list[str]:
        """Ids of live baskets without activity for at least ``threshold`` seconds.

        ``threshold`` defaults to the config's ``stale_threshold``; creation order.
        """
        if threshold is None:
            limit = self._config.stale_threshold
        else:
            limit = _checks.positive(threshold, "threshold")
        with self._lock:
            now = self._now()
            return [b for b in self._live if now - self._baskets[b].last_activity >= limit]

    def get_stats(self) -> dict[str, Any]:
        """Counts over live baskets (disbanded ones never count).

        The spec's keys ``n_clients``, ``n_baskets``, ``baskets_by_domain`` (by a basket's
        ``domain_id``), ``avg_clients_per_basket`` (0.0 without baskets) and
        ``n_stale_baskets``, plus ``baskets_by_status`` (status value -> count) and
        ``clients_by_domain``.
        """
        with self._lock:
            now = self._now()
            by_domain: dict[str, int] = {}
            by_status = {s.value: 0 for s in BasketStatus if s is not BasketStatus.DISBANDED}
            for b in self._live:
                basket = self._baskets[b]
                by_domain[basket.domain_id] = by_domain.get(basket.domain_id, 0) + 1
                by_status[self._status(basket, now).value] += 1
            clients_by_domain: dict[str, int] = {}
            for client in self._clients.values():
                clients_by_domain[client.domain_id] = clients_by_domain.get(client.domain_id, 0) + 1
            n_baskets = len(self._live)
            return {
                "n_clients": len(self._clients),
                "n_baskets": n_baskets,
                "baskets_by_domain": by_domain,
                "avg_clients_per_basket": len(self._clients) / n_baskets if n_baskets else 0.0,
                "n_stale_baskets": by_status[BasketStatus.STALE.value],
                "baskets_by_status": by_status,
                "clients_by_domain": clients_by_domain,
            }

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The whole state as JSON-serialisable data (lists, strs, numbers, ``None``).

        Times are the clock's values as they are; restore with a clock of the same origin.
        """
        with self._lock:
            now = self._now()
            baskets = [
                {
                    "basket_id": b.basket_id,
                    "domain_id": b.domain_id,
                    "status": self._status(b, now).value,
                    "clients": sorted(b.clients),
                    "created_at": b.created_at,
                    "last_activity": b.last_activity,
                }
                for b in self._baskets.values()
            ]
            return dump(self._config, self._entropy, self._counters, self._clients, baskets)

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> BasketManager:
        """A manager identical to the one that produced ``state`` (see :meth:`state_dict`).

        ``seed`` replaces the saved seed entropy when given. An inconsistent state raises
        ``ValueError``.
        """
        config, entropy, counters, clients, baskets = load(state)
        manager = cls(config, clock=clock, seed=seed)
        if seed is None:
            manager._entropy = entropy
        for raw in baskets:
            basket = _Basket(raw["basket_id"], raw["domain_id"], manager._seq, raw["created_at"])
            manager._seq += 1
            manager._baskets[basket.basket_id] = basket
            if raw["status"] == BasketStatus.DISBANDED.value:
                basket.disbanded = True
            else:
                manager._live[basket.basket_id] = None
                manager._serving.setdefault(basket.domain_id, {})[basket.basket_id] = None
        for client in clients:
            if client.client_id in manager._clients:
                raise ValueError(f"state lists client {client.client_id!r} twice")
            basket_id = client.basket_id
            if basket_id is None or basket_id not in manager._live:
                raise ValueError(f"state puts client {client.client_id!r} in no live basket")
            dims = manager._dims.get(client.domain_id)
            if client.features is not None:
                if dims is not None and dims[0] != client.features.size:
                    raise ValueError(f"state mixes fingerprint lengths in {client.domain_id!r}")
                manager._dims.setdefault(client.domain_id, [client.features.size, 0])[1] += 1
            manager._attach(client, manager._baskets[basket_id], 0.0)
            manager._clients[client.client_id] = client
        for raw in baskets:
            basket = manager._baskets[raw["basket_id"]]
            if basket.clients != set(raw["clients"]):
                raise ValueError(f"state's basket {basket.basket_id!r} disagrees with its clients")
            if len(basket.clients) > config.max_clients:
                raise ValueError(f"state's basket {basket.basket_id!r} exceeds max_clients")
            basket.last_activity = raw["last_activity"]
        manager._counters = dict(counters)
        return manager
