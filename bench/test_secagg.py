"""Secure aggregation: one SecAgg+ round against the floor, a plain uint32 sum of the inputs.

Groups ``secagg n=<n> d=1e5`` (n = 20, 100, 1000): every client checks the operator-signed
plan, advertises signed keys and shares keys, 10 % of them then drop (no masked input: the
server must reconstruct their masking keys and remove their pair masks), the rest send masked
inputs, confirm the survivor set (consistency round) and unmask. ``k`` and ``t`` are chosen for
5 % collusion and 10 % dropout (``SecAggConfig`` defaults). The round runs in process with every
message serialised and parsed; ``extra_info`` records the mean compute per live client (its
construction with the plan checks, and all five rounds), the server's compute, ``k`` and ``t``.
The benchmark's own time is the whole round (clients run one after another on this machine, so
it is the sum of all clients' work plus the server's). Identities and the registry are made
once per ``n`` (provisioning), outside the timed round.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from bench import peers
from hierfed import _backend
from hierfed.secagg import Client, Server, choose_parameters
from hierfed.secagg.identity import Identity, IdentityRegistry
from hierfed.secagg.session import SessionPlan

D = 10**5
SIZES = (20, 100, 1000)
DROP = 0.1


def _inputs(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 2**32, size=(n, D), dtype=np.uint32)


_PROVISIONED: dict[int, tuple[Identity, list[Identity], IdentityRegistry]] = {}


def _provision(n: int) -> tuple[Identity, list[Identity], IdentityRegistry]:
    """The operator, ``n`` client identities and their registry (made once per ``n``)."""
    if n not in _PROVISIONED:
        operator, ids = Identity(), [Identity() for _ in range(n)]
        registry = IdentityRegistry(
            operator.public_bytes, {i: c.public_bytes for i, c in enumerate(ids)}
        )
        _PROVISIONED[n] = (operator, ids, registry)
    return _PROVISIONED[n]


class Timers:
    """Compute time of each client and of the server over one round (``time.perf_counter``)."""

    def __init__(self, n: int) -> None:
        self.client_s = np.zeros(n)
        self.server_s = 0.0
        self.start = time.perf_counter()

    def srv(self, f: Any, *a: Any) -> Any:
        """``f(*a)``, its time counted as the server's."""
        t = time.perf_counter()
        out = f(*a)
        self.server_s += time.perf_counter() - t
        return out

    def cli(self, i: int, f: Any, *a: Any) -> Any:
        """``f(*a)``, its time counted as client ``i``'s."""
        t = time.perf_counter()
        out = f(*a)
        self.client_s[i] += time.perf_counter() - t
        return out

    def summary(
        self, x: np.ndarray, total: np.ndarray, survivors: Any, live: list[int]
    ) -> dict[str, float]:
        """Check the sum exactly; the figures of the round."""
        wall = time.perf_counter() - self.start
        want = x[list(survivors)].sum(axis=0, dtype=np.uint64).astype(np.uint32)
        assert np.array_equal(total, want), "the secure sum is wrong"
        return {
            "client_ms": float(self.client_s[live].mean() * 1e3),
            "client_max_ms": float(self.client_s[live].max() * 1e3),
            "server_ms": self.server_s * 1e3,
            "round_s": wall,
        }


def dropped_clients(n: int, drop: float = DROP) -> set[int]:
    """The clients that vanish after sharing keys: every ``1 / drop``-th."""
    return set(range(0, n, round(1 / drop)))


def timed_round(x: np.ndarray, drop: float = DROP) -> dict[str, Any]:
    """One round over the rows of ``x``; the fraction ``drop`` vanishes after sharing keys."""
    n = x.shape[0]
    operator, ids, registry = _provision(n)
    params = choose_parameters(n)
    plan = SessionPlan(
        os.urandom(32), tuple(range(n)), params.k, params.t, params.complete, x.shape[1], DROP
    ).signed(operator)
    tm = Timers(n)
    srv, cli = tm.srv, tm.cli
    server = srv(Server, registry, plan)
    clients = [cli(i, Client, ids[i], i, registry, plan) for i in range(n)]
    for i, c in enumerate(clients):
        srv(server.receive_advertise, cli(i, c.advertise))
    rosters = srv(server.rosters)
    for i, c in enumerate(clients):
        srv(server.receive_share_keys, cli(i, c.share_keys, rosters[i]))
    routed = srv(server.route_shares)
    dropped = dropped_clients(n, drop)
    for i, c in enumerate(clients):
        if i not in dropped:
            srv(server.receive_masked_input, cli(i, c.masked_input, routed[i], x[i]))
    for i, m in srv(server.survivors).items():
        srv(server.receive_consistency_tags, cli(i, clients[i].consistency, m))
    for i, m in srv(server.consistency_proofs).items():
        srv(server.receive_unmask_response, cli(i, clients[i].unmask, m))
    total, survivors = srv(server.finalize)
    live = [i for i in range(n) if i not in dropped]
    return {"k": params.k, "t": params.t, **tm.summary(x, total, survivors, live)}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(
    "backend", [pytest.param(b, id=f"hierfed-{b}") for b in peers.bench_backends()]
)
def test_secagg_round(benchmark: Any, backend: str, n: int) -> None:
    if backend not in _backend.available_backends():
        pytest.skip(f"hierfed backend {backend!r} is not available")
    if backend != "cpp" and n > 100:
        pytest.skip("n=1000 is timed on the compiled core only")
    x = _inputs(n)
    benchmark.group = f"secagg n={n} d=1e5"
    benchmark.extra_info.update(impl=f"hierfed-{backend}", threads=peers.threads())
    with _backend.using(backend):
        timed_round(x[:20])  # warm up (numba compiles)
        info: dict[str, Any] = {}
        benchmark.pedantic(
            lambda: info.update(timed_round(x)), rounds=1 if n >= 1000 else 3, iterations=1
        )
    benchmark.extra_info.update(info)


@pytest.mark.parametrize("n", SIZES)
def test_floor_uint32_sum(benchmark: Any, n: int) -> None:
    x = _inputs(n)
    benchmark.group = f"secagg n={n} d=1e5"
    benchmark.extra_info.update(impl="floor: plain uint32 sum")

    def plain() -> np.ndarray:
        total = np.zeros(D, np.uint32)
        for row in x:
            total += row
        return total

    benchmark.pedantic(plain, rounds=5, iterations=1, warmup_rounds=1)
