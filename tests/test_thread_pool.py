"""The compiled core's kept worker threads (cpp/src/thread_pool.cpp): many back-to-back
threaded calls, and a forked child (which inherits none of the parent's workers) that runs a
threaded kernel, give the single-thread results exactly. Python threads calling at once are
covered by tests/test_concurrency.py."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from forked import in_forked_child

import hierfed
from hierfed import _backend


@pytest.fixture
def cpp(backend: str) -> None:
    """The cpp run only: the pool is the compiled core's."""
    if backend != "cpp":
        pytest.skip("the worker pool belongs to the compiled core")


def _x() -> np.ndarray:
    # 20 x 20000 values: threaded in every kernel family (thresholds 2^15 and 2^16 values)
    return np.random.default_rng(3).standard_normal((20, 20000)).astype(np.float32)


def _results(x: np.ndarray) -> list[np.ndarray]:
    return [
        hierfed.trimmed_mean(x, 0.1),
        hierfed.median(x),
        hierfed.l2_norms(x),
        hierfed.clip_by_l2_norm(x, 50.0),
        hierfed.pairwise_sq_distances(x),
    ]


def _serial(x: np.ndarray) -> list[np.ndarray]:
    saved = _backend.get_num_threads()
    hierfed.set_num_threads(1)
    try:
        return _results(x)
    finally:
        hierfed.set_num_threads(saved)


def test_back_to_back_threaded_calls_match_one_thread(cpp: None, restore_threads: None) -> None:
    x = _x()
    want = _serial(x)
    hierfed.set_num_threads(2)
    for k in range(50):  # workers reused while spinning, and (odd k) after they slept
        if k % 2:
            time.sleep(0.002)  # 10x the workers' 200 us spin
        for got, ref in zip(_results(x), want, strict=True):
            assert np.array_equal(got, ref)


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_forked_child_runs_threaded_kernels(cpp: None, restore_threads: None) -> None:
    x = _x()
    want = _serial(x)
    hierfed.set_num_threads(2)
    _results(x)  # the parent's workers exist (and may be spinning) at the fork
    got = in_forked_child(lambda: _results(x))
    assert isinstance(got, list)
    for g, ref in zip(got, want, strict=True):
        assert np.array_equal(g, ref)
