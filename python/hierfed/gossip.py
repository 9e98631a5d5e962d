"""Gossip inside a basket: uniform peer sampling and push-sum averaging (Kempe et al. 2003).

Each member ``i`` holds a value vector ``x_i`` and a weight ``w_i`` (initially its value and
1). In a round every member keeps half of ``(x_i, w_i)`` and pushes the other half to one
member of its basket drawn uniformly among the others; its estimate of the basket mean is
``x_i / w_i``. The totals ``sum x_i`` and ``sum w_i`` never change (mass conservation), so the
mean ``sum x / sum w`` is invariant, and the estimates reach it to relative error ``eps`` in
``O(log n + log 1/eps)`` rounds with high probability (Kempe, Dobra and Gehrke, FOCS 2003,
Theorem 3.1).

Convergence is detected from the members' estimates alone, not from the true mean: the mean
``sum_i w_i (x_i / w_i) / sum_i w_i`` is a positive-weighted average of the estimates, so it
lies between their smallest and largest value in every coordinate. Once that per-coordinate
spread is at most ``tol * scale`` (``scale``: the largest absolute initial value), every
estimate is provably within ``tol * scale`` of the mean.

Membership is read from the :class:`~hierfed.basket.BasketManager` before every round, as
``spec/basket.md`` asks: a member that left is dropped with its mass (its pending messages are
lost and the basket continues; the estimates then converge to the average of the mass that
remains); a member that joined starts in the next round, once it is given a value.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .basket import BasketManager

__all__ = ["GossipProtocol", "PushSumState"]

DEFAULT_MAX_ROUNDS = 1000


@dataclass(frozen=True)
class PushSumState:
    """The push-sum state of one basket between rounds (treat the arrays as read-only).

    Attributes
    ----------
    basket_id
        The basket gossiping.
    members
        Member ids, row ``i`` of ``x`` and ``w`` belonging to ``members[i]``.
    x
        ``(m, d)`` float64 value mass per member (values flattened to ``d`` entries).
    w
        ``(m,)`` float64 weight per member.
    shape
        The shape of one value, to which estimates are reshaped.
    scale
        The largest absolute value given so far: convergence is relative to it.
    rounds
        Rounds run on this state.
    """

    basket_id: str
    members: tuple[str, ...]
    x: NDArray[np.float64]
    w: NDArray[np.float64]
    shape: tuple[int, ...]
    scale: float
    rounds: int = 0

    def estimates(self) -> dict[str, NDArray[np.float64]]:
        """Each member's estimate ``x_i / w_i`` of the mean, in the values' shape."""
        est = self.x / self.w[:, None]
        return {m: est[i].reshape(self.shape) for i, m in enumerate(self.members)}

    def spread(self) -> float:
        """Largest per-coordinate range of the estimates (0.0 for fewer than two members)."""
        if len(self.members) < 2 or self.x.shape[1] == 0:
            return 0.0
        est = self.x / self.w[:, None]
        return float(np.max(est.max(axis=0) - est.min(axis=0)))

    def converged(self, tol: float) -> bool:
        """Whether every estimate is certified within ``tol * scale`` of the mean."""
        return self.spread() <= tol * self.scale

    def mass(self) -> tuple[NDArray[np.float64], float]:
        """The conserved totals ``(sum_i x_i, sum_i w_i)``."""
        return self.x.sum(axis=0), float(self.w.sum())


def _as_values(values: Mapping[str, ArrayLike], name: str) -> dict[str, NDArray[np.float64]]:
    if not isinstance(values, Mapping):
        raise TypeError(f"{name} must be a mapping of client id to array")
    out = {}
    for cid, value in values.items():
        arr = np.asarray(value)
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"{name}[{cid!r}] must be numeric, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}[{cid!r}] holds NaN or infinity")
        out[cid] = arr
    return out


def _ids(ids: Any) -> str:
    """A short, sorted listing of ids for error messages."""
    shown = sorted(ids)
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    return ", ".join(repr(i) for i in shown[:5]) + more


class GossipProtocol:
    """Push-sum averaging within the baskets of a :class:`~hierfed.basket.BasketManager`.

    Parameters
    ----------
    manager
        Source of basket membership; each round queries it, and touches the basket.
    seed
        Seeds peer sampling; ``None`` draws fresh entropy.

    Attributes
    ----------
    last_rounds
        Rounds run by the last :meth:`average`.
    stats
        ``{"runs", "rounds", "last_rounds", "last_spread"}`` over this protocol's life.
    """

    def __init__(self, manager: BasketManager, *, seed: int | None = None) -> None:
        if not isinstance(manager, BasketManager):
            raise TypeError(f"manager must be a BasketManager, got {type(manager).__name__}")
        self.manager = manager
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # the generator is not thread-safe
        self.last_rounds = 0
        self.stats: dict[str, Any] = {"runs": 0, "rounds": 0, "last_rounds": 0, "last_spread": 0.0}

    def sample_peer(self, basket_id: str, client_id: str) -> str | None:
        """A member of the basket other than ``client_id``, uniformly; ``None`` when alone."""
        members = sorted(self.manager.get_basket_clients(basket_id))
        if client_id not in members:
            raise ValueError(f"client_id {client_id!r} is not in basket {basket_id!r}")
        others = [m for m in members if m != client_id]
        if not others:
            return None
        with self._lock:
            return others[int(self._rng.integers(len(others)))]

    def start(self, basket_id: str, values: Mapping[str, ArrayLike]) -> PushSumState:
        """The initial state: ``values`` must hold exactly the basket's current members.

        Every value must have the same shape; ``x_i`` is the value, ``w_i`` is 1.
        """
        members = self.manager.get_basket_clients(basket_id)
        vals = _as_values(values, "values")
        missing, extra = members - vals.keys(), vals.keys() - members
        if missing:
            raise ValueError(f"values lacks members of basket {basket_id!r}: {_ids(missing)}")
        if extra:
            raise ValueError(f"values has ids not in basket {basket_id!r}: {_ids(extra)}")
        order = tuple(sorted(members))
        shapes = {vals[m].shape for m in order}
        if len(shapes) > 1:
            raise ValueError(f"values must all have one shape, got {sorted(shapes)}")
        shape = shapes.pop() if shapes else ()
        size = int(np.prod(shape))
        x = np.array([vals[m].reshape(size) for m in order], dtype=np.float64)
        x = x.reshape(len(order), size)
        scale = float(np.abs(x).max()) if x.size else 0.0
        self.manager.touch_basket(basket_id)
        return PushSumState(basket_id, order, x, np.ones(len(order)), shape, scale)

    def step(
        self, state: PushSumState, joined: Mapping[str, ArrayLike] | None = None
    ) -> PushSumState:
        """One round on the basket's current membership; returns the new state.

        Members that left since ``state`` are dropped with their mass. Members that joined
        take part when ``joined`` gives their value (ids in ``joined`` must be current members
        not yet in the state); until then they are left out. A basket of one member is a
        no-op round.
        """
        current = self.manager.get_basket_clients(state.basket_id)
        new = _as_values(joined or {}, "joined")
        bad = new.keys() - current
        if bad:
            raise ValueError(f"joined has ids not in basket {state.basket_id!r}: {_ids(bad)}")
        again = new.keys() & set(state.members)
        if again:
            raise ValueError(f"joined has ids already gossiping: {_ids(again)}")
        for cid, value in new.items():
            if value.shape != state.shape:
                raise ValueError(f"joined[{cid!r}] has shape {value.shape}, expected {state.shape}")
        keep = [i for i, m in enumerate(state.members) if m in current]
        members = tuple(state.members[i] for i in keep) + tuple(sorted(new))
        size = state.x.shape[1]
        added = np.array([new[m].reshape(size) for m in sorted(new)], dtype=np.float64)
        x = np.concatenate([state.x[keep], added.reshape(len(new), size)])
        w = np.concatenate([state.w[keep], np.ones(len(new))])
        scale = max([state.scale] + [float(np.abs(v).max(initial=0.0)) for v in new.values()])
        with self._lock:
            x, w = self._push(x, w)
        self.manager.touch_basket(state.basket_id)
        return replace(state, members=members, x=x, w=w, scale=scale, rounds=state.rounds + 1)

    def _push(
        self, x: NDArray[np.float64], w: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """One vectorised push-sum round: keep half, send half to a uniform other member."""
        m = x.shape[0]
        if m < 2:
            return x, w
        target = self._rng.integers(0, m - 1, size=m)
        target += target >= np.arange(m)  # uniform over the others, never oneself
        half_x, half_w = x * 0.5, w * 0.5
        new_x, new_w = half_x.copy(), half_w.copy()
        np.add.at(new_x, target, half_x)
        np.add.at(new_w, target, half_w)
        return new_x, new_w

    def average(
        self,
        basket_id: str,
        values: Mapping[str, ArrayLike],
        *,
        rounds: int | None = None,
        tol: float = 1e-6,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> dict[str, NDArray[np.float64]]:
        """Push-sum the members' values to their mean; each member's estimate (float64).

        Parameters
        ----------
        basket_id
            The basket; ``values`` must hold exactly its current members, of one shape.
        values
            Each member's value.
        rounds
            Run exactly this many rounds; ``None`` runs until every estimate is certified
            within ``tol * scale`` of the mean (see the module docstring).
        tol
            Relative tolerance, ``> 0``.
        max_rounds
            Without ``rounds``, give up with ``RuntimeError`` after this many rounds.

        Returns
        -------
        Estimates of the members still in the basket at the end (a member leaving during the
        run takes its mass with it; one joining is left out).
        """
        if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int)):
            raise TypeError(f"rounds must be an int or None, got {type(rounds).__name__}")
        if rounds is not None and rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)):
            raise TypeError(f"tol must be a number, got {type(tol).__name__}")
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
        state = self.start(basket_id, values)
        while (state.rounds < rounds) if rounds is not None else not state.converged(tol):
            if rounds is None and state.rounds >= max_rounds:
                raise RuntimeError(
                    f"push-sum in basket {basket_id!r} did not reach tol={tol} in "
                    f"{max_rounds} rounds (spread {state.spread():.3g}, scale {state.scale:.3g})"
                )
            state = self.step(state)
        self.last_rounds = state.rounds
        self.stats["runs"] += 1
        self.stats["rounds"] += state.rounds
        self.stats["last_rounds"] = state.rounds
        self.stats["last_spread"] = state.spread()
        return {m: v.copy() for m, v in state.estimates().items()}
