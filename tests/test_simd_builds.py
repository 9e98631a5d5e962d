"""Every instruction-set build of the compiled core (AVX-512, AVX2, baseline) agrees with the
numpy reference, and the distance kernels give the same bits on all of them: each runs in a
subprocess with HIERFED_SIMD capping the dispatch."""

from __future__ import annotations

import functools
import textwrap

import pytest
from isa_builds import ISAS, run_capped

import hierfed._backend as backend

pytestmark = pytest.mark.skipif(
    "cpp" not in backend.available_backends(), reason="the compiled core is not built"
)

CHECK = textwrap.dedent(
    """
    import hashlib
    import numpy as np
    import hierfed._core as core
    import hierfed._kernels.numpy as ref

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
                    jobs += [("mean_around_median", (k,)) for k in sorted({1, n // 2 + 1, n})]
                    for name, args in jobs:
                        got, want = [np.empty(d, dtype)], [np.empty(d, dtype)]
                        assert not getattr(core, name)(rows, got, *args, w, 2)
                        getattr(ref, name)(rows, want, *args, w, 1)
                        if name == "median":
                            np.testing.assert_array_equal(got[0], want[0])
                        else:
                            tol = 1e-6 if dtype == np.float32 else 1e-12
                            np.testing.assert_allclose(got[0], want[0], rtol=tol, atol=tol)
    digest = hashlib.sha256()
    for dtype in (np.float32, np.float64):
        for n, lens in [(2, [1]), (3, [130, 5]), (9, [1000]), (17, [300, 129, 1])]:
            rows = [[rng.standard_normal(d).astype(dtype) for _ in range(n)] for d in lens]
            for chunk, units in [(128, 1), (256, 3)]:
                got, want = np.empty((n, n)), np.empty((n, n))
                core.pairwise_sq_distances(rows, got, chunk, units, 2)
                ref.pairwise_sq_distances(rows, want)
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
                digest.update(got.tobytes())
            mix = rng.random((5, n)) + 0.1
            mixed = [np.empty((5, d), dtype) for d in lens]
            assert not core.mix_rows(rows, mix, mixed, 2)
            want = [np.empty((5, d), dtype) for d in lens]
            ref.mix_rows(rows, mix, want)
            for g, w_ in zip(mixed, want):
                np.testing.assert_allclose(g, w_, rtol=1e-6, atol=1e-12)
                digest.update(g.tobytes())
            order = rng.permutation(n)
            bucketed = [np.empty((-(-n // 2), d), dtype) for d in lens]
            assert not core.bucket_means(rows, order, 2, bucketed, 2)
            want = [np.empty((-(-n // 2), d), dtype) for d in lens]
            ref.bucket_means(rows, order, 2, want)
            for g, w_ in zip(bucketed, want):
                np.testing.assert_array_equal(g, w_)  # the same bits on every build
            point = [r[0] * 0.5 for r in rows]
            to = np.empty(n)
            core.sq_distances_to(rows, point, to, 2)
            digest.update(to.tobytes())
    print("ok", digest.hexdigest())
    """
)


@functools.cache
def run_check(isa: str) -> tuple[str, str]:
    """The build used and the digest of its distances, with HIERFED_SIMD=isa."""
    used, status, digest = run_capped(CHECK, isa)
    assert status == "ok"
    return used, digest


@pytest.mark.parametrize("isa", ISAS)
def test_instruction_set_build_matches_reference(isa: str) -> None:
    run_check(isa)  # the build used is the one asked for, or a lower one the CPU has


def test_distances_have_the_same_bits_on_every_build() -> None:
    digests = {isa: run_check(isa)[1] for isa in ISAS}
    assert len(set(digests.values())) == 1, digests
