"""The register-blocked merge of value tiles (cpp/include/hierfed/tile_merge.hpp) on every
instruction-set build: from n = 2 sort groups up (AVX-512 groups of 16 rows, AVX2 and baseline
8) the trimmed means, the median and the mean around the median read a tile sorted by it
where it is cheaper than the flat network. Each build runs in a subprocess (HIERFED_SIMD), its
results against the numpy reference: order statistics exactly, means to rounding (the
reference sums in its own order). Row counts around the powers of two (the +inf rows
the merge skips), ties, all-equal columns, huge offsets and weights with zeros."""

from __future__ import annotations

import textwrap

import pytest
from isa_builds import ISAS, run_capped

import hierfed._backend as backend

pytestmark = pytest.mark.skipif(
    "cpp" not in backend.available_backends(), reason="the compiled core is not built"
)

CHECK = textwrap.dedent(
    """
    import numpy as np
    import hierfed._core as core
    import hierfed._kernels.numpy as ref

    rng = np.random.default_rng(11)
    print(core.simd())
    def make(kind, n, d, dtype):
        if kind == "ties3":
            x = rng.choice([-1.5, 0.25, 2.0], size=(n, d))
        elif kind == "equal":
            x = np.tile(rng.standard_normal(d), (n, 1))
        elif kind == "huge_offset":
            x = 1e30 * (1.0 + 1e-6 * rng.standard_normal((n, d)))
        else:
            x = rng.standard_normal((n, d))
        return x.astype(dtype)
    checked = 0
    for dtype in (np.float32, np.float64):
        for n in (33, 64, 65, 97, 128, 129, 200, 255, 256):
            for kind in ("normal", "ties3", "equal", "huge_offset"):
                d = 37
                x = make(kind, n, d, dtype)
                rows = [list(x)]
                w = rng.uniform(0.1, 3.0, n)
                w[rng.random(n) < 0.3] = 0.0
                jobs = [("median", (), None, True)]
                jobs += [("trimmed_mean", (k,), None, False) for k in (9, n // 4)]
                jobs += [("trimmed_mean", ((n - 1) // 2,), None, n % 2 == 1)]  # odd n: the median
                jobs += [("trimmed_mean", (k,), w, False) for k in (9, n // 4)]
                jobs += [("mean_around_median", (k,), None, False) for k in (n // 2, n - 4)]
                for name, args, weights, exact in jobs:
                    got, want = [np.empty(d, dtype)], [np.empty(d, dtype)]
                    assert not getattr(core, name)(rows, got, *args, weights, 2)
                    getattr(ref, name)(rows, want, *args, weights, 1)
                    if exact:
                        np.testing.assert_array_equal(got[0], want[0], err_msg=f"{name} {n} {kind}")
                    else:
                        tol = 1e-6 if dtype == np.float32 else 1e-12
                        scale = 1e30 if kind == "huge_offset" else 1.0
                        np.testing.assert_allclose(got[0], want[0], rtol=tol, atol=tol * scale)
                    checked += 1
    print("ok", checked)
    """
)


@pytest.mark.parametrize("isa", ISAS)
def test_merged_tiles_of_every_build_match_the_reference(isa: str) -> None:
    _, status, checked = run_capped(CHECK, isa)
    assert status == "ok" and int(checked) == 2 * 9 * 4 * 8
