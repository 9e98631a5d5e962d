"""The federation end to end: a 10,000-client round, and hierarchical against flat Bulyan.

Groups:

- ``federation round 10000 clients d=1e4``: 10,000 clients in 100 baskets over 5 domains each
  submit a float32 update of 1e4 values; Layer 1 runs a trimmed mean per basket as each
  basket fills; Layer 2 combines the 100 basket models with SecAgg+ and central DP. The
  entry ``hierfed federation`` times the whole round (submissions, buffering, triggers,
  both layers); ``extra_info`` records the time inside the two layers' ``aggregate`` (the
  kernels: robust rule, clipping, secure sum, noise) and ``outside_kernels`` = 1 - that share.
  Its baseline ``layers alone`` runs the same two layers on the same data, without the
  federation (the floor the federation's bookkeeping adds to).
- ``bulyan 1000 clients d=1e4``: flat Bulyan over 1,000 updates (f = 249, the most n = 1000
  allows) against hierarchical Bulyan: 20 baskets of 50 (f = 11 each) whose basket models are
  averaged by Layer 2 (no noise, no secure aggregation: the aggregation cost alone).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bench import peers
from hierfed import NoiseGenerator, bulyan, trimmed_mean
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import (
    BasketModel,
    Layer1Aggregator,
    Layer1Config,
    Layer2Aggregator,
    Layer2Config,
)

N_CLIENTS, N_BASKETS, N_DOMAINS, D = 10_000, 100, 5, 10**4
PER_BASKET = N_CLIENTS // N_BASKETS
N_BULYAN, BULYAN_BASKETS = 1000, 20


@pytest.fixture(scope="module")
def updates() -> np.ndarray:
    rng = np.random.default_rng(peers.SEED)
    return (rng.standard_normal((N_CLIENTS, D), dtype=np.float32) * 1e-3).astype(np.float32)


def _round_config() -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=3, max_clients=PER_BASKET),
        layer1=Layer1Config(min_updates=PER_BASKET, apply_local_noise=False),
        layer2=Layer2Config(min_baskets=N_BASKETS, central_dp_epsilon=1.0, clip_norm=1.0),
    )


def _timed(fn: Callable[..., Any], total: list[float]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    return run


def _info(benchmark: Any, name: str, **info: Any) -> None:
    benchmark.extra_info.update(
        impl=name, threads=peers.threads(), load1=os.getloadavg()[0], **info
    )


def test_federation_round(benchmark: Any, updates: np.ndarray) -> None:
    benchmark.group = f"federation round {N_CLIENTS} clients d=1e4"
    _info(benchmark, "hierfed federation")
    inside = [0.0]
    feds: list[HierarchicalFederation] = []

    def setup() -> tuple[tuple[HierarchicalFederation], dict[str, Any]]:
        fed = HierarchicalFederation(
            _round_config(), generator=NoiseGenerator(seed=1, secure=False), seed=0
        )
        for c in range(N_CLIENTS):
            fed.register_client(f"c{c}", f"domain{c % N_DOMAINS}")
        fed.layer1.aggregate = _timed(fed.layer1.aggregate, inside)  # type: ignore[method-assign]
        fed.layer2.aggregate = _timed(fed.layer2.aggregate, inside)  # type: ignore[method-assign]
        feds.append(fed)
        return (fed,), {}

    def round_(fed: HierarchicalFederation) -> None:
        for c in range(N_CLIENTS):
            fed.submit_update(f"c{c}", updates[c], 0)

    benchmark.pedantic(round_, setup=setup, rounds=3, iterations=1, warmup_rounds=0)
    total = float(sum(benchmark.stats.stats.data))
    benchmark.extra_info.update(
        inside_layers_s=inside[0] / 3,
        outside_kernels=1.0 - inside[0] / total,
        baskets=feds[-1].manager.get_stats()["n_baskets"],
    )
    fed = feds[-1]
    assert fed.version == 1 and fed.get_stats()["aggregated_updates"] == N_CLIENTS
    assert fed.get_stats()["last_layer2"]["secure_agg_simulated"] is True


def test_layers_alone(benchmark: Any, updates: np.ndarray) -> None:
    benchmark.group = f"federation round {N_CLIENTS} clients d=1e4"
    _info(benchmark, "layers alone (floor)")
    cfg = _round_config()
    gen = NoiseGenerator(seed=1, secure=False)
    layer1 = Layer1Aggregator(cfg.layer1, generator=gen)
    layer2 = Layer2Aggregator(cfg.layer2, generator=gen)
    rows = [list(updates[b * PER_BASKET : (b + 1) * PER_BASKET]) for b in range(N_BASKETS)]
    weights = [1.0] * PER_BASKET

    def both_layers() -> Any:
        models = [layer1.aggregate(r, weights, basket_id=f"b{b}") for b, r in enumerate(rows)]
        return layer2.aggregate(models)

    out = benchmark.pedantic(both_layers, rounds=3, iterations=1, warmup_rounds=0)
    assert out.n_clients_total == N_CLIENTS


@pytest.fixture(scope="module")
def bulyan_updates(updates: np.ndarray) -> np.ndarray:
    return updates[:N_BULYAN]


def test_flat_bulyan(benchmark: Any, bulyan_updates: np.ndarray) -> None:
    benchmark.group = f"bulyan {N_BULYAN} clients d=1e4"
    f = (N_BULYAN - 3) // 4
    _info(benchmark, f"flat bulyan f={f}")
    out = benchmark.pedantic(
        lambda: bulyan(bulyan_updates, f), rounds=5, iterations=1, warmup_rounds=1
    )
    assert out.shape == (D,)


def test_hierarchical_bulyan(benchmark: Any, bulyan_updates: np.ndarray) -> None:
    benchmark.group = f"bulyan {N_BULYAN} clients d=1e4"
    size = N_BULYAN // BULYAN_BASKETS
    f = (size - 3) // 4
    _info(benchmark, f"hierarchical bulyan {BULYAN_BASKETS}x{size} f={f}")
    layer1 = Layer1Aggregator(
        Layer1Config(aggregation_method="bulyan", method_params={"f": f}, apply_local_noise=False)
    )
    layer2 = Layer2Aggregator(
        Layer2Config(use_secure_aggregation=False, central_dp_epsilon=None, clip_norm=1e6)
    )
    baskets = [list(bulyan_updates[b * size : (b + 1) * size]) for b in range(BULYAN_BASKETS)]

    def hierarchical() -> np.ndarray:
        models: list[BasketModel | None] = [
            layer1.aggregate(u, basket_id=f"b{b}") for b, u in enumerate(baskets)
        ]
        return layer2.aggregate(models).aggregate

    out = benchmark.pedantic(hierarchical, rounds=5, iterations=1, warmup_rounds=1)
    want = np.mean([bulyan(u, f) for u in baskets], axis=0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-9)


def test_trimmed_mean_reference_matches(updates: np.ndarray) -> None:
    """The round's Layer 1 is the plain trimmed mean of each basket (a sanity check)."""
    layer1 = Layer1Aggregator(Layer1Config(apply_local_noise=False))
    model = layer1.aggregate(list(updates[:PER_BASKET]))
    assert model is not None
    np.testing.assert_array_equal(model.aggregate, trimmed_mean(updates[:PER_BASKET], 0.1))
