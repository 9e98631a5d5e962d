"""A federation checkpoint's state, checked field by field before anything is restored.

:func:`load` turns the JSON document and arrays of :mod:`hierfed._checkpoint` into a
:class:`Restored` or raises ``ValueError`` naming the first field that is wrong: types,
shapes, dtypes, finiteness, ids the basket manager knows, versions in order, accountant
histories of the configured noise and as long as the releases they account, counters that
add up. The caller assigns a :class:`Restored` at once: a restore is all or nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._buffer import PendingUpdate, UpdateBuffer
from .basket import BasketConfig, BasketManager
from .layers import BasketModel
from .optimizers import ServerOptimizer
from .trust import ReliabilityTracker

FORMAT = 4
Array = np.ndarray[Any, Any]
History = list[tuple[float, float, int]]
STATS_COUNTS = (
    "accepted",
    "dropped_stale",
    "dropped_stale_baskets",
    "dropped_on_leave",
    "dropped_unaggregated",
    "basket_aggregations",
    "aggregated_updates",
    "global_rounds",
)
_KEYS = {
    "format",
    "version",
    "has_model",
    "pending",
    "basket_models",
    "contributed",
    "stats",
    "manager",
    "layer2_rounds",
    "layer2_history",
    "layer1_history",
    "centers",
    "client_releases",
    "optimizer",
    "layer2_reliability",
    "clip_norms",
}
_PENDING_KEYS = {"client_id", "basket_id", "base_version", "staleness", "received_at"}
_MODEL_KEYS = {"basket_id", "n_contributors", "round_id", "timestamp", "confidence"}


@dataclass
class Expected:
    """What the restoring federation's configuration fixes."""

    basket: BasketConfig
    model: Array | None  # its model (shape and dtype), if it has one
    local_noise: tuple[float, float] | None  # Layer 1's (noise multiplier, rate), None when off
    central_noise: tuple[float, float] | None  # Layer 2's, None without central DP
    layer1_adaptive: bool  # whether Layer 1 runs DP-FedAvg (clip norms per basket)
    layer2_adaptive: bool  # whether Layer 2 does (one clip norm)
    optimizer: ServerOptimizer  # its server optimizer (name; the model fixes the arrays)


@dataclass
class Restored:
    """A checked federation state, ready to be assigned."""

    manager: BasketManager
    version: int
    model: Array | None
    buffer: UpdateBuffer
    basket_models: dict[str, list[BasketModel]]
    contributed: set[str]
    stats: dict[str, Any]
    layer2_rounds: int
    layer2_history: History
    layer1_history: dict[str, History]
    centers: dict[str, Array]
    client_releases: dict[str, int]
    optimizer: tuple[int, Array | None, Array | None]  # steps, m, v
    reliability: dict[str, float]  # Layer 2's reliability scores by basket
    layer1_clip_norms: dict[str, float]  # DP-FedAvg clip norms by basket
    layer2_clip_norm: float | None  # Layer 2's DP-FedAvg clip norm


def _fail(field: str, why: str) -> ValueError:
    return ValueError(f"checkpoint field {field}: {why}")


def _int(x: Any, field: str, low: int = 0, high: float = math.inf) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not low <= x <= high:
        raise _fail(field, f"must be an int in [{low}, {high}], got {x!r}")
    return x


def _real(x: Any, field: str, low: float = -math.inf, high: float = math.inf) -> float:
    ok = not isinstance(x, bool) and isinstance(x, (int, float))
    if not ok or not math.isfinite(x) or not low <= x <= high:
        raise _fail(field, f"must be a finite number in [{low}, {high}], got {x!r}")
    return float(x)


def _str(x: Any, field: str) -> str:
    if not isinstance(x, str):
        raise _fail(field, f"must be a str, got {x!r}")
    return x


def _list(x: Any, field: str) -> list[Any]:
    if not isinstance(x, list):
        raise _fail(field, f"must be a list, got {type(x).__name__}")
    return x


