"""Privacy kernels: secure noise against numpy's generator, the exact discrete Gaussian,
clipping against the ``np.mean(axis=0)`` floor. Every group holds its baseline, same run.

Groups (2 threads by default, ``HIERFED_BENCH_THREADS``):

- ``normal 1e7 float32`` / ``float64``: ``NoiseGenerator().standard_normal`` (secure: keyed
  from os.urandom) against ``np.random.default_rng().standard_normal`` (PCG64, not secure) and,
  when torch is installed, ``torch.normal`` (Opacus draws its noise this way).
- ``keystream 1e7 uint32``: raw ChaCha20 words against ``default_rng().integers``.
- ``discrete_gaussian 1e6 sigma=3``: exact CKS samples against rounding numpy normals (not
  exact; a speed reference only); ``samples_per_s`` is recorded.
- ``clip n=50 d=1e6 float32``: ``clip_by_l2_norm`` (new output, and into a preallocated
  ``out=``) against the floor ``np.mean(X, axis=0)``, the new-output floor ``X.copy()`` and
  the usual numpy clipping.
- ``walsh_hadamard 2^20 float64``: the distributed discrete Gaussian's rotation kernel (in
  place) against the floor (a copy of the vector) and numpy's real FFT (the same O(n log n)).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from bench import peers
from hierfed import _backend
from hierfed.privacy import NoiseGenerator, clip_by_l2_norm

N_NOISE = 10**7
N_DG = 10**6
DG_SIGMA = 3.0
CLIP = (50, 10**6)
CLIP_NORM = 500.0


def _rounds(call: Callable[[], Any]) -> int:
    start = time.perf_counter()
    call()
    return max(5, min(30, int(1.0 / max(time.perf_counter() - start, 1e-4))))


def _run(benchmark: Any, group: str, name: str, call: Callable[[], Any], **info: Any) -> Any:
    benchmark.group = group
    benchmark.extra_info.update(impl=name, threads=peers.threads(), load1=os.getloadavg()[0])
    benchmark.extra_info.update(info)
    rounds = _rounds(call)
    return benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)


def _backend_params() -> list[Any]:
    return [pytest.param(b, id=f"hierfed-{b}") for b in peers.bench_backends()]


def _need(backend: str) -> None:
    if backend not in _backend.available_backends():
        pytest.skip(f"hierfed backend {backend!r} is not available")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", _backend_params())
def test_normal_hierfed(benchmark: Any, backend: str, dtype: str) -> None:
    _need(backend)
    with _backend.using(backend):
        gen = NoiseGenerator()
        out = np.empty(N_NOISE, dtype)
        _run(
            benchmark,
            f"normal 1e7 {dtype}",
            f"hierfed-{backend}",
            lambda: gen.standard_normal(out=out),
        )
    assert abs(float(out.std()) - 1) < 1e-3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_numpy(benchmark: Any, dtype: str) -> None:
    rng = np.random.default_rng()
    out = np.empty(N_NOISE, dtype)
    _run(
        benchmark,
        f"normal 1e7 {dtype}",
        "np.default_rng",
        lambda: rng.standard_normal(N_NOISE, dtype=dtype, out=out),
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_torch(benchmark: Any, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(peers.threads())
    gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    out = torch.empty(N_NOISE, dtype=tdtype)
    _run(
        benchmark,
        f"normal 1e7 {dtype}",
        "torch.normal",
        lambda: torch.normal(0.0, 1.0, (N_NOISE,), generator=gen, out=out),
    )


@pytest.mark.parametrize("backend", _backend_params())
def test_keystream_hierfed(benchmark: Any, backend: str) -> None:
    _need(backend)
    with _backend.using(backend):
        gen = NoiseGenerator()
        _run(
            benchmark,
            "keystream 1e7 uint32",
            f"hierfed-{backend}",
            lambda: gen.random_uint32(N_NOISE),
        )


def test_keystream_numpy(benchmark: Any) -> None:
    rng = np.random.default_rng()
    _run(
        benchmark,
        "keystream 1e7 uint32",
        "np.default_rng.integers",
        lambda: rng.integers(0, 2**32, N_NOISE, dtype=np.uint32),
    )


@pytest.mark.parametrize("backend", _backend_params())
def test_discrete_gaussian_hierfed(benchmark: Any, backend: str) -> None:
    _need(backend)
    with _backend.using(backend):
        gen = NoiseGenerator()
        gen.discrete_gaussian(DG_SIGMA, 1000)  # compile (numba)
        x = _run(
            benchmark,
            "discrete_gaussian 1e6 sigma=3",
            f"hierfed-{backend}",
            lambda: gen.discrete_gaussian(DG_SIGMA, N_DG),
        )
    benchmark.extra_info["samples_per_s"] = N_DG / benchmark.stats.stats.min
    assert abs(float(x.std()) - DG_SIGMA) < 0.02


def test_discrete_gaussian_numpy_rounded(benchmark: Any) -> None:
    rng = np.random.default_rng()
    _run(
        benchmark,
        "discrete_gaussian 1e6 sigma=3",
        "np.rint(normal) (not exact)",
        lambda: np.rint(rng.normal(0.0, DG_SIGMA, N_DG)).astype(np.int64),
    )
    benchmark.extra_info["samples_per_s"] = N_DG / benchmark.stats.stats.min


@pytest.fixture(scope="module")
def clip_input() -> np.ndarray:
    return np.random.default_rng(peers.SEED).standard_normal(CLIP, dtype=np.float32)


def test_clip_floor(benchmark: Any, clip_input: np.ndarray) -> None:
    _run(benchmark, "clip n=50 d=1e6 float32", "np.mean (floor)", lambda: clip_input.mean(axis=0))


def test_clip_copy_floor(benchmark: Any, clip_input: np.ndarray) -> None:
    """The floor of any clipping that returns a new array: one read, one freshly faulted write."""
    _run(benchmark, "clip n=50 d=1e6 float32", "X.copy() (new-output floor)", clip_input.copy)


def test_clip_numpy(benchmark: Any, clip_input: np.ndarray) -> None:
    def clip() -> np.ndarray:
        norms = np.linalg.norm(clip_input, axis=1)
        return clip_input * np.minimum(1.0, CLIP_NORM / norms)[:, None]

    _run(benchmark, "clip n=50 d=1e6 float32", "numpy norm+scale", clip)


@pytest.mark.parametrize("into", [False, True], ids=["new", "out"])
@pytest.mark.parametrize("backend", _backend_params())
def test_clip_hierfed(benchmark: Any, clip_input: np.ndarray, backend: str, into: bool) -> None:
    _need(backend)
    out = np.empty_like(clip_input) if into else None
    with _backend.using(backend):
        res = _run(
            benchmark,
            "clip n=50 d=1e6 float32",
            f"hierfed-{backend}" + ("-out" if into else ""),
            lambda: clip_by_l2_norm(clip_input, CLIP_NORM, out=out),
        )
    norms = np.linalg.norm(clip_input.astype(np.float64), axis=1)
    want = clip_input * np.minimum(1.0, CLIP_NORM / norms)[:, None]
    np.testing.assert_allclose(res, want, rtol=1e-6)


HADAMARD = 1 << 20


@pytest.fixture(scope="module")
def hadamard_input() -> np.ndarray:
    return np.random.default_rng(peers.SEED).standard_normal(HADAMARD)


@pytest.mark.parametrize("backend", _backend_params())
def test_walsh_hadamard_hierfed(benchmark: Any, backend: str, hadamard_input: np.ndarray) -> None:
    _need(backend)
    with _backend.using(backend):
        kernel = _backend.kernels().walsh_hadamard
        x = hadamard_input.copy()
        kernel(x, peers.threads())  # compile (numba)
        _run(
            benchmark,
            "walsh_hadamard 2^20 float64",
            f"hierfed-{backend}",
            lambda: kernel(x, peers.threads()),
        )


def test_walsh_hadamard_floor(benchmark: Any, hadamard_input: np.ndarray) -> None:
    """The floor: one read and one write of the vector (a copy into a preallocated array)."""
    out = np.empty_like(hadamard_input)
    _run(
        benchmark,
        "walsh_hadamard 2^20 float64",
        "copy (floor)",
        lambda: np.copyto(out, hadamard_input),
    )


def test_walsh_hadamard_numpy_fft(benchmark: Any, hadamard_input: np.ndarray) -> None:
    """A peer of the same O(n log n) shape: numpy's real FFT of the vector."""
    _run(
        benchmark,
        "walsh_hadamard 2^20 float64",
        "np.fft.rfft (peer)",
        lambda: np.fft.rfft(hadamard_input),
    )
