"""The in-process driver :func:`secure_sum` and the :class:`SecureAggregator` facade."""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..privacy.rng import NoiseGenerator
from . import quantize
from .client import Client
from .graph import GraphParameters, choose_parameters
from .identity import Identity, IdentityRegistry
from .server import Server
from .session import SecurityPolicy, SessionPlan

__all__ = ["STAGES", "SecAggConfig", "SecAggResult", "SecureAggregator", "secure_sum"]

STAGES = ("share_keys", "masked_input", "consistency", "unmask")


@dataclass(frozen=True)
class SecAggConfig:
    """Settings of a secure-aggregation round.

    Parameters
    ----------
    clip
        Float inputs are clipped to ``[-clip, clip]`` per coordinate before encoding.
    bits
        Bits per encoded value; ``None`` uses the most that ``n`` clients allow
        (``n 2^bits < 2^32``). Ignored for uint32 inputs, which are summed exactly.
    dropout_rate
        Expected fraction of clients that drop (sets ``k`` and ``t``).
    collusion_fraction
        Fraction of clients that may collude with the server (sets ``k`` and ``t``).
    complete_graph
        Use the complete graph (original SecAgg) instead of a sparse Harary graph.
    max_weight
        Largest weight of a weighted sum: clients send ``w x`` (clipped to
        ``[-clip max_weight, clip max_weight]``) and ``w`` (in ``[0, max_weight]``).
    """

    clip: float = 1.0
    bits: int | None = None
    dropout_rate: float = 0.1
    collusion_fraction: float = 0.05
    complete_graph: bool = False
    max_weight: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)):
            raise TypeError(f"clip must be a number, got {type(self.clip).__name__}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be finite and > 0, got {self.clip}")
        if self.bits is not None and (
            isinstance(self.bits, bool) or not isinstance(self.bits, int)
        ):
            raise TypeError(f"bits must be an int or None, got {type(self.bits).__name__}")
        if self.bits is not None and not 1 <= self.bits <= 31:
            raise ValueError(f"bits must be in [1, 31], got {self.bits}")
        for name in ("dropout_rate", "collusion_fraction", "max_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"{name} must be a finite number, got {v!r}")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if not 0 <= self.collusion_fraction < 0.5:
            raise ValueError(
                f"collusion_fraction must be in [0, 0.5), got {self.collusion_fraction}"
            )
        if not self.max_weight > 0:
            raise ValueError(f"max_weight must be > 0, got {self.max_weight}")
        if not isinstance(self.complete_graph, bool):
            raise TypeError("complete_graph must be a bool")
        quantize.check_clip(self.clip, self.max_weight)  # the encodable range (quantize.py)


@dataclass(frozen=True)
class SecAggResult:
    """The outcome of :func:`secure_sum`.

    ``total`` is the sum of the survivors' inputs: uint32 mod 2^32 (exact) for uint32 inputs,
    else floats of the inputs' dtype (clipped, stochastically rounded: unbiased); with weights,
    the weighted sum ``sum w x``, and ``total_weight`` is ``sum w`` over the survivors.
    """

    total: NDArray[Any]
    survivors: tuple[Hashable, ...]
    dropped: tuple[Hashable, ...]
    params: GraphParameters
    bits: int | None = field(default=None)
    total_weight: float | None = field(default=None)
    rejected: dict[Hashable, str] = field(default_factory=dict)
    """Client id -> why one of its messages was refused (it counts as dropped there)."""
    excluded: dict[Hashable, str] = field(default_factory=dict)
    """Client id -> why its masked input was left out of the survivor set."""
    corrupted_shares: tuple[tuple[Hashable, Hashable], ...] = ()
    """(holder, owner) of every revealed share found corrupted and corrected."""


def _check_inputs(inputs: Any) -> tuple[list[Hashable], list[NDArray[Any]], np.dtype[Any]]:
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping of id -> array, got {type(inputs).__name__}")
    if len(inputs) < 2:
        raise ValueError(f"inputs must hold at least 2 clients, got {len(inputs)}")
    if len(inputs) >= 1 << 31:
        raise ValueError("inputs must hold fewer than 2^31 clients")
    ids = list(inputs)
    arrays = []
    first: NDArray[Any] | None = None
    for cid in ids:
        a = inputs[cid]
        if not isinstance(a, np.ndarray):
            raise TypeError(f"inputs[{cid!r}] must be a numpy array, got {type(a).__name__}")
        if a.dtype != np.uint32 and a.dtype not in (np.float32, np.float64):
            raise TypeError(f"inputs[{cid!r}] has dtype {a.dtype}: use uint32, float32, float64")
        if first is None:
            first = a
        elif a.shape != first.shape or a.dtype != first.dtype:
            raise ValueError(
                f"inputs[{cid!r}] has shape {a.shape} and dtype {a.dtype}; the first input "
                f"has {first.shape} and {first.dtype}: all must match"
            )
        if a.dtype != np.uint32 and not np.isfinite(a).all():
            raise ValueError(f"inputs[{cid!r}] holds NaN or infinity")
        arrays.append(a)
    if arrays[0].size >= 1 << 32:
        raise ValueError("inputs must have fewer than 2^32 values")
    return ids, arrays, arrays[0].dtype


def _check_dropouts(dropouts: Any, ids: list[Hashable]) -> dict[Hashable, str]:
    if dropouts is None:
        return {}
    if not isinstance(dropouts, Mapping):
        raise TypeError(f"dropouts must be a mapping of id -> stage, got {type(dropouts).__name__}")
    known = set(ids)
    for cid, stage in dropouts.items():
        if cid not in known:
            raise ValueError(f"dropouts names {cid!r}, which is not in inputs")
        if stage not in STAGES:
            raise ValueError(f"dropouts[{cid!r}] must be a stage, one of {STAGES}, got {stage!r}")
    return dict(dropouts)


def _check_weights(weights: Any, ids: list[Hashable], cap: float) -> list[float] | None:
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of id -> weight, got {type(weights).__name__}")
    if set(weights) != set(ids):
        raise ValueError("weights must name exactly the ids of inputs")
    out = []
    for cid in ids:
        w = weights[cid]
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)):
            raise TypeError(f"weights[{cid!r}] must be a number, got {type(w).__name__}")
        if not (math.isfinite(w) and 0 <= w <= cap):
            raise ValueError(f"weights[{cid!r}] must be in [0, max_weight={cap}], got {w}")
        out.append(float(w))
    return out


