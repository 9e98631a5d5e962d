"""Shared machinery of the benchmark suite: threads, one cached input, adaptive rounds."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# numba's OpenMP workers spin for a while after each parallel call; in a suite that times the
# C++ core right after numba, those spinning threads would steal the core's second CPU. Set
# before any numba kernel starts its thread pool (a user runs one backend, not both).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import hierfed
from bench import memory, peers
from hierfed import _backend

SLOW_S = 0.3  # calls at least this slow get SLOW_ROUNDS rounds
SLOW_ROUNDS = 3
TARGET_S = 0.6  # faster calls get about this much work per entry...
MIN_ROUNDS, MAX_ROUNDS = 5, 100  # ...within these bounds


def _last_level_cache_bytes() -> int:
    path = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    try:
        text = path.read_text().strip().upper()
        return int(text.rstrip("KMG")) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[text[-1]]
    except (OSError, ValueError, KeyError, IndexError):
        return 32 << 20


LLC_BYTES = _last_level_cache_bytes()
_data: dict[peers.Config, peers.Data] = {}


def pytest_configure(config: Any) -> None:
    """Fix hierfed's thread count for the whole run."""
    hierfed.set_num_threads(peers.threads())


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    """Record which hierfed backends existed and the thread count."""
    machine_info["hierfed"] = {
        "version": hierfed.__version__,
        "available_backends": list(_backend.available_backends()),
        "benched_backends": list(peers.bench_backends()),
        "threads": hierfed.get_num_threads(),
        "llc_bytes": LLC_BYTES,
        "load_at_start": os.getloadavg(),
        "numpy": np.__version__,
    }


def _data_for(cfg: peers.Config) -> peers.Data:
    if cfg not in _data:
        _data.clear()
        gc.collect()
        _data[cfg] = peers.Data(cfg)
    return _data[cfg]


@pytest.fixture(scope="session")
def data_for() -> Iterator[Callable[[peers.Config], peers.Data]]:
    """``data_for(cfg)``: the input of ``cfg``; the previous one is freed first (one at a time)."""
    yield _data_for
    _data.clear()


_scratch: list[np.ndarray] = []


def flush_cache() -> None:
    """Evict the input from the CPU caches by reading twice the last-level cache size.

    Read only, so the lines it leaves are clean and cost the next call no write-backs.
    """
    if not _scratch:
        _scratch.append(np.ones(2 * LLC_BYTES // 8, dtype=np.uint64))
    _scratch[0].sum()


def needs_flush(cfg: peers.Config) -> bool:
    """Inputs that could stay cache-resident between rounds are timed cold (as fresh updates)."""
    return cfg.input_bytes < 4 * LLC_BYTES and not peers.env_flag("HIERFED_BENCH_HOT_CACHE")


def rounds_for(seconds: float) -> int:
    """Rounds for a round (setup included) of ``seconds``: few for slow peers, more for fast."""
    if seconds >= SLOW_S:
        return SLOW_ROUNDS
    return int(min(MAX_ROUNDS, max(MIN_ROUNDS, TARGET_S / max(seconds, 1e-6))))


@pytest.fixture
def run_timed(benchmark: Any) -> Callable[[Callable[[], Any], peers.Config], Any]:
    """``run_timed(call, cfg)``: one untimed warm-up call (it also sizes the rounds), then
    the timed rounds, each after a cache flush where ``needs_flush(cfg)``.

    Returns the warm-up call's answer, for the correctness check.
    """

    def run(call: Callable[[], Any], cfg: peers.Config) -> Any:
        cold = needs_flush(cfg)
        setup = flush_cache if cold else None
        start = time.perf_counter()
        if setup:
            setup()
        out = call()
        rounds = rounds_for(time.perf_counter() - start)
        benchmark.extra_info.update(rounds=rounds, cold_cache=cold, load1=os.getloadavg()[0])
        benchmark.pedantic(call, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
        return out

    return run


@pytest.fixture
def time_case(
    benchmark: Any,
    data_for: Callable[[peers.Config], peers.Data],
    run_timed: Callable[[Callable[[], Any], peers.Config], Any],
) -> Callable[[peers.Config, str, peers.Impl], None]:
    """``time_case(cfg, op, impl)``: one entry of a group, shared by the suites.

    Skips an implementation that cannot run (or would take far too long) here; times it on
    ``cfg``'s input after a warm-up; records size, threads and (where ``cfg.memory``) peak
    extra memory; checks its answer against the reference (the Gram floor has none; an
    unchecked peer's error is only recorded).
    """

    def run(cfg: peers.Config, op: str, impl: peers.Impl) -> None:
        reason = impl.unavailable() or impl.too_slow(cfg)
        if reason:
            pytest.skip(reason)
        benchmark.group = cfg.group(op)
        benchmark.extra_info.update(op=op, threads=peers.threads(), **cfg.info(), **impl.info())
        peers.warm_up(op, impl, cfg)
        data = data_for(cfg)
        with impl.active():
            out = run_timed(impl.make(data), cfg)
        if cfg.memory and memory.enabled():
            benchmark.extra_info.update(memory.measure(cfg, op, impl.name))
        if impl.computes == peers.GRAM:
            return  # the Gram matrix: a cost baseline, not an answer
        err = peers.max_abs_err(out, impl.reference(op, data), op)
        benchmark.extra_info["max_abs_err"] = err
        ok = not impl.checked or err <= peers.tolerance(cfg.dtype, op)
        assert ok, f"{impl.name} differs from the reference by {err}"

    return run
