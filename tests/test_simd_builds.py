"""Every instruction-set build of the compiled core (AVX-512, AVX2, baseline) agrees with the
numpy reference: each runs in a subprocess with HIERFED_SIMD capping the dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import hierfed._backend as backend

pytestmark = pytest.mark.skipif(
    "cpp" not in backend.available_backends(), reason="the compiled core is not built"
)

CHECK = textwrap.dedent(
    """
    import numpy as np
    import hierfed._core as core
    import hierfed._kernels_numpy as ref

    rng = np.random.default_rng(7)
    print(core.simd())
    for dtype in (np.float32, np.float64):
        for n in (1, 2, 3, 5, 16, 17, 33, 50):
            for d in (1, 15, 16, 17, 131):
                X = rng.integers(-3, 4, (n, d)).astype(dtype) if n % 2 else (
                    rng.standard_normal((n, d)).astype(dtype))
                rows = [list(X)]
                weights = (None, rng.random(n) + 0.05)
                for w in weights:
                    jobs = [("mean", ()), ("median", ())]
                    jobs += [("trimmed_mean", (k,)) for k in range(0, (n - 1) // 2 + 1)]
                    for name, args in jobs:
                        got, want = [np.empty(d, dtype)], [np.empty(d, dtype)]
                        assert not getattr(core, name)(rows, got, *args, w, 2)
                        getattr(ref, name)(rows, want, *args, w, 1)
                        if name == "median":
                            np.testing.assert_array_equal(got[0], want[0])
                        else:
                            tol = 1e-6 if dtype == np.float32 else 1e-12
                            np.testing.assert_allclose(got[0], want[0], rtol=tol, atol=tol)
    print("ok")
    """
)


@pytest.mark.parametrize("isa", ["avx512", "avx2", "baseline"])
def test_instruction_set_build_matches_reference(isa: str) -> None:
    env = {**os.environ, "HIERFED_SIMD": isa}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    used, status = proc.stdout.split()
    assert status == "ok"
    # The build used is the one asked for, or a lower one where the CPU lacks it.
    order = ["baseline", "avx2", "avx512"]
    assert order.index(used) <= order.index(isa)
