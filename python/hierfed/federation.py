"""The hierarchical federation: clients in baskets, buffered updates, two-layer rounds.

:class:`HierarchicalFederation` registers clients through a
:class:`~hierfed.basket.BasketManager`, buffers their updates (one copy each) with their
staleness, and runs the triggers of spec/layers.md:

- basket trigger: a basket with ``layer1.min_updates`` buffered updates (and at least what
  its rule needs) is aggregated by Layer 1 into a basket model; :meth:`poll` also aggregates
  baskets whose oldest buffered update waited ``basket_timeout`` seconds;
- global trigger: basket models from ``layer2.min_baskets`` distinct baskets are combined by
  Layer 2; the global model moves by ``server_learning_rate`` times the global aggregate and
  the version increases by one.

Bad updates (unknown client, wrong shape or dtype, non-finite values, a second update from a
client in one round, a base version from the future) raise ``ValueError``/``TypeError`` and
are counted in :meth:`get_stats`; they never reach a buffer. Updates staler than
``max_staleness`` are dropped (``submit_update`` returns ``False``) and counted. A client that
leaves loses its buffered update (spec/basket.md); a client that joins takes part from its
first update. Every method holds one lock: the federation is safe to drive from many threads.

Triggers are transactions: a basket's updates leave the buffer, and basket models are used
up, only when their aggregation succeeds. A failure raises :class:`TriggerError` naming the
basket (or the global round) and why, with buffer, basket models, model, version, counters
and accountants exactly as before; inside :meth:`HierarchicalFederation.submit_update` the
update is then not accepted either, so the client may submit it again. A configuration whose
triggers could never aggregate (a Layer 1 rule needing more updates than ``max_clients``, a
Layer 2 robust rule ``min_baskets`` cannot feed, a rule missing a parameter, staleness weights
of 0) is refused when it is built.

Trust: the federation plays every role in one process, which holds every client's update (in
its buffer and checkpoints) and every basket model; its SecAgg+ round is a simulation of the
protocol (``last_layer2["secure_agg_simulated"]``; ``secure_agg_used`` is ``False``) and its
central noise trusts this process with the exact sum. :mod:`hierfed.deploy` runs the roles as
separate parties.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _checkpoint, _feasible, _fed_state, layers
from ._buffer import PendingUpdate, UpdateBuffer
from ._inputs import refuse_masked
from ._noise_notice import announce, noise_notice
from ._store import Event, UpdateLog
from .aggregator import AggregationMethod
from .basket import BasketConfig, BasketManager
from .layers import BasketModel, GlobalMetaModel, Layer1Config, Layer2Config
from .optimizers import ServerOptimizer, ServerOptimizerConfig
from .privacy import NoiseGenerator, RDPAccountant
from .staleness import StalenessFunction, staleness_function

__all__ = [
    "FederationConfig",
    "HierarchicalFederation",
    "PendingUpdate",
    "TriggerError",
    "UpdateBuffer",
    "noise_notice",
]


class TriggerError(ValueError):
    """An aggregation (basket or global) failed; the federation's state is as it was before.

    ``basket_id`` names the basket whose Layer 1 failed (``None`` for a global round).
    """

    def __init__(self, message: str, basket_id: str | None = None) -> None:
        super().__init__(message)
        self.basket_id = basket_id


@dataclass
class FederationConfig:
    """Settings of a :class:`HierarchicalFederation`.

    Attributes
    ----------
    basket, layer1, layer2
        The baskets' and the two layers' settings.
    staleness
        A preset of :func:`~hierfed.staleness.staleness_function` or a callable
        ``staleness -> weight``; ``staleness_params`` go to the preset.
    max_staleness
        Updates (and basket models) staler than this are dropped; ``None`` keeps all.
    basket_timeout
        Seconds after which :meth:`HierarchicalFederation.poll` aggregates a basket holding
        fewer than ``min_updates`` updates; ``None`` waits for ``min_updates``.
    auto_aggregate
        Run the triggers inside :meth:`HierarchicalFederation.submit_update`.
    server_learning_rate
        The server optimizer's learning rate: with ``"sgd"`` the global model moves by this
        times each global aggregate.
    server_optimizer
        How the global model moves by each global aggregate: ``"sgd"``, ``"fedavgm"``,
        ``"fedadagrad"``, ``"fedadam"``, ``"fedyogi"`` (Reddi et al. 2021), or a
        :class:`~hierfed.optimizers.ServerOptimizerConfig` with their hyperparameters; its
        state is in checkpoints and the store's snapshots.
    checkpoint_path, checkpoint_every
        With a path, :meth:`HierarchicalFederation.submit_update` checkpoints there after
        every ``checkpoint_every`` accepted updates (and after each global round) before it
        returns: with 1, no acknowledged update is ever lost to a crash, but each submit
        rewrites every buffered update (for small federations; ``store`` scales).
    store
        Path of a durable update log (an SQLite database, :mod:`hierfed._store`): every
        registration, removal, accepted update, basket model and global round is committed
        there before the call returns (commits are shared by concurrent submits), with a
        snapshot beside it at each round boundary. A federation built on an existing store
        resumes from it: snapshot plus replay of the log. Change baskets through the
        federation (``split_basket``, ``disband_basket``), not its ``manager``: only the
        federation's calls are logged. Excludes ``checkpoint_path``.
    """

    basket: BasketConfig = field(default_factory=BasketConfig)
    layer1: Layer1Config = field(default_factory=Layer1Config)
    layer2: Layer2Config = field(default_factory=Layer2Config)
    staleness: str | StalenessFunction = "exponential"
    staleness_params: dict[str, Any] = field(default_factory=dict)
    max_staleness: int | None = None
    basket_timeout: float | None = None
    auto_aggregate: bool = True
    server_learning_rate: float = 1.0
    server_optimizer: str | ServerOptimizerConfig = "sgd"
    checkpoint_path: str | PathLike[str] | None = None
    checkpoint_every: int = 1
    store: str | PathLike[str] | None = None

    def __post_init__(self) -> None:
        for name, kind in (
            ("basket", BasketConfig),
            ("layer1", Layer1Config),
            ("layer2", Layer2Config),
        ):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a {kind.__name__}")
        if self.max_staleness is not None and (
            isinstance(self.max_staleness, bool)
            or not isinstance(self.max_staleness, int)
            or self.max_staleness < 0
        ):
            raise ValueError(
                f"max_staleness must be None or an int >= 0, got {self.max_staleness!r}"
            )
        if self.basket_timeout is not None and not (
            isinstance(self.basket_timeout, (int, float)) and self.basket_timeout > 0
        ):
            raise ValueError(f"basket_timeout must be None or > 0, got {self.basket_timeout!r}")
        if self.store is not None and self.checkpoint_path is not None:
            raise ValueError(
                "store and checkpoint_path exclude each other: the store already keeps every "
                "acknowledged change (checkpoint() still writes a file when asked)"
            )
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"checkpoint_every must be an int >= 1, got {every!r}")
        lr = self.server_learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
            raise ValueError(f"server_learning_rate must be a finite number, got {lr!r}")
        try:
            ServerOptimizer(self.server_optimizer, lr)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"server_optimizer: {exc}") from None
        need, size = self.layer1.min_inputs(), self.basket.max_clients
        if need > size:
            rule = AggregationMethod(self.layer1.aggregation_method).value
            raise ValueError(
                f"layer1: {rule} with {dict(self.layer1.method_params)} needs at least {need} "
                f"updates per basket, but a basket holds at most max_clients={size} clients "
                "(one update each per round): it could never aggregate"
            )
        weight = staleness_function(self.staleness, **self.staleness_params)
        _feasible.staleness_weights(weight, self.max_staleness)


class HierarchicalFederation:
    """A two-layer federation driven by clients' updates.

    Parameters
    ----------
    config
        A :class:`FederationConfig`.
    initial_model
        The global model's starting point (a 1-D or N-D float array); updates must have its
        shape and dtype. Without it, the first accepted update fixes them and the model starts
        at zero.
    clock
        Time source for staleness of baskets, timeouts and timestamps (default
        ``time.monotonic``); inject one for tests and simulations.
    generator
        Noise source of both layers (default: secure, keyed from the OS).
    seed
        Seed of the basket manager's random splits.

    Attributes
    ----------
    model, global_model
        The current global model (``global_model`` is an alias of ``model``): the initial
        model moved by ``server_learning_rate`` times every global aggregate so far; ``None``
        before an initial model or a first update fixes its shape.
    latest
        The last :class:`~hierfed.layers.GlobalMetaModel` (the global aggregate, its round,
        basket and client counts, privacy spent), ``None`` before the first global round.
    version
        Global rounds completed; clients pass it back as ``base_version``.

    Notes
    -----
    The defaults add noise at both layers, as the spec does: ``Layer1Config()`` clips every
    update to ``local_clip_norm=1`` and adds local Gaussian noise at epsilon 1 (delta 1e-5)
    per basket release, and ``Layer2Config()`` clips basket models to ``clip_norm=1`` and adds
    central Gaussian noise at epsilon 1 (delta 1e-5) per global round. A federation with noise
    on says so once per process on the ``hierfed.federation`` logger (level WARNING). Turn
    it off with ``Layer1Config(apply_local_noise=False)`` and
    ``Layer2Config(central_dp_epsilon=None)``.
    """

    def __init__(
        self,
        config: FederationConfig | None = None,
        *,
        initial_model: ArrayLike | None = None,
        clock: Callable[[], float] = time.monotonic,
        generator: NoiseGenerator | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = FederationConfig() if config is None else config
        if not isinstance(self.config, FederationConfig):
            raise TypeError(f"config must be a FederationConfig, got {type(config).__name__}")
        cfg = self.config
        self.clock = clock
        self._replay_at: float | None = None
        self.manager = BasketManager(cfg.basket, clock=self._time, seed=seed)
        gen = NoiseGenerator() if generator is None else generator
        self.layer1 = layers.Layer1Aggregator(cfg.layer1, generator=gen, clock=clock)
        self.layer2 = layers.Layer2Aggregator(cfg.layer2, generator=gen, clock=clock)
        self._weight = staleness_function(cfg.staleness, **cfg.staleness_params)
        self.optimizer = ServerOptimizer(cfg.server_optimizer, cfg.server_learning_rate)
        self._min_inputs = cfg.layer1.min_inputs()
        self._lock = threading.RLock()
        self.buffer = UpdateBuffer()
        self.version = 0
        self.model: np.ndarray[Any, Any] | None = None
        if initial_model is not None:
            self.model = _float_array(initial_model, "initial_model").copy()
        self.latest: GlobalMetaModel | None = None
        self._basket_models: dict[str, list[BasketModel]] = {}
        self._contributed: set[str] = set()
        self._stats: dict[str, Any] = _fresh_stats()
        self._log: UpdateLog | None = None
        self._events: list[Event] = []
        self._depth = 0
        self._snapshot_due = False
        announce(cfg.layer1, cfg.layer2)
        if cfg.store is not None:
            self._open_store(cfg.store)

    @property
    def global_model(self) -> np.ndarray[Any, Any] | None:
        """The current global model (an alias of ``model``)."""
        return self.model

    # ---- clients -------------------------------------------------------------------------

    def register_client(
        self, client_id: str, domain_id: str, features: ArrayLike | None = None
    ) -> str:
        """Add a client (spec/basket.md's assignment); returns its basket id."""
        with self._op():
            basket = self.manager.add_client(client_id, domain_id, features)
            if self._log is not None:
                f = None if features is None else np.asarray(features, np.float64).tolist()
                doc = {"client_id": client_id, "domain_id": domain_id, "features": f}
                self._emit("register", doc)
            return basket

    def remove_client(self, client_id: str) -> bool:
        """Remove a client; its buffered update is dropped. ``False`` for an unknown id."""
        with self._op():
            if self.buffer.drop_client(client_id) is not None:
                self._stats["dropped_on_leave"] += 1
            self._contributed.discard(client_id)
            removed = self.manager.remove_client(client_id)
            if removed:
                self._emit("remove", {"client_id": client_id})
            return removed

    def split_basket(self, basket_id: str) -> tuple[str, str]:
        """Split a basket (:meth:`BasketManager.split_basket`); logged in a ``store``, unlike
        a call on :attr:`manager` itself. Buffered updates follow at the next trigger."""
        with self._op():
            halves = self.manager.split_basket(basket_id)
            self._emit("split", {"basket_id": basket_id})
            return halves

    def disband_basket(self, basket_id: str) -> dict[str, str]:
        """Disband a basket (:meth:`BasketManager.disband_basket`); logged in a ``store``,
        unlike a call on :attr:`manager` itself."""
        with self._op():
            moved = self.manager.disband_basket(basket_id)
            self._emit("disband", {"basket_id": basket_id})
            return moved

    # ---- updates -------------------------------------------------------------------------

    def _reject(self, reason: str, exc: Exception) -> Exception:
        self._stats["rejected"][reason] = self._stats["rejected"].get(reason, 0) + 1
        return exc

    def _check_update(self, client_id: str, update: Any) -> np.ndarray[Any, Any]:
        if not isinstance(update, np.ndarray):
            raise self._reject(
                "type",
                TypeError(
                    f"update of {client_id!r} must be a numpy array, got {type(update).__name__}"
                ),
            )
        try:
            refuse_masked(update, f"update of {client_id!r}")
        except TypeError as exc:
            raise self._reject("type", exc) from None
        if update.dtype not in (np.float32, np.float64):
            raise self._reject(
                "dtype",
                TypeError(
                    f"update of {client_id!r} has dtype {update.dtype}; need float32 or float64"
                ),
            )
        if self.model is not None and (
            update.shape != self.model.shape or update.dtype != self.model.dtype
        ):
            raise self._reject(
                "shape",
                ValueError(
                    f"update of {client_id!r} has shape {update.shape} {update.dtype}; the model "
                    f"is {self.model.shape} {self.model.dtype}"
                ),
            )
        copy = np.array(update, copy=True, order="C")
        if not np.isfinite(copy).all():
            raise self._reject(
                "non_finite", ValueError(f"update of {client_id!r} holds NaN or infinity")
            )
        return copy

    def submit_update(
        self, client_id: str, update: np.ndarray[Any, Any], base_version: int
    ) -> bool:
        """Buffer ``client_id``'s ``update``, computed from global version ``base_version``.

        Returns ``True`` when buffered, ``False`` when dropped as staler than
        ``max_staleness``. With ``auto_aggregate`` the basket and global triggers run here.

        Raises
        ------
        ValueError, TypeError
            Unknown client, bad base version, wrong type/dtype/shape, non-finite values, or a
            second update from the client in this round (nothing is buffered).
        """
        with self._op():
            basket_id = self.manager.get_client_basket(client_id)
            if basket_id is None:
                raise self._reject("unknown_client", ValueError(f"unknown client_id {client_id!r}"))
            if isinstance(base_version, bool) or not isinstance(base_version, (int, np.integer)):
                raise self._reject("base_version", TypeError("base_version must be an int"))
            if not 0 <= base_version <= self.version:
                raise self._reject(
                    "base_version",
                    ValueError(f"base_version must be in [0, {self.version}], got {base_version}"),
                )
            if client_id in self.buffer or client_id in self._contributed:
                raise self._reject(
                    "duplicate",
                    ValueError(
                        f"client {client_id!r} already submitted an update in round {self.version}"
                    ),
                )
            own = self._check_update(client_id, update)
            staleness = self.version - int(base_version)
            if self.config.max_staleness is not None and staleness > self.config.max_staleness:
                self._stats["dropped_stale"] += 1
                self._emit("stale", {})
                return False
            pending = PendingUpdate(
                client_id, basket_id, own, int(base_version), staleness, self.clock()
            )
            path = self.config.checkpoint_path
            will_trigger = self.config.auto_aggregate and self._ready(basket_id, False, extra=1)
            rollback = (
                self._savepoint(
                    [basket_id],
                    [*(p.client_id for p in self.buffer.basket_updates(basket_id)), client_id],
                    manager=path is not None,
                )
                if will_trigger or path is not None
                else None
            )
            if self.model is None:
                self.model = np.zeros_like(own)
            self.buffer.add(pending)
            self._contributed.add(client_id)
            self._stats["accepted"] += 1
            self._emit(
                "update",
                {
                    "client_id": client_id,
                    "base_version": pending.base_version,
                    "received_at": pending.received_at,
                },
                own,
            )
            try:
                completed = will_trigger and self.aggregate_basket(basket_id) is not None
                completed = completed and self.aggregate_global() is not None
                self.manager.record_update(client_id)
                if path is not None and (
                    completed or self._stats["accepted"] % self.config.checkpoint_every == 0
                ):
                    self.checkpoint(path)
            except BaseException as exc:
                if rollback is not None:
                    rollback()
                else:
                    self.buffer.drop_client(client_id)
                    self._stats["accepted"] -= 1
                self._contributed.discard(client_id)  # the savepoint shares this set
                if isinstance(exc, TriggerError):
                    raise TriggerError(
                        f"update of {client_id!r} not accepted (nothing changed; it may be "
                        f"submitted again): {exc}",
                        exc.basket_id,
                    ) from exc
                raise
            return True

    # ---- durability ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _op(self) -> Iterator[None]:
        """Hold the lock for one change; the outermost change queues its events in the
        store and, after the lock is released, returns only once they are committed (and
        writes the snapshot of a round it completed)."""
        snapshot = None
        with self._lock:
            self._depth += 1
            try:
                yield
            except BaseException:
                if self._depth == 1:
                    self._events, self._snapshot_due = [], False
                raise
            finally:
                self._depth -= 1
            if self._depth or self._log is None:
                return
            seq = self._log.append(self._events)
            self._events = []
            if self._snapshot_due:
                snapshot, self._snapshot_due = self._state(), False
        self._log.sync(seq)
        if snapshot is not None:
            self._log.snapshot(seq, *snapshot)

    def _emit(self, kind: str, doc: dict[str, Any], array: Any = None) -> None:
        if self._log is not None:
            self._events.append((kind, {**doc, "at": self._time()}, array))

    def _time(self) -> float:
        """The clock, or the time of the event being replayed (the basket manager's)."""
        return self.clock() if self._replay_at is None else self._replay_at

    def _open_store(self, path: str | PathLike[str]) -> None:
        """Resume from the store at ``path``: its snapshot, then its events in order."""
        log = UpdateLog(path)
        try:
            snap = log.read_snapshot()
            after = 0
            if snap is not None:
                after, state, arrays = snap
                self._load(state, arrays)
            for seq, kind, doc, array in log.events(after):
                try:
                    self._replay_at = float(doc["at"])
                    self._apply(kind, doc, array)
                except (ValueError, TypeError, KeyError) as exc:
                    raise ValueError(f"update log {os.fspath(path)!r}, event {seq}: {exc}") from exc
                finally:
                    self._replay_at = None
        except BaseException:
            log.close()
            raise
        self._log = log
        if snap is None:  # the manager's seed and the initial model, before any event
            self._snapshot_due = True
            with self._op():
                pass

    def _apply(self, kind: str, doc: dict[str, Any], array: Any) -> None:
        """Redo one logged change (no trigger runs: their results are events too)."""
        if kind == "register":
            self.register_client(doc["client_id"], doc["domain_id"], doc["features"])
        elif kind == "remove":
            self.remove_client(doc["client_id"])
        elif kind == "update":
            cid, base = doc["client_id"], doc["base_version"]
            basket_id = self.manager.get_client_basket(cid)
            if basket_id is None or cid in self._contributed or not 0 <= base <= self.version:
                raise ValueError(f"update of {cid!r} does not follow from the state")
            own = self._check_update(cid, array)
            if self.model is None:
                self.model = np.zeros_like(own)
            at = float(doc["received_at"])
            self.buffer.add(PendingUpdate(cid, basket_id, own, base, self.version - base, at))
            self._contributed.add(cid)
            self._stats["accepted"] += 1
            self.manager.record_update(cid)
        elif kind == "stale":
            self._stats["dropped_stale"] += 1
        elif kind == "split":
            self.split_basket(doc["basket_id"])
        elif kind == "disband":
            self.disband_basket(doc["basket_id"])
        elif kind == "rehome":
            self._rehome()
        elif kind == "basket":
            model = BasketModel(aggregate=self._check_update("basket model", array), **doc["model"])
            buffered = [p.client_id for p in self.buffer.basket_updates(model.basket_id)]
            if buffered != doc["clients"]:
                want = doc["clients"]
                raise ValueError(f"basket {model.basket_id!r} holds {buffered}, not {want}")
            used = doc.get("used", buffered)
            clip = (doc["stats"].get("dp_fedavg") or {}).get("next_clip_norm")
            self.layer1.record_release(model.basket_id, model.aggregate, used, clip)
            self._commit_basket(model, doc["stats"], used)
        elif kind == "global":
            aggregate = self._check_update("global model", array)
            fields = dict(doc["model"], privacy_spent=tuple(doc["model"]["privacy_spent"]))
            self._fresh_basket_models()
            self.layer2.record_round((doc["stats"].get("dp_fedavg") or {}).get("next_clip_norm"))
            self.layer2.reliability.load(doc["stats"].get("reliability", {}))
            self._commit_global(GlobalMetaModel(aggregate=aggregate, **fields), doc["stats"])
        elif kind == "discard":
            self.discard_buffered()
        else:
            raise ValueError(f"unknown event kind {kind!r}")

    # ---- triggers ------------------------------------------------------------------------

    def _rehome(self) -> None:
        """File buffered updates under their clients' current baskets (after splits)."""
        moved = False
        for p in self.buffer.all():
            now = self.manager.get_client_basket(p.client_id)
            if now is not None and now != p.basket_id:
                self.buffer.move(p.client_id, now)
                moved = True
        if moved:
            self._emit("rehome", {})

    def _savepoint(
        self,
        baskets: list[str] | None = None,
        clients: list[str] | None = None,
        *,
        manager: bool = False,
    ) -> Callable[[], None]:
        """A function that puts the federation back as it is now: buffer, basket models,
        model, version, counters, both layers' accountants (Layer 1's of ``baskets`` and
        ``clients`` only, when given), the basket manager when ``manager`` (a failed
        checkpoint write needs it). Clients added to ``_contributed`` meanwhile are the
        caller's to discard."""
        buffer, contributed = self.buffer.savepoint(baskets), self._contributed
        models = {b: list(ms) for b, ms in self._basket_models.items()}
        version, model, latest = self.version, self.model, self.latest
        opt = self.optimizer
        moments = (opt.steps, opt.m, opt.v)
        stats = _copied(self._stats)
        layer1, layer2 = self.layer1.savepoint(baskets, clients), self.layer2.savepoint()
        basket_state = self.manager.state_dict() if manager else None

        def rollback() -> None:
            buffer()
            self._contributed, self._basket_models = contributed, models
            self.version, self.model, self.latest, self._stats = version, model, latest, stats
            opt.assign(*moments)
            layer1()
            layer2()
            if basket_state is not None:
                self.manager = BasketManager.from_state(basket_state, clock=self._time)

        return rollback

    def _ready(self, basket_id: str, timeouts: bool, extra: int = 0) -> bool:
        """Whether the basket's trigger fires (with ``extra`` more updates buffered)."""
        n = self.buffer.count(basket_id) + extra
        if n < self._min_inputs:
            return False
        if n >= self.config.layer1.min_updates:
            return True
        timeout = self.config.basket_timeout
        return (
            timeouts
            and timeout is not None
            and self.clock() - self.buffer.oldest(basket_id) >= timeout
        )

    def poll(self) -> GlobalMetaModel | None:
        """Run both triggers, timeouts included; the global model if a round completed."""
        with self._op():
            rollback = self._savepoint()
            try:
                self._rehome()
                for b in self.buffer.baskets():
                    if self._ready(b, timeouts=True):
                        self.aggregate_basket(b)
                return self.aggregate_global()
            except BaseException:
                rollback()
                raise

    def aggregate_basket(self, basket_id: str) -> BasketModel | None:
        """Layer 1 over the basket's buffered updates (``None`` when it has none, or fewer
        than its rule needs, in which case they stay buffered).

        Each update's weight is its staleness weight times its client's ``trust_score``
        (:meth:`~hierfed.basket.BasketManager.set_trust_score`); updates of clients with
        trust 0 are left out of the rule altogether (rules without weights, such as Krum,
        see the others unweighted) and leave the buffer with the rest (counted as
        ``dropped_unaggregated`` in :meth:`get_stats`).

        The updates leave the buffer only when the aggregation succeeds; otherwise
        :class:`TriggerError` names the basket and why, and nothing changed.
        """
        with self._op():
            if self.buffer.count(basket_id) < max(1, self._min_inputs):
                return None
            pending = [p for p in self.buffer.basket_updates(basket_id) if self._trust(p) > 0]
            if len(pending) < max(1, self._min_inputs):
                return None
            weights = [self._weight(p.staleness) * self._trust(p) for p in pending]
            known = self.manager.get_basket(basket_id) is not None
            members = len(self.manager.get_basket_clients(basket_id)) if known else 0
            try:
                if not any(w > 0 for w in weights):
                    raise ValueError(f"every staleness weight is zero ({weights})")
                model = self.layer1.aggregate(
                    [p.update for p in pending],
                    weights,
                    basket_id=basket_id,
                    round_id=self.version,
                    expected_contributors=max(members, 1),
                    client_ids=[p.client_id for p in pending],
                )
            except (ValueError, TypeError, ArithmeticError) as exc:
                raise TriggerError(
                    f"basket {basket_id!r}: Layer 1 failed over its {len(pending)} buffered "
                    f"updates, which stay buffered: {exc}",
                    basket_id,
                ) from exc
            if model is None:
                return None
            used = [p.client_id for p in pending]
            self._commit_basket(model, _plain(self.layer1.last_stats), used)
            return model

    def _trust(self, p: PendingUpdate) -> float:
        info = self.manager.get_client(p.client_id)
        return 1.0 if info is None else info.trust_score

    def _commit_basket(self, model: BasketModel, stats: Any, used: list[str]) -> None:
        """Store a basket model made from its basket's buffered updates (``used``: the
        clients whose updates it took; the others, of trust 0, leave the buffer too)."""
        pending = self.buffer.pop_basket_updates(model.basket_id)
        self._basket_models.setdefault(model.basket_id, []).append(model)
        if self.manager.get_basket(model.basket_id) is not None:
            self.manager.touch_basket(model.basket_id)
        self._stats["basket_aggregations"] += 1
        self._stats["aggregated_updates"] += model.n_contributors
        self._stats["dropped_unaggregated"] += len(pending) - len(used)
        self._stats["last_layer1"] = stats
        if self._log is not None:
            clients = [p.client_id for p in pending]
            doc = {"model": _meta(model), "clients": clients, "used": used, "stats": stats}
            self._emit("basket", doc, model.aggregate)

    def aggregate_global(self, *, force: bool = False) -> GlobalMetaModel | None:
        """Layer 2 over the stored basket models when ``min_baskets`` baskets have one (any
        number >= 1 with ``force``); returns the new global model or ``None``.

        The basket models are used up only when the round succeeds; otherwise
        :class:`TriggerError` says why, and nothing changed.
        """
        with self._op():
            need = 1 if force else self.config.layer2.min_baskets
            models = self._fresh_basket_models()
            if len({m.basket_id for m in models}) < need or not models:
                return None
            rollback = self.layer2.savepoint()
            try:
                global_model = self.layer2.aggregate(models)
                assert self.model is not None
                moved = self.optimizer.step(self.model, global_model.aggregate)
            except (ValueError, TypeError, ArithmeticError) as exc:
                rollback()
                ids = sorted({m.basket_id for m in models})
                raise TriggerError(
                    f"global round {self.version}: Layer 2 failed over {len(models)} basket "
                    f"models of {ids}, which stay stored: {exc}"
                ) from exc
            self._commit_global(global_model, _plain(self.layer2.last_stats), moved)
            return global_model

    def _commit_global(self, global_model: GlobalMetaModel, stats: Any, moved: Any = None) -> None:
        """Apply a global round made from every stored basket model (``moved``: the model
        after the optimizer's step, when already taken)."""
        assert self.model is not None
        if moved is None:
            moved = self.optimizer.step(self.model, global_model.aggregate)
        self._basket_models = {}
        self.model = moved
        self.version += 1
        self._contributed = set()
        self.latest = global_model
        self._stats["global_rounds"] += 1
        self._stats["last_layer2"] = stats
        if self._log is not None:
            doc = {"model": _meta(global_model), "stats": stats}
            self._emit("global", doc, global_model.aggregate)
            self._snapshot_due = True

    def _fresh_basket_models(self) -> list[BasketModel]:
        """Stored basket models, with confidence scaled by their staleness; too stale ones
        dropped."""
        out = []
        limit = self.config.max_staleness
        for ms in self._basket_models.values():
            for m in ms:
                s = self.version - m.round_id
                if limit is not None and s > limit:
                    self._stats["dropped_stale_baskets"] += 1
                    continue
                out.append(dataclasses.replace(m, confidence=m.confidence * self._weight(s)))
        if limit is not None:
            self._basket_models = {
                b: [m for m in ms if self.version - m.round_id <= limit]
                for b, ms in self._basket_models.items()
            }
        return out

    def flush(self) -> GlobalMetaModel | None:
        """Aggregate every basket with buffered updates, then a global round over whatever
        basket models exist (even fewer than ``min_baskets``)."""
        with self._op():
            rollback = self._savepoint()
            try:
                self._rehome()
                for b in self.buffer.baskets():
                    self.aggregate_basket(b)
                return self.aggregate_global(force=True)
            except BaseException:
                rollback()
                raise

    def discard_buffered(self) -> int:
        """Drop every buffered update and let its client submit again in this version.

        For synchronous rounds (the Flower strategy): updates a round could not use (their
        basket held fewer than its rule needs) do not linger into the next round. Counted as
        ``dropped_unaggregated`` in :meth:`get_stats`; returns how many were dropped.
        """
        with self._op():
            pending = self.buffer.all()
            for p in pending:
                self.buffer.drop_client(p.client_id)
                self._contributed.discard(p.client_id)
            key = "dropped_unaggregated"
            self._stats[key] = self._stats.get(key, 0) + len(pending)
            self._emit("discard", {})
            return len(pending)

    # ---- reporting -----------------------------------------------------------------------

    def privacy_spent(self) -> tuple[float, float]:
        """Central (epsilon, delta) over all global rounds; the unit it protects is one
        basket (Layer 2's sensitivity is that of replacing one basket model, or under
        ``Layer2Config.dp_fedavg`` adding or removing one). Per client:
        :meth:`client_privacy_spent`; per record: DP-SGD inside the clients
        (:mod:`hierfed.simulation.dpsgd`). :meth:`get_stats` names both units
        (``privacy_unit``, ``client_privacy_unit``)."""
        with self._lock:
            return self.layer2.privacy_spent()

    def client_privacy_spent(self, client_id: str) -> tuple[float, float]:
        """Local (epsilon, delta) spent on ``client_id`` (the unit: one client's update in
        its basket, Layer 1's sensitivity; under ``Layer1Config.dp_fedavg`` the whole
        client, every round it was a candidate of): over every noised basket release its
        updates took part in, across splits, disbands, reassignments, leaving and restores
        (the account follows the client id, not the basket)."""
        with self._lock:
            return self.layer1.client_privacy_spent(client_id)

    def max_client_privacy_spent(self) -> tuple[float, float]:
        """The largest local (epsilon, delta) spent on any one client."""
        with self._lock:
            return self.layer1.max_client_privacy_spent()

    def get_stats(self) -> dict[str, Any]:
        """Counters of the federation, the manager's stats and the last layers' stats."""
        with self._lock:
            stats = _copied(self._stats)
            stats.update(
                version=self.version,
                buffered_updates=len(self.buffer),
                pending_basket_models=sum(len(v) for v in self._basket_models.values()),
                privacy_spent=self.layer2.privacy_spent(),
                privacy_unit=self.layer2.unit,
                max_client_privacy_spent=self.layer1.max_client_privacy_spent(),
                client_privacy_unit=self.layer1.unit,
                baskets=self.manager.get_stats(),
            )
            return stats

    # ---- checkpoints ---------------------------------------------------------------------

    def checkpoint(self, path: str | PathLike[str]) -> None:
        """Write the whole state atomically to ``path`` (one ``.npz`` with a JSON document).

        Every update acknowledged before the call is in the file once it returns; a crash
        while writing leaves the previous checkpoint intact.
        """
        with self._lock:
            state, arrays = self._state()
            _checkpoint.write(path, state, arrays)

    def _state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The whole state as a JSON document and arrays (copies of what may change)."""
        with self._lock:
            arrays: dict[str, Any] = {}
            if self.model is not None:
                arrays["model"] = self.model
            pending = []
            for i, p in enumerate(self.buffer.all()):
                arrays[f"pending_{i}"] = p.update
                pending.append(
                    {
                        "client_id": p.client_id,
                        "basket_id": p.basket_id,
                        "base_version": p.base_version,
                        "staleness": p.staleness,
                        "received_at": p.received_at,
                    }
                )
            models = []
            for i, m in enumerate(m for ms in self._basket_models.values() for m in ms):
                arrays[f"basket_model_{i}"] = m.aggregate
                models.append(_meta(m))
            optimizer, moments = self.optimizer.state()
            dp = self.layer2.dp_fedavg
            arrays.update({f"optimizer_{k}": a for k, a in moments.items()})
            centers = {}
            for i, (b, center) in enumerate(self.layer1._previous.items()):
                centers[b] = f"center_{i}"
                arrays[f"center_{i}"] = center
            state = {
                "format": _fed_state.FORMAT,
                "version": self.version,
                "has_model": self.model is not None,
                "pending": pending,
                "basket_models": models,
                "contributed": sorted(self._contributed),
                "stats": _copied(self._stats),
                "manager": self.manager.state_dict(),
                "layer2_rounds": self.layer2.rounds,
                "layer2_history": self._layer2_history(),
                "layer1_history": {b: _history(a) for b, a in self.layer1._accountants.items()},
                "client_releases": dict(self.layer1._client_releases),
                "centers": centers,
                "optimizer": optimizer,
                "layer2_reliability": dict(self.layer2.reliability.scores),
                "clip_norms": {
                    "layer1": self.layer1.clip_norms,
                    "layer2": None if dp is None else dp.clip_norm,
                },
            }
            return state, arrays

    def _layer2_history(self) -> list[list[float]]:
        """Layer 2's accountant history: its central noise, or one entry per DP-FedAvg round."""
        dp = self.layer2.dp_fedavg
        if dp is not None:
            return [[dp.config.noise_multiplier, dp.config.sample_rate, 1]] * dp.rounds
        mechanism = self.layer2.mechanism
        return _history(None if mechanism is None else mechanism.accountant)

    def restore(self, path: str | PathLike[str]) -> None:
        """Replace this federation's state with the checkpoint at ``path`` (written by
        :meth:`checkpoint` under the same configuration).

        All or nothing: the file's checksum and every field (types, shapes, dtypes,
        finiteness, known ids, versions, accountant histories of this configuration's noise,
        counters that add up) are checked before anything changes; a bad file raises
        ``ValueError`` naming what is wrong and leaves the federation as it was. Temporary
        files of writers killed while checkpointing to ``path`` are removed.
        """
        state, arrays = _checkpoint.read(path)
        with self._op():
            self._load(state, arrays)
            self._snapshot_due = True  # the store, if any, now starts from this state

    def _load(self, state: dict[str, Any], arrays: dict[str, Any]) -> None:
        """Check the state of a checkpoint, then assign it all at once."""
        cfg = self.config
        with self._lock:
            mechanism = self.layer2.mechanism
            expected = _fed_state.Expected(
                basket=cfg.basket,
                model=self.model,
                local_noise=cfg.layer1.release_noise,
                central_noise=self._central_noise(),
                optimizer=self.optimizer,
                layer1_adaptive=cfg.layer1.dp_fedavg is not None,
                layer2_adaptive=cfg.layer2.dp_fedavg is not None,
            )
            new = _fed_state.load(state, arrays, expected, self._time)
            accountants = {b: _replay(h) for b, h in new.layer1_history.items()}
            central = _replay(new.layer2_history)
            self.manager = new.manager
            self.version, self.model, self.buffer = new.version, new.model, new.buffer
            self._basket_models, self._contributed = new.basket_models, new.contributed
            self._stats = new.stats
            self.layer2.rounds = new.layer2_rounds
            if mechanism is not None:
                mechanism.accountant, mechanism.rounds = central, len(new.layer2_history)
            self.layer1._accountants, self.layer1._previous = accountants, new.centers
            self.layer1._client_releases = new.client_releases
            self.optimizer.assign(*new.optimizer)
            self.layer2.reliability.scores = new.reliability
            self.layer1._dp_fedavg = {}
            for b, clip in new.layer1_clip_norms.items():
                rounds = len(new.layer1_history.get(b, []))
                dp1 = self.layer1.dp_fedavg(b)
                assert dp1 is not None
                dp1.load_state({"clip_norm": clip, "rounds": rounds})
            dp2 = self.layer2.dp_fedavg
            if dp2 is not None and new.layer2_clip_norm is not None:
                rounds2 = len(new.layer2_history)
                dp2.load_state({"clip_norm": new.layer2_clip_norm, "rounds": rounds2})

    def _central_noise(self) -> tuple[float, float] | None:
        """(noise multiplier, rate) of Layer 2's rounds, ``None`` when they add no noise."""
        dp = self.config.layer2.dp_fedavg
        if dp is not None:
            return float(dp.noise_multiplier), float(dp.sample_rate)
        mechanism = self.layer2.mechanism
        return None if mechanism is None else (mechanism.noise_multiplier, mechanism.sample_rate)


def _history(acc: Any) -> list[list[float]]:
    if acc is None:
        return []
    if not isinstance(acc, RDPAccountant):
        raise TypeError("checkpoints keep RDPAccountant histories only")
    return [[z, q, n] for z, q, n in acc.history]


def _replay(history: list[tuple[float, float, int]]) -> RDPAccountant:
    acc = RDPAccountant()
    for z, q, n in history:
        acc.step(z, q, int(n))
    return acc


def _copied(stats: dict[str, Any]) -> dict[str, Any]:
    """A copy of the counters that later changes do not reach (nested dicts are replaced
    whole, except ``rejected``'s counts: copied)."""
    return {k: dict(v) if isinstance(v, dict) else v for k, v in stats.items()}


def _meta(model: BasketModel | GlobalMetaModel) -> dict[str, Any]:
    """A basket or global model's fields but its aggregate."""
    fields = dataclasses.fields(model)
    return {f.name: getattr(model, f.name) for f in fields if f.name != "aggregate"}


def _plain(stats: dict[str, Any]) -> Any:
    """``stats`` as JSON gives it back (tuples as lists), as a checkpoint restores it."""
    return json.loads(json.dumps(stats))


def _fresh_stats() -> dict[str, Any]:
    return {
        "accepted": 0,
        "rejected": {},
        "dropped_stale": 0,
        "dropped_stale_baskets": 0,
        "dropped_on_leave": 0,
        "dropped_unaggregated": 0,
        "basket_aggregations": 0,
        "aggregated_updates": 0,
        "global_rounds": 0,
    }


def _float_array(x: ArrayLike, name: str) -> np.ndarray[Any, Any]:
    refuse_masked(x, name)
    a = np.asarray(x)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinity")
    return a