def secure_sum(
    inputs: Mapping[Hashable, NDArray[Any]],
    *,
    config: SecAggConfig | None = None,
    dropouts: Mapping[Hashable, str] | None = None,
    weights: Mapping[Hashable, float] | None = None,
) -> SecAggResult:
    """Sum ``inputs`` with SecAgg+ run in process (every message serialised and parsed).

    Parameters
    ----------
    inputs
        Client id -> array; all of one shape and dtype (uint32, float32 or float64).
    config
        Round settings (default :class:`SecAggConfig`).
    dropouts
        Client id -> the stage it vanishes in: ``"share_keys"`` (advertised keys, sent no
        shares), ``"masked_input"`` (shared keys, sent no input) or ``"unmask"`` (sent its
        input, never answered the unmask request). Its input is in the sum only in the last
        case.
    weights
        Client id -> weight in ``[0, config.max_weight]`` (float inputs only): each client
        sends ``w x`` and ``w``, and the result holds ``sum w x`` and ``sum w``.

    Raises
    ------
    SecAggError
        When too many clients drop for the threshold (no output is given).
    """
    cfg = SecAggConfig() if config is None else config
    if not isinstance(cfg, SecAggConfig):
        raise TypeError(f"config must be a SecAggConfig, got {type(cfg).__name__}")
    ids, arrays, dtype = _check_inputs(inputs)
    drops = _check_dropouts(dropouts, ids)
    n = len(ids)
    exact = dtype == np.uint32
    ws = _check_weights(weights, ids, cfg.max_weight)
    if exact and ws is not None:
        raise TypeError("weights need float inputs; uint32 inputs are summed exactly")
    bits = (
        None
        if exact
        else (quantize.max_bits(n) if cfg.bits is None else quantize.check_bits(cfg.bits, n))
    )
    length = arrays[0].size + (1 if ws is not None else 0)
    vectors = [
        _encode(a, cfg, bits, None if ws is None else ws[i], exact) for i, a in enumerate(arrays)
    ]
    stages = [drops.get(cid) for cid in ids]
    total, alive, server, params = _run_round(vectors, length, cfg, stages)
    survivors = tuple(ids[i] for i in alive)
    dropped = tuple(cid for cid in ids if cid not in set(survivors))
    shape = arrays[0].shape
    weight = None
    out: NDArray[Any] = total
    if not exact:
        assert bits is not None
        if ws is None:
            out = quantize.decode_sum(total, len(alive), cfg.clip, bits).astype(dtype)
        else:
            bound = cfg.clip * cfg.max_weight
            out = quantize.decode_sum(total[:-1], len(alive), bound, bits).astype(dtype)
            weight = float(quantize.decode_sum(total[-1:], len(alive), cfg.max_weight, bits)[0])
    return SecAggResult(
        out.reshape(shape),
        survivors,
        dropped,
        params,
        bits,
        weight,
        rejected={ids[i]: why for i, why in server.rejected.items()},
        excluded={ids[i]: why for i, why in server.excluded.items()},
        corrupted_shares=tuple((ids[h], ids[o]) for h, o in server.corrupted_shares),
    )


