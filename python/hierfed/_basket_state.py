"""The JSON form of a :class:`hierfed.basket.BasketManager`'s state, and its validation.

Format (``version`` 1)::

    {"version": 1,
     "config": {"min_clients", "max_clients", "stale_threshold", "allow_cross_domain"},
     "entropy": "<decimal str>",            # seed entropy of the random halving
     "counters": {domain: next_k},          # so new basket ids never collide
     "clients": [{"client_id", "domain_id", "basket_id", "features": [float] | null,
                  "joined_at", "last_active", "n_updates", "trust_score"}, ...],  # by id
     "baskets": [{"basket_id", "domain_id", "status": "forming" | ... | "disbanded",
                  "clients": [str], "created_at", "last_activity"}, ...]}  # creation order

Only strs, numbers, bools, lists, dicts and ``None``: ``json.dumps`` takes it as it is. The
loader checks types and cross-references and raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._basket_records import BasketConfig, ClientInfo, as_features

__all__ = ["STATE_VERSION", "dump", "load"]

STATE_VERSION = 1


def dump(
    config: BasketConfig,
    entropy: int,
    counters: Mapping[str, int],
    clients: Mapping[str, ClientInfo],
    baskets: list[dict[str, Any]],
) -> dict[str, Any]:
    """The state dict of a manager's parts (called under the manager's lock)."""
    return {
        "version": STATE_VERSION,
        "config": {
            "min_clients": config.min_clients,
            "max_clients": config.max_clients,
            "stale_threshold": config.stale_threshold,
            "allow_cross_domain": config.allow_cross_domain,
        },
        "entropy": str(entropy),
        "counters": dict(counters),
        "clients": [
            {
                "client_id": c.client_id,
                "domain_id": c.domain_id,
                "basket_id": c.basket_id,
                "features": None if c.features is None else [float(v) for v in c.features],
                "joined_at": c.joined_at,
                "last_active": c.last_active,
                "n_updates": c.n_updates,
                "trust_score": c.trust_score,
            }
            for c in (clients[k] for k in sorted(clients))
        ],
        "baskets": baskets,
    }


def _field(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise ValueError(f"state: {where} lacks {key!r}")
    value = record[key]
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"state: {where}[{key!r}] must not be a bool")
    if not isinstance(value, kind):
        raise ValueError(f"state: {where}[{key!r}] has type {type(value).__name__}")
    return value


def _time(record: Mapping[str, Any], key: str, where: str) -> float:
    value = float(_field(record, key, (int, float), where))
    if not math.isfinite(value):
        raise ValueError(f"state: {where}[{key!r}] is not finite")
    return value


def load(
    state: Mapping[str, Any],
) -> tuple[BasketConfig, int, dict[str, int], list[ClientInfo], list[dict[str, Any]]]:
    """Config, entropy, counters, clients and basket records of a validated state dict."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping, got {type(state).__name__}")
    version = _field(state, "version", int, "state")
    if version != STATE_VERSION:
        raise ValueError(f"state: version {version} is not supported (expected {STATE_VERSION})")
    raw = _field(state, "config", Mapping, "state")
    try:
        config = BasketConfig(**{k: raw[k] for k in BasketConfig.__dataclass_fields__})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"state: bad config: {exc}") from exc
    try:
        entropy = int(_field(state, "entropy", str, "state"))
    except ValueError as exc:
        raise ValueError(f"state: bad entropy: {exc}") from exc
    counters = dict(_field(state, "counters", Mapping, "state"))
    for domain, k in counters.items():
        if not isinstance(domain, str) or isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"state: bad counter {domain!r}: {k!r}")
    clients = []
    for i, rec in enumerate(_field(state, "clients", list, "state")):
        where = f"clients[{i}]"
        feats = _field(rec, "features", (list, type(None)), where)
        n_updates = _field(rec, "n_updates", int, where)
        trust = _time(rec, "trust_score", where)
        if n_updates < 0 or trust < 0:
            raise ValueError(f"state: {where} has a negative n_updates or trust_score")
        try:
            features = None if feats is None else as_features(np.asarray(feats, np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state: {where}: {exc}") from exc
        clients.append(
            ClientInfo(
                client_id=_field(rec, "client_id", str, where),
                domain_id=_field(rec, "domain_id", str, where),
                basket_id=_field(rec, "basket_id", str, where),
                features=features,
                joined_at=_time(rec, "joined_at", where),
                last_active=_time(rec, "last_active", where),
                n_updates=n_updates,
                trust_score=trust,
            )
        )
    baskets = []
    seen: set[str] = set()
    for i, rec in enumerate(_field(state, "baskets", list, "state")):
        where = f"baskets[{i}]"
        basket = {
            "basket_id": _field(rec, "basket_id", str, where),
            "domain_id": _field(rec, "domain_id", str, where),
            "status": _field(rec, "status", str, where),
            "clients": _field(rec, "clients", list, where),
            "created_at": _time(rec, "created_at", where),
            "last_activity": _time(rec, "last_activity", where),
        }
        if basket["basket_id"] in seen:
            raise ValueError(f"state: basket {basket['basket_id']!r} is listed twice")
        seen.add(basket["basket_id"])
        if basket["status"] not in ("forming", "active", "stale", "disbanded"):
            raise ValueError(f"state: {where} has an unknown status {basket['status']!r}")
        if basket["status"] == "disbanded" and basket["clients"]:
            raise ValueError(f"state: disbanded basket {basket['basket_id']!r} has clients")
        baskets.append(basket)
    return config, entropy, counters, clients, baskets
