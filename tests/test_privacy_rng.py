"""ChaCha20 keystream and NoiseGenerator: RFC 8439 vectors, identical streams on every
backend and thread count, independent transform references, fixed-seed statistical tests."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
import pytest
from scipy import stats

import hierfed
from hierfed import _backend
from hierfed.privacy import NoiseGenerator, chacha20_keystream
from hierfed.privacy.rng import _key_from_seed

RFC_KEY = bytes(range(32))
# RFC 8439 section 2.3.2: block counter 1.
BLOCK_NONCE = bytes.fromhex("000000090000004a00000000")
BLOCK_232 = bytes.fromhex(
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
)
# RFC 8439 section 2.4.2: the "sunscreen" plaintext, counter 1.
SUN_NONCE = bytes.fromhex("000000000000004a00000000")
SUN_PLAIN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it."
)
SUN_CIPHER = bytes.fromhex(
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
    "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
    "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)
# RFC 8439 appendix A.1, test vector 1: all-zero key and nonce, counter 0.
ZERO_BLOCK = bytes.fromhex(
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
)


def keystream_bytes(key: bytes, nonce: bytes, counter: int, n_bytes: int) -> bytes:
    words = chacha20_keystream(key, nonce, counter, -(-n_bytes // 4))
    return words.astype("<u4").tobytes()[:n_bytes]


def test_rfc8439_block_function(backend: str) -> None:
    assert keystream_bytes(RFC_KEY, BLOCK_NONCE, 1, 64) == BLOCK_232
    assert keystream_bytes(bytes(32), bytes(12), 0, 64) == ZERO_BLOCK


def test_rfc8439_encryption(backend: str) -> None:
    stream = keystream_bytes(RFC_KEY, SUN_NONCE, 1, len(SUN_PLAIN))
    cipher = bytes(p ^ s for p, s in zip(SUN_PLAIN, stream, strict=True))
    assert cipher == SUN_CIPHER


def test_keystream_matches_the_cryptography_package(backend: str) -> None:
    algorithms = pytest.importorskip("cryptography.hazmat.primitives.ciphers.algorithms")
    ciphers = pytest.importorskip("cryptography.hazmat.primitives.ciphers")
    rng = np.random.default_rng(5)
    for n_words, counter in [(1, 0), (17, 3), (300, 2**32 - 19), (5000, 123456)]:
        key, nonce = rng.bytes(32), rng.bytes(12)
        full_nonce = counter.to_bytes(4, "little") + nonce
        enc = ciphers.Cipher(algorithms.ChaCha20(key, full_nonce), mode=None).encryptor()
        want = enc.update(bytes(4 * n_words))
        assert keystream_bytes(key, nonce, counter, 4 * n_words) == want


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_keystream_same_on_every_backend_and_thread_count(
    backend: str, threads: int, restore_threads: None
) -> None:
    hierfed.set_num_threads(threads)
    key, nonce = bytes(range(1, 33)), bytes(range(12))
    with _backend.using("numpy"):
        want = chacha20_keystream(key, nonce, 7, 70_001)
    np.testing.assert_array_equal(chacha20_keystream(key, nonce, 7, 70_001), want)


def test_keystream_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        chacha20_keystream(bytes(31), bytes(12), 0, 4)
    with pytest.raises(ValueError, match="nonce must be 12 bytes"):
        chacha20_keystream(bytes(32), bytes(8), 0, 4)
    with pytest.raises(TypeError, match="key must be bytes"):
        chacha20_keystream("k" * 32, bytes(12), 0, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="counter must be >= 0"):
        chacha20_keystream(bytes(32), bytes(12), -1, 4)
    with pytest.raises(ValueError, match="would wrap"):
        chacha20_keystream(bytes(32), bytes(12), 2**32 - 1, 17)
    with pytest.raises(ValueError, match="counter must be < 2"):
        chacha20_keystream(bytes(32), bytes(12), 2**32, 0)
    assert chacha20_keystream(bytes(32), bytes(12), 2**32 - 1, 16).size == 16
    assert chacha20_keystream(bytes(32), bytes(12), 0, 0).size == 0


# ----------------------------------------------------------------------------- generator


def draws(gen: NoiseGenerator) -> list[np.ndarray]:
    """One of every kind of draw, in a fixed order."""
    return [
        gen.random_uint32(1000),
        gen.standard_normal(1001),
        gen.standard_normal(257, dtype=np.float32),
        gen.normal(2.0, 3.0, 300),
        gen.laplace(-1.0, 0.5, 129, dtype=np.float32),
        gen.uniform(size=300),
        gen.uniform(-2.0, 5.0, 513, dtype=np.float32),
        gen.discrete_gaussian(2.5, 2100),
        *[child.standard_normal(10) for child in gen.spawn(2)],
    ]


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_same_draws_on_every_backend_and_thread_count(
    backend: str, threads: int, restore_threads: None
) -> None:
    with _backend.using("numpy"):
        want = draws(NoiseGenerator(2024, secure=False))
    hierfed.set_num_threads(threads)
    got = draws(NoiseGenerator(2024, secure=False))
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_large_draws_identical_across_thread_counts(backend: str, restore_threads: None) -> None:
    if backend == "numpy":
        pytest.skip("the numpy reference has no threads")
    outs = []
    for threads in (1, 2, 4):
        hierfed.set_num_threads(threads)
        gen = NoiseGenerator(b"threads", secure=False)
        outs.append((gen.standard_normal(300_000), gen.discrete_gaussian(3.0, 50_000)))
    for other in outs[1:]:
        np.testing.assert_array_equal(other[0], outs[0][0])
        np.testing.assert_array_equal(other[1], outs[0][1])


def test_stream_is_the_keystream() -> None:
    gen = NoiseGenerator(7, secure=False)
    key = _key_from_seed(7)
    first = gen.random_uint32(20)  # uses one super-block: blocks 0-15
    second = gen.random_uint32(5)
    np.testing.assert_array_equal(first, chacha20_keystream(key, bytes(12), 0, 20))
    np.testing.assert_array_equal(second, chacha20_keystream(key, bytes(12), 16, 5))


def test_counter_exhaustion_moves_to_a_fresh_nonce() -> None:
    gen = NoiseGenerator(8, secure=False)
    gen._counter = 2**32 - 16  # one super-block left in this (key, nonce) stream
    a = gen.random_uint32(256)
    b = gen.random_uint32(512)  # does not fit: the next nonce, from block 0
    key = _key_from_seed(8)
    np.testing.assert_array_equal(a, chacha20_keystream(key, bytes(12), 2**32 - 16, 256))
    np.testing.assert_array_equal(b, chacha20_keystream(key, (1).to_bytes(12, "little"), 0, 512))
    with pytest.raises(ValueError, match="at most 2\\^32 ChaCha20 blocks"):
        gen._reserve(2**32 + 1)


def test_seed_rules() -> None:
    with pytest.raises(ValueError, match="seed given with secure=True"):
        NoiseGenerator(1)
    with pytest.raises(TypeError, match="seed must be an int or bytes"):
        NoiseGenerator(1.5, secure=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got bool"):
        NoiseGenerator(True, secure=False)
    with pytest.raises(TypeError, match="secure must be a bool"):
        NoiseGenerator(secure="yes")  # type: ignore[arg-type]
    a = NoiseGenerator(5, secure=False).random_uint32(8)
    assert np.array_equal(a, NoiseGenerator(np.int64(5), secure=False).random_uint32(8))
    assert not np.array_equal(a, NoiseGenerator(b"\x05", secure=False).random_uint32(8))
    assert not np.array_equal(a, NoiseGenerator(-5, secure=False).random_uint32(8))
    assert NoiseGenerator().secure and not NoiseGenerator(secure=False).secure
    # unseeded generators are keyed from the OS: two never agree
    assert not np.array_equal(NoiseGenerator().random_uint32(8), NoiseGenerator().random_uint32(8))


def test_generator_cannot_be_copied_and_spawns_distinct_streams() -> None:
    gen = NoiseGenerator()
    for clone in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="cannot be copied or pickled"):
            clone(gen)
    kids = gen.spawn(3)
    assert all(k.secure for k in kids) and gen.spawn(0) == []
    streams = {k.random_uint32(4).tobytes() for k in kids}
    streams.add(gen.random_uint32(4).tobytes())
    assert len(streams) == 4
    assert "key" not in repr(gen) and repr(gen) == "NoiseGenerator(secure=True)"


def test_sizes_out_and_bad_arguments() -> None:
    gen = NoiseGenerator(3, secure=False)
    assert isinstance(gen.standard_normal(), float)
    assert isinstance(gen.random_uint32(), int)
    assert isinstance(gen.discrete_gaussian(1.0), int)
    assert gen.standard_normal((2, 3)).shape == (2, 3)
    assert gen.standard_normal(0).shape == (0,)
    assert gen.discrete_gaussian(0.0, 5).tolist() == [0] * 5
    out = np.empty((4, 6), np.float32)
    assert gen.normal(size=None, out=out) is out
    strided = np.zeros((8, 8))[:, ::2]  # filled in C order through a copy
    a = NoiseGenerator(4, secure=False).standard_normal(out=strided)
    np.testing.assert_array_equal(a, NoiseGenerator(4, secure=False).standard_normal((8, 4)))
    with pytest.raises(ValueError, match="scale must be >= 0"):
        gen.normal(0.0, -1.0, 3)
    with pytest.raises(ValueError, match="loc must be finite"):
        gen.laplace(math.nan, 1.0, 3)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        gen.standard_normal(3, dtype=np.int32)
    with pytest.raises(TypeError, match="out has dtype"):
        gen.standard_normal(dtype=np.float64, out=np.empty(3, np.float32))
    with pytest.raises(ValueError, match="size or out"):
        gen.standard_normal(3, out=np.empty(3))
    with pytest.raises(ValueError, match="size must be >= 0"):
        gen.uniform(size=-1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        gen.discrete_gaussian(-1.0, 3)
    with pytest.raises(ValueError, match="sigma must be 0 or in"):
        gen.discrete_gaussian(2.0**31, 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        gen.spawn(-1)


# ----------------------------------------------------------------------------- transforms


def slots(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per super-block, 64-bit slot k of block j at output 16 k + j (see noise.hpp)."""
    w = words.reshape(-1, 16, 16).transpose(0, 2, 1).astype(np.uint64)
    return w, (w[:, 0::2, :] | (w[:, 1::2, :] << np.uint64(32)))


