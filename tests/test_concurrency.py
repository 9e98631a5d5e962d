"""Thread safety: every kernel family called from 8 Python threads at once (the compiled core
releases the GIL, the numba kernels are ``nogil``) gives exactly the serial results, on every
backend; changing ``hierfed.set_num_threads`` while calls run is safe and changes nothing
(results never depend on the thread count)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from threads import run_in_threads

import hierfed
from hierfed import privacy
from hierfed.secagg.masks import apply_masks

N_THREADS = 8


def _inputs(dtype: Any) -> np.ndarray:
    # 11 x 6000 = 66000 values: above the compiled kernels' threading threshold (2^16)
    return np.random.default_rng(5).standard_normal((11, 6000)).astype(dtype)


def _calls(x: np.ndarray) -> dict[str, Callable[[], Any]]:
    """One call per kernel family (and per coordinate-wise rule), each deterministic."""
    rows = list(x)
    models = [[r[:1000].reshape(10, 100), r[1000:]] for r in x]
    w = np.linspace(0.5, 2.0, x.shape[0])

    def noise() -> Any:
        y = x[:3].astype(np.float64)
        privacy.add_gaussian_noise(y, 0.5, privacy.NoiseGenerator(11, secure=False))
        gen = privacy.NoiseGenerator(12, secure=False)
        return y, gen.laplace(size=5000), gen.uniform(size=777, dtype=np.float32)

    def masks() -> Any:
        out = np.arange(20000, dtype=np.uint32)
        apply_masks([bytes([k]) * 32 for k in range(5)], [False, True, False, True, True], out)
        return out

    return {
        "mean": lambda: hierfed.mean(rows, weights=w),
        "trimmed_mean": lambda: hierfed.trimmed_mean(models, 0.2),
        "median": lambda: hierfed.median(x, weights=w),
        "pairwise": lambda: hierfed.pairwise_sq_distances(x),
        "krum": lambda: hierfed.aggregate(x, "krum", f=2).aggregate,
        "bulyan": lambda: hierfed.bulyan(x, f=2),
        "nnm": lambda: hierfed.nearest_neighbor_mixing(x, 2),
        "geometric_median": lambda: hierfed.geometric_median(rows, max_iter=4),
        "centered_clipping": lambda: hierfed.centered_clipping(x, np.zeros(6000), 5.0, 2),
        "l2_norms": lambda: privacy.l2_norms(models),
        "clip": lambda: privacy.clip_by_l2_norm(x, 30.0),
        "noise": noise,
        "keystream": lambda: privacy.chacha20_keystream(bytes(32), bytes(12), 7, 30000),
        "discrete_gaussian": lambda: privacy.NoiseGenerator(3, secure=False).discrete_gaussian(
            4.0, 200
        ),
        "masks": masks,
    }


def _equal(got: Any, want: Any, where: str) -> None:
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for g, w in zip(got, want, strict=True):
            _equal(g, w, where)
    else:
        np.testing.assert_array_equal(got, want, err_msg=where, strict=True)


def _hammer(
    calls: dict[str, Callable[[], Any]], rounds: int, during: Callable[[], None] | None = None
) -> list[tuple[str, Any]]:
    """Every call ``rounds`` times from each of 8 threads (each in its own order)."""
    results: list[list[tuple[str, Any]]] = [[] for _ in range(N_THREADS)]
    names = list(calls)

    def worker(t: int) -> None:
        order = np.random.default_rng(t).permutation(len(names))
        for _ in range(rounds):
            for i in order:
                results[t].append((names[i], calls[names[i]]()))

    run_in_threads(worker, N_THREADS, during)
    return [item for per in results for item in per]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eight_threads_give_the_serial_results(backend: str, dtype: Any) -> None:
    calls = _calls(_inputs(dtype))
    serial = {name: call() for name, call in calls.items()}
    got = _hammer(calls, rounds=2)
    assert len(got) == N_THREADS * 2 * len(calls)
    for name, value in got:
        _equal(value, serial[name], f"{name} from a thread differs from the serial call")


def test_set_num_threads_while_calls_run(backend: str, restore_threads: None) -> None:
    calls = _calls(_inputs(np.float32))
    hierfed.set_num_threads(1)
    serial = {name: call() for name, call in calls.items()}
    counts = iter(range(10**9))

    def churn() -> None:
        hierfed.set_num_threads(1 + next(counts) % 4)

    got = _hammer(calls, rounds=1, during=churn)
    assert next(counts) > 1  # the thread count really changed while the calls ran
    for name, value in got:
        _equal(value, serial[name], f"{name} under a changing thread count")
