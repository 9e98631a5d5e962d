"""The learning task: softmax regression on scikit-learn's digits, in numpy (no download).

Nodes hold IID shards of the digits (the first 297 samples are held out for the server's
central evaluation); node ``i`` belongs to domain ``domain-(i mod num-domains)`` unless its
node config names one (``--node-config "domain='hospital'"``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

Arrays = dict[str, NDArray[np.float32]]

# The run config's defaults ([tool.flwr.app.config] of pyproject.toml repeats them).
DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 3,
    "num-domains": 2,
    "min-nodes": 10,
    "local-epochs": 5,
    "lr": 0.5,
    "rule": "trimmed_mean",
    "trim-ratio": 0.2,
    "f": 0,
    "clip-norm": 10.0,
    "secure-aggregation": True,
    "central-dp-epsilon": 0.0,  # 0 turns central DP off
    "seed": 0,
    # the private path (hierfed_flower/private_server.py): members, basket aggregators
    "private": False,
    "provision-dir": "",  # the server's provisioned directory (public data only)
    "stage-timeout": 120.0,  # seconds a SecAgg+ stage waits before dropping a node
    "record-to": "",  # a file the ServerApp writes every message's payload to ("": none)
}
N_HELD_OUT = 297


def settings(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The run config over the defaults."""
    return {**DEFAULTS, **dict(run_config)}


@functools.cache
def _data() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    from sklearn.datasets import load_digits  # here: a basket aggregator node never needs it

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(1234).permutation(len(y))
    return (x[order] / 16.0).astype(np.float32), y[order].astype(np.int64)


def held_out() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The server's central test set."""
    x, y = _data()
    return x[:N_HELD_OUT], y[:N_HELD_OUT]


def partition(
    partition_id: int, num_partitions: int
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32], NDArray[np.int64]]:
    """A node's shard: (train x, train y, validation x, validation y), 80/20."""
    x, y = _data()
    shard = np.array_split(np.arange(N_HELD_OUT, len(y)), num_partitions)[partition_id]
    cut = int(0.8 * len(shard))
    return x[shard[:cut]], y[shard[:cut]], x[shard[cut:]], y[shard[cut:]]


def domain(node_config: Mapping[str, Any], num_domains: int) -> str:
    """The node's domain: its node config's ``domain``, else by partition id."""
    if "domain" in node_config:
        return str(node_config["domain"])
    return f"domain-{int(node_config['partition-id']) % num_domains}"


def role(node_config: Mapping[str, Any]) -> str:
    """The node's role: its node config's ``role`` (``"member"`` or ``"basket"``: the private
    path), else ``"plaintext"`` (the plaintext path's node)."""
    value = str(node_config.get("role", "plaintext"))
    if value not in ("member", "basket", "plaintext"):
        raise ValueError(f"node config role must be 'member' or 'basket', got {value!r}")
    return value


def model_size() -> int:
    """Values in the model (the distributed DP's dimension)."""
    return sum(a.size for a in initial_arrays().values())


def initial_arrays() -> Arrays:
    """The model at round 0: zero weights and biases."""
    return {"weight": np.zeros((64, 10), np.float32), "bias": np.zeros(10, np.float32)}


def _probabilities(arrays: Mapping[str, NDArray[Any]], x: NDArray[Any]) -> NDArray[np.float64]:
    logits = x.astype(np.float64) @ arrays["weight"] + arrays["bias"]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    out: NDArray[np.float64] = p / p.sum(axis=1, keepdims=True)
    return out


def evaluate(
    arrays: Mapping[str, NDArray[Any]], x: NDArray[Any], y: NDArray[np.int64]
) -> tuple[float, float]:
    """(cross-entropy loss, accuracy) of the model on ``x``, ``y``."""
    p = _probabilities(arrays, x)
    loss = float(-np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
    return loss, float(np.mean(p.argmax(axis=1) == y))


def train(
    arrays: Mapping[str, NDArray[Any]],
    x: NDArray[Any],
    y: NDArray[np.int64],
    epochs: int,
    lr: float,
) -> tuple[Arrays, float]:
    """Full-batch gradient descent for ``epochs`` steps; the new model and its train loss."""
    w = np.array(arrays["weight"], np.float64)
    b = np.array(arrays["bias"], np.float64)
    onehot = np.eye(10)[y]
    for _ in range(epochs):
        g = (_probabilities({"weight": w, "bias": b}, x) - onehot) / len(y)
        w -= lr * (x.T @ g)
        b -= lr * g.sum(axis=0)
    new = {"weight": w.astype(np.float32), "bias": b.astype(np.float32)}
    return new, evaluate(new, x, y)[0]
