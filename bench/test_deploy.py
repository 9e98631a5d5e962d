"""The private path's cost per round against the in-process path, on the same updates.

Group ``deploy round 4 baskets x 10 members d=<d>`` (d = 1e4, 1e5; float64 updates):

- ``in-process layers`` (the baseline): today's path in one process: Layer 1 (trimmed mean)
  per basket, then Layer 2 with SecAgg+ simulated over the basket models and central DP.
- ``deployed roles``: every party of :mod:`hierfed.deploy` played in this process: each member
  seals its update (HPKE), each basket aggregator opens and validates them, runs the same
  Layer 1, encodes its model with its distributed discrete Gaussian share, SecAgg+ sums the
  uint32 words (every protocol message serialised and parsed), the global aggregator decodes
  and accounts. ``extra_info`` splits it: ``seal_s`` (all members), ``prepare_s`` (all
  baskets: open, Layer 1, encode), ``secagg_release_s`` (SecAgg+ and the release).

What a real deployment adds on top is transport (Flower's runtime: bench/README.md).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench import peers
from hierfed.deploy import BasketNode, GlobalAggregator, SealContext, seal_update
from hierfed.deploy.local import run_round
from hierfed.layers import Layer1Aggregator, Layer1Config, Layer2Aggregator, Layer2Config
from hierfed.privacy import DistributedDPConfig, NoiseGenerator

BASKETS, MEMBERS = 4, 10
SESSION = b"bench-session-of-the-deployment!"
LAYER1 = Layer1Config(trim_ratio=0.1, min_updates=MEMBERS, apply_local_noise=False)


@pytest.fixture(scope="module", params=[10**4, 10**5], ids=["d=1e4", "d=1e5"])
def updates(request: Any) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(peers.SEED)
    d = request.param
    return {
        f"b{b}": {f"b{b}-m{m}": rng.normal(0, 1e-3, d) for m in range(MEMBERS)}
        for b in range(BASKETS)
    }


def _info(benchmark: Any, name: str, d: int, **info: Any) -> None:
    benchmark.group = f"deploy round {BASKETS} baskets x {MEMBERS} members d=1e{len(str(d)) - 1}"
    benchmark.extra_info.update(
        impl=name, threads=peers.threads(), load1=os.getloadavg()[0], **info
    )


def test_in_process_layers(benchmark: Any, updates: dict[str, dict[str, np.ndarray]]) -> None:
    d = next(iter(next(iter(updates.values())).values())).size
    _info(benchmark, "in-process layers", d)
    gen = NoiseGenerator(seed=0, secure=False)
    layer1 = Layer1Aggregator(LAYER1, generator=gen)
    layer2 = Layer2Aggregator(Layer2Config(min_baskets=BASKETS), generator=gen)

    def one_round() -> Any:
        models = [
            layer1.aggregate(np.stack(list(u.values())), basket_id=b) for b, u in updates.items()
        ]
        return layer2.aggregate(models)

    benchmark.pedantic(one_round, rounds=3, iterations=1, warmup_rounds=1)


def test_deployed_roles(benchmark: Any, updates: dict[str, dict[str, np.ndarray]]) -> None:
    d = next(iter(next(iter(updates.values())).values())).size
    _info(benchmark, "deployed roles", d)
    ddg = DistributedDPConfig(noise_multiplier=1.0).mechanism(1.0, d, BASKETS, BASKETS)
    nodes = [
        BasketNode(b, X25519PrivateKey.generate(), ddg, LAYER1, members=list(u))
        for b, u in updates.items()
    ]
    server = GlobalAggregator(ddg)
    rounds = itertools.count()
    phases = {"seal_s": 0.0, "prepare_s": 0.0, "secagg_release_s": 0.0}

    def one_round() -> Any:
        r = next(rounds)
        start = time.perf_counter()
        sealed = {
            n.basket_id: {
                m: seal_update(x, n.public_key, SealContext(SESSION, r, m, n.basket_id))
                for m, x in updates[n.basket_id].items()
            }
            for n in nodes
        }
        phases["seal_s"] += time.perf_counter() - start
        out = run_round(nodes, sealed, server, session=SESSION, round_id=r)
        return out

    prepare = BasketNode.prepare

    def timed_prepare(self: BasketNode, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return prepare(self, *args, **kwargs)
        finally:
            phases["prepare_s"] += time.perf_counter() - start

    BasketNode.prepare = timed_prepare  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        benchmark.pedantic(one_round, rounds=3, iterations=1, warmup_rounds=1)
        total = time.perf_counter() - start
    finally:
        BasketNode.prepare = prepare  # type: ignore[method-assign]
    calls = next(rounds)
    phases["secagg_release_s"] = total - phases["seal_s"] - phases["prepare_s"]
    benchmark.extra_info.update({k: v / calls for k, v in phases.items()})
