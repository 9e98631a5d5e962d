"""Server optimizers: how the global model moves by each global aggregate.

The global aggregate ``delta`` of a round (Layer 2's output, a model difference: the
negative of a pseudo-gradient) moves the model ``x`` by one step of (Reddi et al. 2021,
"Adaptive Federated Optimization", Algorithm 2, with ``eta`` the server learning rate):

- ``sgd``: ``x + eta delta`` (FedAvg with a server learning rate);
- ``fedavgm``: ``m = momentum m + delta; x + eta m`` (Hsu et al. 2019; Flower's FedAvgM and
  ``torch.optim.SGD`` without dampening);
- ``fedadagrad``: ``m = b1 m + (1 - b1) delta; v = v + delta^2``;
- ``fedadam``: ``m`` as above, ``v = b2 v + (1 - b2) delta^2``;
- ``fedyogi``: ``m`` as above, ``v = v - (1 - b2) delta^2 sign(v - delta^2)``;

and the three adaptive ones step ``x + eta m / (sqrt(v) + tau)``, elementwise. ``m`` starts at
zero and ``v`` at ``initial_accumulator`` (the paper asks ``v_{-1} >= tau^2``; Flower starts at
zero, the default here). No bias correction, as in the paper (Flower's FedAdam scales ``eta``
by ``sqrt(1 - b2^(t+1)) / (1 - b1^(t+1))`` in round ``t``; its other optimizers do not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OPTIMIZERS", "ServerOptimizer", "ServerOptimizerConfig"]

OPTIMIZERS = ("sgd", "fedavgm", "fedadagrad", "fedadam", "fedyogi")
_ADAPTIVE = ("fedadagrad", "fedadam", "fedyogi")
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class ServerOptimizerConfig:
    """Which server optimizer, with its hyperparameters (the learning rate is the
    federation's ``server_learning_rate``).

    Attributes
    ----------
    name
        One of :data:`OPTIMIZERS`.
    momentum
        FedAvgM's momentum in ``[0, 1)``.
    beta_1, beta_2
        The adaptive optimizers' first- and second-moment decays in ``[0, 1)`` (FedAdagrad
        uses ``beta_1`` only).
    tau
        The adaptivity ``tau > 0`` added to ``sqrt(v)``.
    initial_accumulator
        The second moment's start ``v_{-1} >= 0``.
    """

    name: str = "sgd"
    momentum: float = 0.9
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    initial_accumulator: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"name must be one of {', '.join(OPTIMIZERS)}; got {self.name!r}")
        for key in ("momentum", "beta_1", "beta_2"):
            _real(getattr(self, key), key, 0.0, 1.0, open_high=True)
        _real(self.tau, "tau", 0.0, math.inf, open_low=True)
        _real(self.initial_accumulator, "initial_accumulator", 0.0, math.inf)


def _real(
    x: Any,
    name: str,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    ok = not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)
    if ok:
        ok = (x > low if open_low else x >= low) and (x < high if open_high else x <= high)
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name} must be a finite number in {left}{low}, {high}{right}, got {x!r}")
    return float(x)


class ServerOptimizer:
    """A server optimizer's state and step.

    Parameters
    ----------
    config
        A :class:`ServerOptimizerConfig`, or an optimizer's name with the defaults.
    learning_rate
        The server learning rate ``eta`` (finite).

    Attributes
    ----------
    m, v
        First and second moments (FedAvgM's momentum buffer is ``m``), ``None`` before the
        first step or where the optimizer has none; of the model's shape and dtype.
    steps
        Steps taken.
    """

    def __init__(self, config: ServerOptimizerConfig | str = "sgd", learning_rate: float = 1.0):
        if isinstance(config, str):
            config = ServerOptimizerConfig(config)
        if not isinstance(config, ServerOptimizerConfig):
            raise TypeError(
                f"config must be a ServerOptimizerConfig or a name, got {type(config).__name__}"
            )
        self.config = config
        self.learning_rate = _real(learning_rate, "learning_rate", -math.inf, math.inf)
        self.m: Array | None = None
        self.v: Array | None = None
        self.steps = 0

    def step(self, model: Array, delta: Array) -> Array:
        """The model after one step by ``delta`` (a new array of ``model``'s dtype).

        All or nothing: a ``delta`` of another shape, or a step that would leave the model
        or the state non-finite, raises ``ValueError`` and changes nothing.
        """
        if delta.shape != model.shape:
            raise ValueError(f"delta has shape {delta.shape}; the model has {model.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            return self._step(model, delta)

    def _step(self, model: Array, delta: Array) -> Array:
        cfg, eta = self.config, self.learning_rate
        d = delta.astype(np.float64)
        m, v = self.m, self.v
        if cfg.name == "sgd":
            move = d
        elif cfg.name == "fedavgm":
            m = d if m is None else cfg.momentum * m + d
            move = m
        else:
            m = (1.0 - cfg.beta_1) * d if m is None else cfg.beta_1 * m + (1.0 - cfg.beta_1) * d
            if v is None:
                v = np.full_like(d, cfg.initial_accumulator)
            d2 = d * d
            if cfg.name == "fedadagrad":
                v = v + d2
            elif cfg.name == "fedadam":
                v = cfg.beta_2 * v + (1.0 - cfg.beta_2) * d2
            else:
                v = v - (1.0 - cfg.beta_2) * d2 * np.sign(v - d2)
            move = m / (np.sqrt(v) + cfg.tau)
        new = (model + eta * move).astype(model.dtype)
        kept = [a.astype(model.dtype) if a is not None else None for a in (m, v)]
        if not np.isfinite(new).all() or any(
            a is not None and not np.isfinite(a).all() for a in kept
        ):
            raise ValueError(f"{cfg.name}: the step leaves the model or its state non-finite")
        self.m, self.v = kept
        self.steps += 1
        return new

    # ---- checkpoints ---------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], dict[str, Array]]:
        """The state as a JSON document (``name``, ``steps``) and arrays (``m``, ``v`` where
        set)."""
        arrays = {k: a for k, a in (("m", self.m), ("v", self.v)) if a is not None}
        return {"name": self.config.name, "steps": self.steps}, arrays

    def checked_state(
        self, doc: Any, arrays: dict[str, Array], like: Array | None
    ) -> tuple[int, Array | None, Array | None]:
        """``(steps, m, v)`` of a saved :meth:`state` after checking it fits this optimizer
        and a model like ``like``; raises ``ValueError`` naming what is wrong."""
        if not isinstance(doc, dict) or set(doc) != {"name", "steps"}:
            raise ValueError(f"optimizer state must have the keys ['name', 'steps'], got {doc!r}")
        if doc["name"] != self.config.name:
            raise ValueError(
                f"optimizer state is {doc['name']!r}'s; this federation uses {self.config.name!r}"
            )
        steps = doc["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"optimizer steps must be an int >= 0, got {steps!r}")
        want = set()
        if steps > 0 and self.config.name != "sgd":
            want = {"m", "v"} if self.config.name in _ADAPTIVE else {"m"}
        if set(arrays) != want:
            raise ValueError(f"optimizer arrays must be {sorted(want)}, got {sorted(arrays)}")
        for k, a in arrays.items():
            if like is None or a.shape != like.shape or a.dtype != like.dtype:
                raise ValueError(f"optimizer array {k} does not match the model")
            if not np.isfinite(a).all():
                raise ValueError(f"optimizer array {k} holds NaN or infinity")
        return steps, arrays.get("m"), arrays.get("v")

    def assign(self, steps: int, m: Array | None, v: Array | None) -> None:
        """Take a state returned by :meth:`checked_state`."""
        self.steps, self.m, self.v = steps, m, v
