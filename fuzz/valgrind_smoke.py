"""A small run of every compiled kernel family, for valgrind memcheck (fuzz/README.md).

Each call runs on the compiled core and is checked against the numpy reference; the script
exits non-zero on any difference. Inputs are small: memcheck runs some 50x slower.
Run: ``PYTHONMALLOC=malloc HIERFED_SIMD=avx2 valgrind --error-exitcode=99 python
fuzz/valgrind_smoke.py`` (valgrind 3.19 does not decode AVX-512).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

import hierfed
from hierfed import _backend, privacy
from hierfed.secagg.masks import apply_masks


def calls() -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 300)).astype(np.float32)
    y = x.astype(np.float64)
    models = [[r[:100].reshape(4, 25), r[100:]] for r in y]
    w = np.linspace(0.5, 1.5, 9)

    def masks() -> Any:
        out = np.arange(700, dtype=np.uint32)
        apply_masks([bytes([3]) * 32, bytes([4]) * 32], [False, True], out)
        return out

    def noise() -> Any:
        gen = privacy.NoiseGenerator(1, secure=False)
        z = y[:2].copy()
        privacy.add_gaussian_noise(z, 1.0, gen)
        return z, gen.laplace(size=300, dtype=np.float32), gen.discrete_gaussian(2.5, 20)

    return {
        "mean": lambda: hierfed.mean(list(x), weights=w),
        "trimmed_mean": lambda: hierfed.trimmed_mean(models, 0.2),
        "median": lambda: hierfed.median(x),
        "weighted_median": lambda: hierfed.median(y, weights=w),
        "krum": lambda: hierfed.krum(x, 2),
        "bulyan": lambda: hierfed.bulyan(y, 1, weights=w),
        "nnm": lambda: hierfed.nearest_neighbor_mixing(x, 2),
        "geometric_median": lambda: hierfed.geometric_median(models, max_iter=3),
        "centered_clipping": lambda: hierfed.centered_clipping(x, np.zeros(300), 2.0),
        "l2_norms": lambda: privacy.l2_norms(models),
        "clip": lambda: privacy.clip_by_l2_norm(x, 3.0),
        "keystream": lambda: privacy.chacha20_keystream(bytes(32), bytes(12), 1, 1000),
        "noise": noise,
        "masks": masks,
        "secure_sum": lambda: (
            hierfed.secure_sum({i: np.arange(5, dtype=np.uint32) * i for i in range(4)}).total
        ),
    }


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_close(p, q) for p, q in zip(a, b, strict=True))
    return bool(np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-5))


def main() -> int:
    assert hierfed.backend() == "cpp", hierfed.backend()
    bad = 0
    for name, call in calls().items():
        got = call()
        with _backend.using("numpy"):
            want = call()
        ok = _close(got, want)
        bad += not ok
        print(f"{name:18s} {'ok' if ok else 'DIFFERS'}", flush=True)
    print(f"{len(calls())} kernels, {bad} differ; simd {_backend.kernels().simd()}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