def test_normal_and_laplace_match_libm_transforms(backend: str) -> None:
    """The polynomial log/sin/cos agree with libm's to a few ulp (not bitwise: libm differs
    between platforms, which is why the kernels do not use it)."""
    z = NoiseGenerator(11, secure=False).standard_normal(128 * 40)
    lap = NoiseGenerator(11, secure=False).laplace(size=128 * 40)
    _, s = slots(NoiseGenerator(11, secure=False).random_uint32(256 * 40))
    a, b = s[:, 0::2, :].reshape(-1), s[:, 1::2, :].reshape(-1)
    want = np.empty((40, 8, 16))
    z0 = np.empty(a.size)
    z1 = np.empty(a.size)
    for i, (ai, bi) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        r = math.sqrt(-2.0 * math.log(((ai >> 11) + 1) * 2.0**-53))
        theta = 2 * math.pi * (bi >> 8) * 2.0**-56
        z0[i], z1[i] = r * math.cos(theta), r * math.sin(theta)
    want[:, 0::2, :] = z0.reshape(40, 4, 16)
    want[:, 1::2, :] = z1.reshape(40, 4, 16)
    np.testing.assert_allclose(z, want.reshape(-1), rtol=2e-14, atol=2e-15)
    flat = s.reshape(-1).tolist()
    lap_want = [
        (-1.0 if v >> 63 else 1.0) * -math.log((((v & (2**63 - 1)) >> 10) + 1) * 2.0**-53)
        for v in flat
    ]
    np.testing.assert_allclose(lap, lap_want, rtol=2e-15, atol=1e-300)


