"""Durable submits into the SQLite update log, against writing the same bytes with fsync.

Group ``durable submits d=1e5 float32`` (one round: no trigger fires, every update stays
buffered and logged):

- ``write+fsync/64``: the floor, the updates' bytes written once to a file, fsync every 64;
- ``write+fsync/1``: the floor of one acknowledged write at a time, fsync after each update
  (``HIERFED_BENCH_STORE_PER_ACK``, default 1,000 updates);
- ``store 1 thread``: ``HIERFED_BENCH_STORE_N`` (default 10,000) durable submits, one after
  the other, each acknowledged after its commit; ``extra_info`` holds the mean of the first and
  of the last 1,000 submits, their ratio (flat: <= 1.5) and the total over the floor's;
- ``store 8 threads``: ``HIERFED_BENCH_STORE_THREADED`` (default 2,000) submits from 8 threads
  (commits shared); ``extra_info`` holds the submits per second;
- ``in memory``: the same submits without a store (today's path), for scale.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config

D = 10**5
N = int(os.environ.get("HIERFED_BENCH_STORE_N", "10000"))
N_THREADED = int(os.environ.get("HIERFED_BENCH_STORE_THREADED", "2000"))
N_PER_ACK = int(os.environ.get("HIERFED_BENCH_STORE_PER_ACK", "1000"))
GROUP = "durable submits d=1e5 float32"
FLOOR: dict[str, float] = {}


def _update(i: int) -> np.ndarray:
    u = np.full(D, 1e-3, np.float32)
    u[i % D] = 1.0  # distinct bytes per client
    return u


def _config(store: Path | None, n: int) -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=n),
        layer1=Layer1Config(min_updates=n + 1, apply_local_noise=False),
        layer2=Layer2Config(use_secure_aggregation=False, central_dp_epsilon=None),
        store=store,
    )


def _federation(tmp: Path, n: int, durable: bool) -> HierarchicalFederation:
    """``n`` registered clients in one basket; with ``durable``, on a fresh store (its
    clients arrive by one restore: one snapshot, not n commits)."""
    plain = HierarchicalFederation(_config(None, n), generator=NoiseGenerator(seed=0, secure=False))
    for i in range(n):
        plain.register_client(f"c{i}", "x")
    if not durable:
        return plain
    plain.checkpoint(tmp / "clients.npz")
    fed = HierarchicalFederation(
        _config(tmp / "store.db", n), generator=NoiseGenerator(seed=0, secure=False)
    )
    fed.restore(tmp / "clients.npz")
    return fed


def _pedantic(benchmark: Any, fn: Any) -> None:
    benchmark.group = GROUP
    benchmark.pedantic(fn, rounds=1, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize(("n", "every"), [(N, 64), (N_PER_ACK, 1)], ids=["/64", "/1"])
def test_floor_write_fsync(benchmark: Any, tmp_path: Path, n: int, every: int) -> None:
    def run() -> None:
        start = time.perf_counter()
        with open(tmp_path / "floor.bin", "wb") as f:
            for i in range(n):
                f.write(_update(i).data)
                if i % every == every - 1:
                    f.flush()
                    os.fsync(f.fileno())
            f.flush()
            os.fsync(f.fileno())
        FLOOR[f"/{every}"] = time.perf_counter() - start

    _pedantic(benchmark, run)
    per = FLOOR[f"/{every}"] / n
    benchmark.extra_info.update(n=n, total_s=FLOOR[f"/{every}"], per_update_ms=per * 1e3)
    (tmp_path / "floor.bin").unlink()


def _submit_all(fed: HierarchicalFederation, ids: range) -> list[float]:
    times = []
    for i in ids:
        u = _update(i)
        t = time.perf_counter()
        assert fed.submit_update(f"c{i}", u, 0)
        times.append(time.perf_counter() - t)
    return times


@pytest.mark.parametrize("durable", [True, False], ids=["store 1 thread", "in memory"])
def test_submits_one_thread(benchmark: Any, tmp_path: Path, durable: bool) -> None:
    fed = _federation(tmp_path, N, durable)
    times: list[float] = []
    _pedantic(benchmark, lambda: times.extend(_submit_all(fed, range(N))))
    k = min(1000, N // 2)
    first, last = float(np.mean(times[:k])), float(np.mean(times[-k:]))
    total = float(np.sum(times))
    benchmark.extra_info.update(
        n=N,
        total_s=total,
        first_1000_ms=first * 1e3,
        last_1000_ms=last * 1e3,
        last_over_first=last / first,
        over_floor_64=total / FLOOR["/64"] if "/64" in FLOOR else None,
        per_submit_over_fsync_each=total / N / (FLOOR["/1"] / N_PER_ACK) if "/1" in FLOOR else None,
    )
    assert len(fed.buffer) == N
    if durable:
        assert fed._log is not None and fed._log.integrity() == "ok"
        fed._log.close()


def test_submits_eight_threads(benchmark: Any, tmp_path: Path) -> None:
    fed = _federation(tmp_path, N_THREADED, durable=True)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            _submit_all(fed, range(t, N_THREADED, 8))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def run() -> None:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    start = time.perf_counter()
    _pedantic(benchmark, run)
    total = time.perf_counter() - start
    assert not errors and len(fed.buffer) == N_THREADED
    per = total / N_THREADED
    floor = FLOOR["/64"] / N if "/64" in FLOOR else None
    benchmark.extra_info.update(
        n=N_THREADED,
        total_s=total,
        submits_per_s=1 / per,
        per_submit_over_floor_64=per / floor if floor else None,
    )
    assert fed._log is not None
    fed._log.close()
