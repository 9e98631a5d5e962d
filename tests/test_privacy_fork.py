"""Fork safety of NoiseGenerator: after os.fork() (or in a fork-based multiprocessing pool)
secure generators draw independently of their parent and siblings; seeded ones repeat the
parent's stream, as documented."""

from __future__ import annotations

import multiprocessing
import os
import sys

import numpy as np
import pytest
from forked import in_forked_child

from hierfed.privacy import NoiseGenerator
from hierfed.privacy.rng import fork_generation

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or sys.platform == "darwin", reason="needs os.fork (POSIX, not macOS)"
)

Draws = dict[str, bytes]


@pytest.fixture
def fork_backend(backend: str) -> str:
    """Each backend but numba's: its GNU OpenMP threading layer terminates a forked child that
    runs a parallel kernel ("fork() called from a process already using GNU OpenMP"), whatever
    the key. The re-keying is the same Python code on every backend."""
    if backend == "numba":
        pytest.skip("numba's OpenMP layer refuses to run kernels in a forked child")
    return backend


def _draws(gen: NoiseGenerator, pre_spawned: NoiseGenerator) -> Draws:
    """The next draws of every kind, as bytes (compared exactly)."""
    kid = gen.spawn(1)[0]
    return {
        "uniform": np.asarray(gen.uniform(size=64)).tobytes(),
        "normal": np.asarray(gen.normal(0.0, 3.0, size=64, dtype=np.float32)).tobytes(),
        "random_uint32": np.asarray(gen.random_uint32(64)).tobytes(),
        "discrete_gaussian": np.asarray(gen.discrete_gaussian(1e6, size=64)).tobytes(),
        "spawn": np.asarray(kid.uniform(size=16)).tobytes(),
        "spawned before the fork": np.asarray(pre_spawned.uniform(size=16)).tobytes(),
    }


def _pair(secure: bool) -> tuple[NoiseGenerator, NoiseGenerator]:
    gen = NoiseGenerator() if secure else NoiseGenerator(7, secure=False)
    gen.uniform(size=10)  # a stream already in use
    return gen, gen.spawn(1)[0]


def test_os_fork_rekeys_secure_generators(fork_backend: str) -> None:
    gen, pre = _pair(secure=True)
    children = [in_forked_child(lambda: _draws(gen, pre)) for _ in range(2)]
    mine = _draws(gen, pre)
    for kind, value in mine.items():
        seen = {value, *(c[kind] for c in children)}  # type: ignore[index]
        assert len(seen) == 3, f"{kind}: a forked child drew the parent's secure noise"


def test_os_fork_keeps_seeded_streams(fork_backend: str) -> None:
    gen, pre = _pair(secure=False)
    child = in_forked_child(lambda: _draws(gen, pre))
    assert child == _draws(gen, pre)  # documented: like numpy, the child repeats the stream


def test_fork_generation_grows_in_each_child() -> None:
    here = fork_generation()
    assert in_forked_child(fork_generation) == here + 1
    assert in_forked_child(lambda: in_forked_child(fork_generation)) == here + 2
    assert fork_generation() == here


def test_child_lock_is_fresh_even_if_held_at_fork(fork_backend: str) -> None:
    """A thread of the parent holding the lock at the fork does not exist in the child: the
    child must not wait for it forever."""
    gen = NoiseGenerator()
    with gen._lock:  # held at the fork, as by another thread mid-call
        size = in_forked_child(lambda: np.asarray(gen.uniform(size=8)).size)
    assert size == 8


_POOL_GEN: dict[str, NoiseGenerator] = {}


def _pool_task(secure: bool) -> bytes:
    gen = _POOL_GEN["secure" if secure else "seeded"]
    return np.asarray(gen.uniform(size=32)).tobytes() + gen.random_uint32(8).tobytes()


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "seeded"])
def test_fork_pool_workers(fork_backend: str, secure: bool) -> None:
    _POOL_GEN["secure" if secure else "seeded"] = _pair(secure)[0]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2, maxtasksperchild=1) as pool:  # each task: a fresh fork of this state
        got = pool.map(_pool_task, [secure] * 4, chunksize=1)
        # close and join before the with's terminate(): terminating a maxtasksperchild pool
        # can race its worker handler forking a replacement, which then waits forever
        pool.close()
        pool.join()
    mine = _pool_task(secure)
    if secure:
        assert len({mine, *got}) == 5, "pool workers drew the parent's (or each other's) noise"
    else:
        assert set(got) == {mine}