def test_uniform_grid_and_float32_rounding(backend: str) -> None:
    words = NoiseGenerator(12, secure=False).random_uint32(512)
    u32 = NoiseGenerator(12, secure=False).uniform(size=512, dtype=np.float32)
    w = words.reshape(-1, 16, 16).transpose(0, 2, 1).reshape(-1)
    np.testing.assert_array_equal(u32, (w >> 8).astype(np.float64) * 2.0**-24)
    _, s = slots(NoiseGenerator(12, secure=False).random_uint32(256))
    u64 = NoiseGenerator(12, secure=False).uniform(size=128)
    np.testing.assert_array_equal(u64, (s.reshape(-1) >> np.uint64(11)) * 2.0**-53)
    z64 = NoiseGenerator(13, secure=False).standard_normal(1000)
    z32 = NoiseGenerator(13, secure=False).standard_normal(1000, dtype=np.float32)
    np.testing.assert_array_equal(z32, z64.astype(np.float32))
    scaled = NoiseGenerator(13, secure=False).normal(1.5, 0.25, 1000)
    np.testing.assert_array_equal(scaled, 1.5 + 0.25 * z64)


def test_statistics_of_normal_laplace_uniform(backend: str) -> None:
    """Kolmogorov-Smirnov on 1e6 fixed-seed draws each."""
    gen = NoiseGenerator(20240611, secure=False)
    n = 1_000_000
    for sample, dist in [
        (gen.standard_normal(n), "norm"),
        (gen.standard_normal(n, dtype=np.float32).astype(np.float64), "norm"),
        (gen.laplace(size=n), "laplace"),
        (gen.uniform(size=n), "uniform"),
    ]:
        assert stats.kstest(sample, dist).pvalue > 1e-3
    z = gen.standard_normal(n)
    assert abs(z.mean()) < 5 / math.sqrt(n) and abs(z.std() - 1) < 5 / math.sqrt(2 * n)