def _dict(x: Any, field: str, keys: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(x, dict):
        raise _fail(field, f"must be an object, got {type(x).__name__}")
    if keys is not None and set(x) != keys:
        raise _fail(field, f"must have the keys {sorted(keys)}, got {sorted(x)}")
    return x


class _Arrays:
    """The file's arrays, each taken once and checked like the model."""

    def __init__(self, arrays: Mapping[str, Array]) -> None:
        self._left = dict(arrays)
        self.like: Array | None = None

    def take(self, name: str) -> Array:
        if name not in self._left:
            raise _fail(name, "array missing")
        a = self._left.pop(name)
        if a.dtype not in (np.float32, np.float64):
            raise _fail(name, f"dtype {a.dtype}; need float32 or float64")
        if self.like is not None and (a.shape != self.like.shape or a.dtype != self.like.dtype):
            raise _fail(
                name, f"shape {a.shape} {a.dtype}; the model is {self.like.shape} {self.like.dtype}"
            )
        if not np.isfinite(a).all():
            raise _fail(name, "holds NaN or infinity")
        return a.copy()

    def done(self) -> None:
        if self._left:
            raise _fail("arrays", f"unexpected arrays {sorted(self._left)}")


def _history(x: Any, field: str, noise: tuple[float, float] | None) -> History:
    out = []
    for i, entry in enumerate(_list(x, field)):
        where = f"{field}[{i}]"
        if not isinstance(entry, list) or len(entry) != 3:
            raise _fail(where, f"must be [noise_multiplier, sample_rate, steps], got {entry!r}")
        z, q = _real(entry[0], where, 0.0), _real(entry[1], where, 0.0, 1.0)
        if noise is None or (z, q) != noise:
            raise _fail(
                where,
                f"noise multiplier and rate {(z, q)!r}; this configuration releases with {noise}",
            )
        out.append((z, q, _int(entry[2], where, 1, 1)))
    return out


def _clip_norms(
    x: Any, expected: Expected, baskets: set[str]
) -> tuple[dict[str, float], float | None]:
    """The DP-FedAvg clip norms: by basket for Layer 1, one for Layer 2 (or null)."""
    raw = _dict(x, "clip_norms", {"layer1", "layer2"})
    layer1 = {}
    for b, c in _dict(raw["layer1"], "clip_norms.layer1").items():
        if b not in baskets or not expected.layer1_adaptive:
            raise _fail(f"clip_norms.layer1[{b!r}]", "unknown basket or no DP-FedAvg in Layer 1")
        layer1[b] = _positive(c, f"clip_norms.layer1[{b!r}]")
    if (raw["layer2"] is None) == expected.layer2_adaptive:
        raise _fail(
            "clip_norms.layer2", f"must be {'a number' if expected.layer2_adaptive else 'null'}"
        )
    layer2 = None if raw["layer2"] is None else _positive(raw["layer2"], "clip_norms.layer2")
    return layer1, layer2


def _positive(x: Any, field: str) -> float:
    value = _real(x, field, 0.0)
    if value <= 0:
        raise _fail(field, f"must be > 0, got {value!r}")
    return value


def load(
    state: Mapping[str, Any],
    arrays: Mapping[str, Array],
    expected: Expected,
    clock: Callable[[], float],
) -> Restored:
    """The checked state of a checkpoint (raises ``ValueError`` naming what is wrong); its
    basket manager reads ``clock``."""
    if state.get("format") != FORMAT:
        raise _fail("format", f"unknown checkpoint format {state.get('format')!r} (need {FORMAT})")
    _dict(dict(state), "(top level)", _KEYS)
    try:
        manager = BasketManager.from_state(state["manager"], clock=clock)
    except (ValueError, TypeError, KeyError) as exc:
        raise _fail("manager", str(exc)) from None
    if manager.config != expected.basket:
        raise _fail("manager", f"basket config {manager.config} differs from {expected.basket}")
    baskets = {b.basket_id for b in manager.list_baskets(include_disbanded=True)}
    version = _int(state["version"], "version")
    files = _Arrays(arrays)
    files.like = expected.model
    model = None
    if not isinstance(state["has_model"], bool):
        raise _fail("has_model", "must be a bool")
    if state["has_model"]:
        model = files.take("model")
        files.like = model
    contributed = set()
    for i, c in enumerate(_list(state["contributed"], "contributed")):
        cid = _str(c, f"contributed[{i}]")
        if manager.get_client(cid) is None or cid in contributed:
            raise _fail(f"contributed[{i}]", f"{cid!r} is unknown or listed twice")
        contributed.add(cid)
    buffer = UpdateBuffer()
    for i, raw in enumerate(_list(state["pending"], "pending")):
        where = f"pending[{i}]"
        p = _dict(raw, where, _PENDING_KEYS)
        cid, bid = _str(p["client_id"], where), _str(p["basket_id"], where)
        if cid not in contributed or cid in buffer:
            raise _fail(where, f"client {cid!r} is not in this round or buffered twice")
        if bid not in baskets:
            raise _fail(where, f"unknown basket {bid!r}")
        base = _int(p["base_version"], f"{where}.base_version", 0, version)
        staleness = _int(p["staleness"], f"{where}.staleness", 0, version - base)
        update = files.take(f"pending_{i}")
        if model is None:
            raise _fail(where, "a buffered update without a model")
        at = _real(p["received_at"], f"{where}.received_at")
        buffer.add(PendingUpdate(cid, bid, update, base, staleness, at))
    basket_models: dict[str, list[BasketModel]] = {}
    n_models = 0
    for i, raw in enumerate(_list(state["basket_models"], "basket_models")):
        where = f"basket_models[{i}]"
        m = _dict(raw, where, _MODEL_KEYS)
        bid = _str(m["basket_id"], where)
        if bid not in baskets:
            raise _fail(where, f"unknown basket {bid!r}")
        bm = BasketModel(
            basket_id=bid,
            aggregate=files.take(f"basket_model_{i}"),
            n_contributors=_int(m["n_contributors"], f"{where}.n_contributors", 1),
            round_id=_int(m["round_id"], f"{where}.round_id", 0, version),
            timestamp=_real(m["timestamp"], f"{where}.timestamp"),
            confidence=_real(m["confidence"], f"{where}.confidence", 0.0, 1.0),
        )
        basket_models.setdefault(bid, []).append(bm)
        n_models += 1
    centers: dict[str, Array] = {}
    for bid, raw in _dict(state["centers"], "centers").items():
        if raw != f"center_{len(centers)}":
            raise _fail(f"centers[{bid!r}]", f"must name array center_{len(centers)}")
        centers[bid] = files.take(raw)
    moments = {k: files.take(f"optimizer_{k}") for k in ("m", "v") if f"optimizer_{k}" in arrays}
    try:
        optimizer = expected.optimizer.checked_state(state["optimizer"], moments, model)
    except ValueError as exc:
        raise _fail("optimizer", str(exc)) from None
    files.done()
    tracker = ReliabilityTracker()
    try:
        tracker.load(_dict(state["layer2_reliability"], "layer2_reliability"))
    except ValueError as exc:
        raise _fail("layer2_reliability", str(exc)) from None
    layer1_clips, layer2_clip = _clip_norms(state["clip_norms"], expected, baskets)
    stats = _stats(state["stats"], version, len(buffer), n_models)
    rounds = _int(state["layer2_rounds"], "layer2_rounds")
    if rounds != version:
        raise _fail("layer2_rounds", f"{rounds} Layer 2 rounds but version {version}")
    layer2 = _history(state["layer2_history"], "layer2_history", expected.central_noise)
    if expected.central_noise is not None and len(layer2) != rounds:
        raise _fail("layer2_history", f"{len(layer2)} noised releases for {rounds} rounds")
    layer1 = {
        _str(b, "layer1_history"): _history(h, f"layer1_history[{b!r}]", expected.local_noise)
        for b, h in _dict(state["layer1_history"], "layer1_history").items()
    }
    released = sum(len(h) for h in layer1.values())
    if expected.local_noise is not None and released != stats["basket_aggregations"]:
        raise _fail(
            "layer1_history",
            f"{released} noised releases for {stats['basket_aggregations']} basket aggregations",
        )
    releases = {
        _str(c, "client_releases"): _int(k, f"client_releases[{c!r}]", 1)
        for c, k in _dict(state["client_releases"], "client_releases").items()
    }
    noised = stats["aggregated_updates"] if expected.local_noise is not None else 0
    if sum(releases.values()) != noised:
        raise _fail(
            "client_releases",
            f"{sum(releases.values())} client releases for {noised} noised aggregated updates",
        )
    return Restored(
        manager,
        version,
        model,
        buffer,
        basket_models,
        contributed,
        stats,
        rounds,
        layer2,
        layer1,
        centers,
        releases,
        optimizer,
        tracker.scores,
        layer1_clips,
        layer2_clip,
    )


def _stats(raw: Any, version: int, buffered: int, n_models: int) -> dict[str, Any]:
    stats = _dict(raw, "stats")
    for k in STATS_COUNTS:
        _int(stats.get(k), f"stats.{k}")
    for k, v in _dict(stats.get("rejected"), "stats.rejected").items():
        _int(v, f"stats.rejected[{k!r}]")
    if stats["global_rounds"] != version:
        raise _fail("stats.global_rounds", f"{stats['global_rounds']} but version {version}")
    out = (
        stats["aggregated_updates"]
        + buffered
        + stats["dropped_on_leave"]
        + stats["dropped_unaggregated"]
    )
    if stats["accepted"] != out:
        raise _fail(
            "stats.accepted",
            f"{stats['accepted']} accepted updates, but {out} are aggregated, buffered or dropped",
        )
    if n_models > stats["basket_aggregations"]:
        raise _fail("stats.basket_aggregations", f"fewer than the {n_models} basket models")
    return stats