def _encode(
    x: NDArray[Any], cfg: SecAggConfig, bits: int | None, w: float | None, exact: bool
) -> NDArray[np.uint32]:
    """A client's input as the uint32 vector it masks (``w x`` and ``w`` when weighted)."""
    if exact:
        return np.ascontiguousarray(x).reshape(-1)
    assert bits is not None
    gen = NoiseGenerator()
    if w is None:
        return quantize.encode(x, cfg.clip, bits, gen)
    wx = np.clip(x.astype(np.float64), -cfg.clip, cfg.clip) * w
    return np.concatenate(
        [
            quantize.encode(wx, cfg.clip * cfg.max_weight, bits, gen),
            quantize.encode(np.array([w]), cfg.max_weight, bits, gen),
        ]
    )


def _run_round(
    vectors: list[NDArray[np.uint32]],
    length: int,
    cfg: SecAggConfig,
    stage: list[str | None],
) -> tuple[NDArray[np.uint32], tuple[int, ...], Server, GraphParameters]:
    """One round of the protocol among ``len(vectors)`` in-process clients, every message
    serialised and parsed; client ``i`` vanishes before the stage ``stage[i]`` (if any).

    All roles run here (operator, server, clients): a simulation of the deployment, whose
    guarantees hold only where the roles are separate parties.
    """
    n = len(vectors)
    operator = Identity()
    idents = [Identity() for _ in range(n)]
    registry = IdentityRegistry(
        operator.public_bytes, {i: c.public_bytes for i, c in enumerate(idents)}
    )
    params = choose_parameters(
        n, cfg.dropout_rate, cfg.collusion_fraction, complete=cfg.complete_graph
    )
    plan = SessionPlan(
        os.urandom(32),
        tuple(range(n)),
        params.k,
        params.t,
        params.complete,
        length,
        cfg.dropout_rate,
    ).signed(operator)
    policy = SecurityPolicy(collusion_fraction=cfg.collusion_fraction)
    server = Server(registry, plan)
    clients = [Client(idents[i], i, registry, plan, policy) for i in range(n)]

    def live(i: int, at: str) -> bool:
        s = stage[i]
        return s is None or STAGES.index(s) > STAGES.index(at)

    for c in clients:
        server.receive_advertise(c.advertise())
    rosters = server.rosters()
    shared = {i: clients[i].share_keys(r) for i, r in rosters.items() if live(i, "share_keys")}
    for m in shared.values():
        server.receive_share_keys(m)
    for i, m in server.route_shares().items():
        if live(i, "masked_input"):
            server.receive_masked_input(clients[i].masked_input(m, vectors[i]))
    tags = {
        i: clients[i].consistency(m)
        for i, m in server.survivors().items()
        if live(i, "consistency")
    }
    for m in tags.values():
        server.receive_consistency_tags(m)
    for i, m in server.consistency_proofs().items():
        if live(i, "unmask"):
            server.receive_unmask_response(clients[i].unmask(m))
    total, alive = server.finalize()
    return total, alive, server, params


