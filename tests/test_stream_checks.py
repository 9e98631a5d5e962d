"""The keystream kernels refuse what would repeat or misread a keystream, on every backend.

Public callers (``NoiseGenerator``, the secure-aggregation masks) check their own arguments
first; these are the kernels' own checks, alike in the three twins: a wrapped counter would
hand out the same noise or mask twice.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierfed import _backend

KEY = np.arange(8, dtype=np.uint32)
NONCE = np.arange(3, dtype=np.uint32)


def test_keystream_refuses_bad_words_and_counters(backend):
    k = _backend.kernels()
    out = np.empty(40, np.uint32)  # 3 blocks
    with pytest.raises(ValueError, match=r"key must (be a uint32 array of|hold) 8"):
        k.chacha20_keystream(KEY[:7], NONCE, 0, out, 1)
    with pytest.raises(ValueError, match="nonce"):
        k.chacha20_keystream(KEY, np.arange(4, dtype=np.uint32), 0, out, 1)
    with pytest.raises(ValueError, match=r"counter must be in \[0, 2\^32\)"):
        k.chacha20_keystream(KEY, NONCE, 1 << 32, out, 1)
    with pytest.raises(ValueError, match="runs past block 2\\^32 - 1"):
        k.chacha20_keystream(KEY, NONCE, (1 << 32) - 2, out, 1)
    k.chacha20_keystream(KEY, NONCE, (1 << 32) - 3, out, 1)  # the last three blocks: fine


def test_noise_refuses_bad_kind_and_counters(backend):
    k = _backend.kernels()
    out = np.zeros(300, np.float64)  # 3 super-blocks of 128 draws: 48 blocks
    before = out.copy()
    with pytest.raises(ValueError, match="kind must be 0 \\(uniform\\), 1"):
        k.chacha20_noise(KEY, NONCE, 0, out, 3, 0.0, 1.0, False, 1)
    with pytest.raises(ValueError, match="key"):
        k.chacha20_noise(KEY[:4], NONCE, 0, out, 1, 0.0, 1.0, False, 1)
    with pytest.raises(ValueError, match="runs past block 2\\^32 - 1"):
        k.chacha20_noise(KEY, NONCE, (1 << 32) - 47, out, 1, 0.0, 1.0, False, 1)
    assert np.array_equal(out, before)  # nothing written by a refused call
    k.chacha20_noise(KEY, NONCE, (1 << 32) - 48, out, 1, 0.0, 1.0, False, 1)
    assert np.isfinite(out).all() and not np.array_equal(out, before)


def test_discrete_gaussian_and_masks_refuse_bad_words(backend):
    k = _backend.kernels()
    out = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="key"):
        k.discrete_gaussian(KEY[:7], out, 1, 1, 0, 1, 10, 4, 1)
    with pytest.raises(ValueError, match=r"out of range|must be"):
        k.discrete_gaussian(KEY, out, 0, 1, 0, 1, 10, 4, 1)
    masked = np.zeros(16, np.uint32)
    with pytest.raises(ValueError, match="keys"):
        k.apply_masks(np.arange(15, dtype=np.uint32), np.zeros(2, np.uint8), masked, 1)
    assert not masked.any()
