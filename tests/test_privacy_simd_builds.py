"""Every instruction-set build of the privacy kernels gives the numpy reference's bits:
each build runs in a subprocess with HIERFED_SIMD capping the dispatch."""

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

    rng = np.random.default_rng(3)
    key = rng.integers(0, 2**32, 8, dtype=np.uint32)
    nonce = rng.integers(0, 2**32, 3, dtype=np.uint32)
    print(core.simd())
    for n in (1, 16, 300, 4097):
        got, want = np.empty(n, np.uint32), np.empty(n, np.uint32)
        core.chacha20_keystream(key, nonce, 2**32 - 400, got, 2)
        ref.chacha20_keystream(key, nonce, 2**32 - 400, want)
        np.testing.assert_array_equal(got, want)
    for kind in (0, 1, 2):
        for dtype in (np.float32, np.float64):
            for n in (1, 129, 5000):
                got, want = np.ones(n, dtype), np.ones(n, dtype)
                core.chacha20_noise(key, nonce, 5, got, kind, 0.5, 3.0, kind == 1, 2)
                ref.chacha20_noise(key, nonce, 5, want, kind, 0.5, 3.0, kind == 1)
                np.testing.assert_array_equal(got, want)
    got, want = np.empty(2500, np.int64), np.empty(2500, np.int64)
    core.discrete_gaussian(key, got, 4, 268435456, 918720349, 1972936926562353152,
                           17179869184, 1024, 2)
    ref.discrete_gaussian(key, want, 4, 268435456, 918720349, 1972936926562353152,
                          17179869184, 1024)
    np.testing.assert_array_equal(got, want)
    for dtype in (np.float32, np.float64):
        for d in (1, 31, 33, 8192 + 5, 70_001):
            x = [list(rng.standard_normal((3, d)).astype(dtype))]
            got = [[np.empty(d, dtype) for _ in range(3)]]
            want = [[np.empty(d, dtype) for _ in range(3)]]
            sg, sw = np.empty(3), np.empty(3)
            core.clip_by_l2(x, got, 10.0, 1e-7, sg, 1)
            ref.clip_by_l2(x, want, 10.0, 1e-7, sw)
            np.testing.assert_array_equal(sg, sw)
            for g, w in zip(got[0], want[0]):
                np.testing.assert_array_equal(g, w)
    print("ok")
    """
)


@pytest.mark.parametrize("isa", ISAS)
def test_privacy_kernels_of_every_build_match_the_reference(isa: str) -> None:
    assert run_capped(CHECK, isa)[1:] == ["ok"]
