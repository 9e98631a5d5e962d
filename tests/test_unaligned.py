"""Misaligned arrays (numpy views of a byte buffer at an odd offset).

Found by fuzzing under UBSan: the kernels read rows through ``T*``, and a misaligned float32
or float64 array reached them as it was (C-contiguous, so not copied): a misaligned load,
undefined behaviour that an aligned SIMD load turns into a crash. Now the inputs layer copies
such rows, the privacy entry points go through an aligned buffer, and the compiled bindings
refuse a misaligned array outright.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import hierfed
from hierfed import _backend, privacy

DTYPES = [np.float32, np.float64]


def misaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` at an odd address."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and not out.flags.aligned
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_rules_on_misaligned_updates_match_aligned(backend: str, dtype: Any) -> None:
    x = np.random.default_rng(3).standard_normal((9, 37)).astype(dtype)
    bad = misaligned(x)
    rows = [misaligned(r) for r in x]
    for rule, kw in [
        (hierfed.mean, {}),
        (hierfed.trimmed_mean, {"trim_ratio": 0.2}),
        (hierfed.median, {"weights": np.arange(1.0, 10.0)}),
        (hierfed.krum, {"f": 2}),
        (hierfed.bulyan, {"f": 1}),
        (hierfed.geometric_median, {}),
        (hierfed.nearest_neighbor_mixing, {"f": 2}),
        (hierfed.pairwise_sq_distances, {}),
        (privacy.l2_norms, {}),
        (lambda u, **k: privacy.clip_by_l2_norm(u, 1.0, **k), {}),
    ]:
        want = rule(x, **kw)
        np.testing.assert_array_equal(rule(bad, **kw), want)
        got = rule(rows, **kw)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    center = misaligned(np.zeros(37))
    np.testing.assert_array_equal(
        hierfed.centered_clipping(bad, center, 1.0), hierfed.centered_clipping(x, 0 * x[0], 1.0)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_into_misaligned_arrays(backend: str, dtype: Any) -> None:
    x = np.linspace(-1, 1, 300).astype(dtype)
    bad = misaligned(x)
    privacy.add_gaussian_noise(bad, 0.5, privacy.NoiseGenerator(7, secure=False))
    want = privacy.add_gaussian_noise(x.copy(), 0.5, privacy.NoiseGenerator(7, secure=False))
    np.testing.assert_array_equal(bad, want)
    out = misaligned(np.zeros(300, dtype))
    gen = privacy.NoiseGenerator(9, secure=False)
    gen.normal(1.0, 2.0, out=out)
    np.testing.assert_array_equal(
        out, privacy.NoiseGenerator(9, secure=False).normal(1.0, 2.0, 300, dtype)
    )
    with pytest.raises(ValueError, match="aligned"):
        privacy.clip_by_l2_norm(bad.reshape(3, 100), 1.0, out=bad.reshape(3, 100))


@pytest.mark.skipif("cpp" not in _backend.available_backends(), reason="no compiled core")
def test_compiled_bindings_refuse_misaligned_arrays() -> None:
    core = _backend._load("cpp")
    rows = [misaligned(np.ones(8)), np.ones(8)]
    with pytest.raises(ValueError, match="aligned"):
        core.mean([rows], [np.empty(8)], None, 1)
    with pytest.raises(ValueError, match="aligned"):
        core.mean([[np.ones(8), np.ones(8)]], [misaligned(np.zeros(8))], None, 1)
    with pytest.raises(ValueError, match="aligned"):
        core.pairwise_sq_distances([rows], np.empty((2, 2)), 128, 1, 1)
    with pytest.raises(ValueError, match="aligned"):
        core.l2_sq_norms([rows], np.empty(2), 1)
    with pytest.raises(ValueError, match="aligned"):
        core.chacha20_noise(
            np.zeros(8, np.uint32),
            np.zeros(3, np.uint32),
            0,
            misaligned(np.zeros(9)),
            1,
            0.0,
            1.0,
            False,
            1,
        )
