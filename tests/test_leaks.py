"""Leaks: batches of calls of every kernel (small inputs, and for the compiled core the calls its
argument checks refuse) leave the resident set flat after a warm-up, on every backend.

A leak grows the resident set in *every* batch, by (bytes lost per call) x (calls per batch);
the allocator's one-off growth (a new arena for a worker thread, a heap trimmed late) shows in
one batch and not the next. So the test takes the smallest growth over three batches: with
10,000 calls per batch and 64 KB of slack it catches anything losing more than 7 bytes a call
(one kept `object()` a call, 16 bytes, grows each batch by 160 KB here; a kept array, a buffer
never freed or an exception path that skips a release, by far more). That is the compiled
core's run. The twins hold no memory of their own outside Python's and numba's reference
counting, and each of their calls costs far more than a binding's (numba's thread launch, the
reference's numpy calls), so they run fewer: the numba twin 3,000 calls a batch (it catches
more than 22 bytes a call: a kept tuple, 56 bytes and up, or any array), the numpy reference
1,000 (more than 65 bytes a call: any kept numpy array, 112 bytes and up).

Not run under AddressSanitizer (fuzz/asan.sh): its quarantine holds freed memory on purpose.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hierfed import _backend
from hierfed.privacy import discrete_gaussian_parameters

CALLS = {"cpp": 10_000, "numba": 3_000, "numpy": 1_000}  # per batch
BATCHES = 3
WARM_UP = 1_000
SLACK = 64 << 10  # bytes

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc"),
    pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="ASan quarantine"),
]


def rss() -> int:
    """Resident set size of this process in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _kernel_calls(k: Any) -> dict[str, Callable[[], Any]]:
    """One small call of every kernel of backend module ``k``."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    segs = [list(x), [r[:7].copy() for r in x]]
    outs = [np.empty(40, np.float32), np.empty(7, np.float32)]
    w = np.linspace(0.25, 0.75, 5)
    key, nonce = np.arange(8, dtype=np.uint32), np.zeros(3, np.uint32)
    t, alpha, beta, denom, ymax = discrete_gaussian_parameters(3.0)
    clipped = [
        [np.empty(40, np.float32) for _ in range(5)],
        [np.empty(7, np.float32) for _ in range(5)],
    ]
    words, ints, floats = np.empty(100, np.uint32), np.empty(4, np.int64), np.empty(100)
    d55, d5 = np.empty((5, 5)), np.empty(5)
    mixed = [np.empty((5, 40), np.float32), np.empty((5, 7), np.float32)]
    bucketed = [np.empty((3, 40), np.float32), np.empty((3, 7), np.float32)]
    order = np.array([3, 1, 4, 0, 2], np.int64)
    return {
        "mean": lambda: k.mean(segs, outs, w, 2),
        "trimmed_mean": lambda: k.trimmed_mean(segs, outs, 1, None, 2),
        "median": lambda: k.median(segs, outs, w, 2),
        "mean_around_median": lambda: k.mean_around_median(segs, outs, 2, None, 2),
        "pairwise_sq_distances": lambda: k.pairwise_sq_distances(segs, d55, 128, 2, 2),
        "sq_distances_to": lambda: k.sq_distances_to(segs, outs, d5, 2),
        "mix_rows": lambda: k.mix_rows(segs, np.ones((5, 5)), mixed, 2),
        "bucket_means": lambda: k.bucket_means(segs, order, 2, bucketed, 2),
        "chacha20_keystream": lambda: k.chacha20_keystream(key, nonce, 5, words, 2),
        "chacha20_noise": lambda: k.chacha20_noise(key, nonce, 0, floats, 1, 0.0, 1.0, True, 2),
        "discrete_gaussian": lambda: k.discrete_gaussian(
            key, ints, t, alpha, beta, denom, ymax, 1024, 2
        ),
        "l2_sq_norms": lambda: k.l2_sq_norms(segs, d5, 2),
        "clip_by_l2": lambda: k.clip_by_l2(segs, clipped, 1.0, 1e-6, d5, 2),
        "apply_masks": lambda: k.apply_masks(
            np.arange(16, dtype=np.uint32), np.array([0, 1], np.uint8), words, 2
        ),
        "walsh_hadamard": lambda: k.walsh_hadamard(np.ones(1 << 13), 2),
    }


def _refused_calls(k: Any) -> dict[str, Callable[[], Any]]:
    """Calls the compiled bindings refuse after building part of their state."""
    x = [np.ones(40, np.float32) for _ in range(5)]
    short = [np.empty(40, np.float32)]

    def refused(call: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                call()
            except (ValueError, TypeError):
                return
            raise AssertionError("the call should have been refused")

        return run

    return {
        "refused_mean": refused(
            lambda: k.mean([[*x[:4], np.ones(39, np.float32)]], short, None, 1)
        ),
        "refused_weights": refused(lambda: k.median([x], short, np.ones(4), 1)),
        "refused_pairwise": refused(
            lambda: k.pairwise_sq_distances([x], np.empty((4, 4)), 128, 1, 1)
        ),
        "refused_clip": refused(
            lambda: k.clip_by_l2([x], [[y[1:] for y in x]], 1.0, 0.0, np.empty(5), 1)
        ),
        "refused_noise": refused(
            lambda: k.chacha20_noise(
                np.zeros(8, np.uint32), np.zeros(2, np.uint32), 0, short[0], 1, 0.0, 1.0, False, 1
            )
        ),
    }


def _names() -> list[str]:
    names = list(_kernel_calls(_backend._load("numpy")))
    return names + list(_refused_calls(None))


@pytest.mark.parametrize("name", _names())
def test_repeated_calls_leave_rss_flat(backend: str, name: str) -> None:
    k = _backend.kernels()
    calls = _kernel_calls(k)
    if name.startswith("refused_"):
        if backend != "cpp":
            pytest.skip("argument checks of the compiled bindings")
        calls = _refused_calls(k)
    call = calls[name]
    for _ in range(WARM_UP):
        call()
    grown = []
    # What exists before the batches stays put (gc.freeze): the collections then walk only the
    # batches' objects, seconds faster late in a long run, and free the same ones.
    gc.collect()
    gc.freeze()
    for _ in range(BATCHES):
        gc.collect()
        before = rss()
        for _ in range(CALLS[backend]):
            call()
        gc.collect()
        grown.append(rss() - before)
    assert min(grown) <= SLACK, (
        f"{name} on {backend}: RSS grew by {grown} bytes in each batch of {CALLS[backend]} calls"
    )
