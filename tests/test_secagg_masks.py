"""The fused mask kernel: every backend and thread count gives the numpy reference's bits."""

from __future__ import annotations

import numpy as np
import pytest

from hierfed import _backend
from hierfed._kernels import numpy as ref
from hierfed.privacy import chacha20_keystream
from hierfed.secagg.masks import apply_masks, pair_key, self_key


@pytest.mark.parametrize("n", [0, 1, 15, 16, 255, 256, 257, 4099, 70001])
def test_backend_matches_reference(backend: str, n: int, restore_threads: None) -> None:
    rng = np.random.default_rng(n)
    m = 5
    keys = rng.integers(0, 2**32, size=8 * m, dtype=np.uint32)
    negate = np.array([0, 1, 1, 0, 1], np.uint8)
    base = rng.integers(0, 2**32, size=n, dtype=np.uint32)
    want = base.copy()
    ref.apply_masks(keys, negate, want)
    for threads in (1, 2, 3):
        got = base.copy()
        _backend.kernels().apply_masks(keys, negate, got, threads)
        np.testing.assert_array_equal(got, want)


def test_reference_is_the_keystream_sum() -> None:
    key = bytes(range(32))
    other = bytes(range(32, 64))
    out = np.zeros(1000, np.uint32)
    apply_masks([key, other], [False, True], out)
    a = chacha20_keystream(key, bytes(12), 0, 1000)
    b = chacha20_keystream(other, bytes(12), 0, 1000)
    np.testing.assert_array_equal(out, a - b)


def test_masks_cancel(backend: str) -> None:
    key = pair_key(b"s" * 32, b"x" * 32, 3, 7)
    assert key == pair_key(b"s" * 32, b"x" * 32, 7, 3)
    assert self_key(b"s" * 32, b"x" * 32, 3) != self_key(b"s" * 32, b"x" * 32, 4)
    out = np.arange(300, dtype=np.uint32)
    apply_masks([key, key], [False, True], out)
    np.testing.assert_array_equal(out, np.arange(300, dtype=np.uint32))


def test_bad_arguments(backend: str) -> None:
    k = _backend.kernels()
    out = np.zeros(10, np.uint32)
    with pytest.raises((ValueError, TypeError)):
        k.apply_masks(np.zeros(7, np.uint32), np.zeros(1, np.uint8), out, 1)
    with pytest.raises((ValueError, TypeError)):
        k.apply_masks(np.zeros(8, np.uint32), np.zeros(1, np.uint8), np.zeros(10, np.int32), 1)
    with pytest.raises(ValueError):
        apply_masks([b"short"], [False], out)
    with pytest.raises(TypeError):
        apply_masks([bytes(32)], [False], np.zeros(4, np.float64))  # type: ignore[arg-type]