# ----------------------------------------------------------------------------- discrete Gaussian


def exact_pmf(sigma2: float, support: np.ndarray) -> np.ndarray:
    """P(k) = exp(-k^2 / (2 sigma^2)) / Z over the integers (Z summed to 60 sigma)."""
    reach = int(60 * math.sqrt(sigma2)) + 10
    ks = np.arange(-reach, reach + 1, dtype=np.float64)
    z = np.exp(-(ks**2) / (2 * sigma2)).sum()
    return np.exp(-(support.astype(np.float64) ** 2) / (2 * sigma2)) / z


@pytest.mark.parametrize("sigma", [0.6, 1.0, 3.7, 40.0])
def test_discrete_gaussian_chi_square(backend: str, sigma: float) -> None:
    """Chi-square of 1e6 fixed-seed samples against the exact pmf (numpy: 2e4)."""
    n = 1_000_000 if backend != "numpy" else 20_000
    x = NoiseGenerator(99, secure=False).discrete_gaussian(sigma, n)
    assert x.dtype == np.int64
    lo, hi = int(x.min()), int(x.max())
    support = np.arange(lo, hi + 1)
    expected = exact_pmf(sigma * sigma, support) * n
    observed = np.bincount(x - lo, minlength=support.size).astype(np.float64)
    # pool the tails into bins of expected count >= 20
    keep = expected >= 20
    obs = np.concatenate([observed[keep], [observed[~keep].sum()]])
    exp = np.concatenate([expected[keep], [n - expected[keep].sum()]])
    if exp[-1] < 20:
        obs, exp = obs[:-1], exp[:-1]
        exp *= obs.sum() / exp.sum()
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_discrete_gaussian_same_on_every_backend_for_every_parameter_regime(
    backend: str,
) -> None:
    for sigma in (1e-3, 0.3, 1.0, 7.5, 3e4, 2.0**29):
        with _backend.using("numpy"):
            want = NoiseGenerator(5, secure=False).discrete_gaussian(sigma, 1100)
        got = NoiseGenerator(5, secure=False).discrete_gaussian(sigma, 1100)
        np.testing.assert_array_equal(got, want)


def test_discrete_gaussian_parameters_round_the_variance_up() -> None:
    from fractions import Fraction

    from hierfed.privacy import discrete_gaussian_parameters

    for sigma in (1e-6, 0.01, 0.7, 1.0, 3.3, 1000.5, 2.0**15 - 0.5, 2.0**15 + 0.5, 2.0**30):
        t, alpha, beta, denom, ymax = discrete_gaussian_parameters(sigma)
        assert 0 < denom < 2**62 and t >= 1 and ymax * alpha <= 2**62
        # the acceptance exponent is (|y| - s2/t)^2 / (2 s2) for the variance s2 used
        s2 = Fraction(beta, alpha) * t
        assert Fraction(denom, alpha * alpha) == 2 * s2
        exact = Fraction(sigma) ** 2
        assert s2 >= exact
        bound = 2.0**-27 if 1 <= sigma < 2**15 else 2.0**-13 if sigma >= 2**15 else 1e-3
        assert float((s2 - exact) / exact) <= bound