class SecureAggregator:
    """Collects clients' shares (their model updates) and reveals only their sum.

    ``config`` is a :class:`SecAggConfig`, or any object with a ``clip_norm`` attribute
    (such as ``Layer2Config``), whose value becomes the per-coordinate clip; its
    ``min_baskets``, if any, is the fewest surviving inputs :meth:`finalize` accepts.
    """

    def __init__(self, config: Any = None) -> None:
        self.min_inputs = 2
        if config is None:
            self.config = SecAggConfig()
        elif isinstance(config, SecAggConfig):
            self.config = config
        elif hasattr(config, "clip_norm"):
            self.config = SecAggConfig(clip=float(config.clip_norm))
            self.min_inputs = int(getattr(config, "min_baskets", 2))
        else:
            raise TypeError(
                f"config must be a SecAggConfig or have a clip_norm, got {type(config).__name__}"
            )
        self._shares: dict[Hashable, NDArray[Any]] = {}
        self._weights: dict[Hashable, float] = {}
        self._layout: tuple[tuple[int, ...], ...] | None = None  # shapes of a list share
        self.last_result: SecAggResult | None = None

    def submit_share(
        self,
        client_id: Hashable,
        share: NDArray[Any] | Sequence[NDArray[Any]],
        weight: float | None = None,
    ) -> None:
        """Queue ``client_id``'s input (copied) for the next :meth:`finalize`.

        ``share`` is an array, or a model as a list of arrays (Flower's NDArrays); every
        client of a round gives the same shapes and dtype. With a ``weight`` (in
        ``[0, config.max_weight]``) the round is a weighted sum, and every client of the round
        must give one; ``last_result.total_weight`` is their sum.
        """
        if client_id in self._shares:
            raise ValueError(f"client_id {client_id!r} already submitted a share this round")
        if (weight is None) != (len(self._weights) == 0) and self._shares:
            raise ValueError("give a weight for every client of a round or for none")
        if isinstance(share, np.ndarray):
            layout = None
            flat = share.copy()
        elif isinstance(share, Sequence) and share and not isinstance(share, (str, bytes)):
            if not all(isinstance(a, np.ndarray) for a in share):
                raise TypeError("share must be a numpy array or a list of numpy arrays")
            if len({a.dtype for a in share}) != 1:
                raise TypeError("the arrays of a list share must have one dtype")
            layout = tuple(a.shape for a in share)
            flat = np.concatenate([a.reshape(-1) for a in share])
        else:
            raise TypeError(
                f"share must be a numpy array or a list of numpy arrays, got {type(share).__name__}"
            )
        if self._shares and layout != self._layout:
            raise ValueError(
                f"client_id {client_id!r}: share layout {layout} differs from the round's "
                f"{self._layout} (None = a single array)"
            )
        self._layout = layout
        self._shares[client_id] = flat
        if weight is not None:
            self._weights[client_id] = weight

    def finalize(
        self, dropouts: Mapping[Hashable, str] | None = None
    ) -> NDArray[Any] | list[NDArray[Any]]:
        """Run the round and return the sum (a list of arrays for list shares); the queue is
        emptied either way.

        Raises ValueError (no output) when fewer than ``min_inputs`` inputs survive.
        """
        shares, self._shares = self._shares, {}
        weights, self._weights = self._weights, {}
        layout, self._layout = self._layout, None
        self.last_result = None
        result = secure_sum(shares, config=self.config, dropouts=dropouts, weights=weights or None)
        if len(result.survivors) < self.min_inputs:
            raise ValueError(
                f"only {len(result.survivors)} inputs survived, fewer than the minimum "
                f"{self.min_inputs} (min_baskets): no aggregate is released"
            )
        self.last_result = result
        if layout is None:
            return result.total
        out, at = [], 0
        for shape in layout:
            size = math.prod(shape)
            out.append(result.total[at : at + size].reshape(shape))
            at += size
        return out
