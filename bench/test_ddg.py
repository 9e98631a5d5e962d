"""The distributed discrete Gaussian's encoding and decoding against today's SecAgg encoding
of floats (``secagg.quantize``) and the central-DP noise of one vector. Every group holds its
baselines, same run (2 threads by default, ``HIERFED_BENCH_THREADS``).

Groups (d = 2^20 float64 coordinates, one party):

- ``ddg encode d=2^20``: ``DistributedDiscreteGaussian.encode`` (clip, rotate, scale,
  conditional rounding, discrete Gaussian share, mod 2^bits), unrotated and rotated, against
  ``secagg.quantize.encode`` (per-coordinate clip and stochastic rounding, no noise) and
  ``clip_by_l2_norm`` + ``NoiseGenerator.normal`` (central DP's float noise on one vector).
- ``ddg decode d=2^20``: ``DistributedDiscreteGaussian.decode`` (rotated and not) against
  ``secagg.quantize.decode_sum``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from bench import peers
from hierfed.privacy import DistributedDiscreteGaussian, NoiseGenerator, clip_by_l2_norm
from hierfed.secagg import quantize

DIM = 1 << 20
PARTIES = 8


def _run(benchmark: Any, group: str, name: str, call: Any) -> Any:
    benchmark.group = group
    benchmark.extra_info.update(impl=name, threads=peers.threads(), load1=os.getloadavg()[0])
    return benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)


def _vector() -> np.ndarray[Any, np.dtype[np.float64]]:
    x = np.random.default_rng(0).standard_normal(DIM)
    return x / np.linalg.norm(x)  # norm 1: the clip below changes nothing


def _mechanism(rotate: bool) -> DistributedDiscreteGaussian:
    return DistributedDiscreteGaussian(
        clip=1.0, gamma=1e-4, sigma=1.0, n_min=PARTIES, dim=DIM, bits=24, rotate=rotate
    )


@pytest.mark.parametrize("rotate", [False, True], ids=["ddg", "ddg rotated"])
def test_encode_ddg(benchmark: Any, rotate: bool) -> None:
    x, gen, mech = _vector(), NoiseGenerator(), _mechanism(rotate)
    seed = b"round" if rotate else None
    name = "ddg rotated" if rotate else "ddg"
    words = _run(benchmark, "ddg encode d=2^20", name, lambda: mech.encode(x, gen, seed))
    assert words.dtype == np.uint32 and words.size == DIM


def test_encode_secagg_quantize(benchmark: Any) -> None:
    x, gen = _vector(), NoiseGenerator()
    words = _run(
        benchmark,
        "ddg encode d=2^20",
        "secagg.quantize (no noise)",
        lambda: quantize.encode(x, 1.0, 24, gen),
    )
    assert words.size == DIM


def test_encode_central_float_noise(benchmark: Any) -> None:
    x, gen = _vector(), NoiseGenerator()

    def central() -> Any:
        clipped = clip_by_l2_norm(x[None, :], 1.0)[0]
        return clipped + gen.normal(0.0, 1.0, DIM)

    out = _run(benchmark, "ddg encode d=2^20", "clip + float normal", central)
    assert out.size == DIM


@pytest.mark.parametrize("rotate", [False, True], ids=["ddg", "ddg rotated"])
def test_decode_ddg(benchmark: Any, rotate: bool) -> None:
    total = np.random.default_rng(1).integers(0, 1 << 24, DIM, dtype=np.uint32)
    mech = _mechanism(rotate)
    seed = b"round" if rotate else None
    name = "ddg rotated" if rotate else "ddg"
    out = _run(
        benchmark,
        "ddg decode d=2^20",
        name,
        lambda: mech.decode(total, seed, survivors=PARTIES),
    )
    assert out.size == DIM


def test_decode_secagg_quantize(benchmark: Any) -> None:
    total = np.random.default_rng(1).integers(0, 1 << 24, DIM, dtype=np.uint32)
    out = _run(
        benchmark,
        "ddg decode d=2^20",
        "secagg.quantize.decode_sum",
        lambda: quantize.decode_sum(total, PARTIES, 1.0, 24),
    )
    assert out.size == DIM
