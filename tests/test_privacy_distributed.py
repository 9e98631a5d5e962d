"""The distributed discrete Gaussian (Kairouz, Liu & Steinke 2021): its accounting against the
paper's formulas transcribed here in mpmath and against the exact Renyi divergence of the
summed noise; the real sampler's summed noise against the exact pmf; encode/decode round
trips through modular wrap-around; composition in the RDP accountant."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from scipy import linalg, stats

from hierfed.privacy import NoiseGenerator, RDPAccountant
from hierfed.privacy.distributed import (
    DistributedDiscreteGaussian,
    conditional_rounding_bound,
    discrete_gaussian_sum_tau,
    distributed_discrete_gaussian_rdp,
    randomized_hadamard,
    randomized_hadamard_inverse,
)
from hierfed.secagg import secure_sum

mpmath.mp.dps = 50
ORDERS = [1.05, 1.5, 2.0, 3.7, 10.0, 64.0, 256.0]


def mp_tau(s: float, n: int) -> mpmath.mpf:
    """Theorem 3's tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1))."""
    s2 = mpmath.mpf(s) ** 2
    return 10 * mpmath.fsum(mpmath.exp(-2 * mpmath.pi**2 * s2 * k / (k + 1)) for k in range(1, n))


def mp_rdp(alpha: float, l2: float, l1: float, s: float, n: int, d: int) -> mpmath.mpf:
    """Proposition 14 (eq. 17): the three bounds on D_alpha, and their minimum."""
    a, tau = mpmath.mpf(alpha), mp_tau(s, n)
    root = mpmath.sqrt(n) * mpmath.mpf(s)
    l2s, l1s = mpmath.mpf(l2) / root, mpmath.mpf(l1) / root
    return min(
        a * l2s**2 / 2 + tau * d,
        a / 2 * (l2s**2 + 2 * l1s * tau + tau**2 * d),
        a / 2 * (l2s + tau * mpmath.sqrt(d)) ** 2,
    )


def mp_rounding_bound(c: float, d: int, beta: float) -> mpmath.mpf:
    """Theorem 1: min((c + sqrt d)^2, c^2 + d/4 + sqrt(2 log(1/beta)) (c + sqrt(d)/2))."""
    c_, d_ = mpmath.mpf(c), mpmath.mpf(d)
    always = (c_ + mpmath.sqrt(d_)) ** 2
    if beta == 0:
        return always
    k = mpmath.sqrt(2 * mpmath.log(1 / mpmath.mpf(beta)))
    return min(always, c_**2 + d_ / 4 + k * (c_ + mpmath.sqrt(d_) / 2))


# (l2, s, n, d): tau negligible (first bound), tau large (s = 0.5), in between.
RDP_CASES = [(10.0, 1.0, 5, 100), (3.0, 0.5, 2, 1), (40.0, 0.6, 20, 1000), (2.5, 0.8, 7, 16)]


@pytest.mark.parametrize(("l2", "s", "n", "d"), RDP_CASES)
def test_rdp_is_the_papers_formula(l2: float, s: float, n: int, d: int) -> None:
    l1 = l2 * min(math.sqrt(d), l2)
    got = distributed_discrete_gaussian_rdp(ORDERS, l2_sensitivity=l2, share_sigma=s, n=n, dim=d)
    want = [float(mp_rdp(a, l2, l1, s, n, d)) for a in ORDERS]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert discrete_gaussian_sum_tau(s, n) == pytest.approx(float(mp_tau(s, n)), rel=1e-13)


def test_rdp_cases_reach_each_of_the_three_bounds() -> None:
    """The cases above are informative: each bound of eq. 17 is the minimum somewhere."""
    winners = set()
    for l2, s, n, d in [*RDP_CASES, (1.0, 0.5, 3, 50)]:
        l1 = l2 * min(math.sqrt(d), l2)
        for a in ORDERS:
            a_, tau = mpmath.mpf(a), mp_tau(s, n)
            root = mpmath.sqrt(n) * s
            bounds = [
                a_ * (l2 / root) ** 2 / 2 + tau * d,
                a_ / 2 * ((l2 / root) ** 2 + 2 * l1 / root * tau + tau**2 * d),
                a_ / 2 * (l2 / root + tau * mpmath.sqrt(d)) ** 2,
            ]
            winners.add(min(range(3), key=lambda i: bounds[i]))
    assert winners == {0, 1, 2}


def mp_sum_pmf(s: float, n: int, half_width: int) -> dict[int, mpmath.mpf]:
    """Exact pmf of the sum of n independent N_Z(0, s^2), by convolution (support truncated
    at +-half_width per summand: the mass beyond is below exp(-half_width^2 / (2 s^2)))."""
    xs = range(-half_width, half_width + 1)
    w = [mpmath.exp(-(mpmath.mpf(x) ** 2) / (2 * mpmath.mpf(s) ** 2)) for x in xs]
    z = mpmath.fsum(w)
    one = {x: wx / z for x, wx in zip(xs, w, strict=True)}
    pmf = dict(one)
    for _ in range(n - 1):
        nxt: dict[int, mpmath.mpf] = {}
        for x, px in pmf.items():
            for y, py in one.items():
                nxt[x + y] = nxt.get(x + y, mpmath.mpf(0)) + px * py
        pmf = nxt
    return pmf


@pytest.mark.parametrize(("s", "n"), [(0.5, 2), (0.7, 3), (1.0, 2)])
def test_bound_holds_for_the_exact_summed_noise(s: float, n: int) -> None:
    """D_alpha(Z || Z + Delta) of the exact pmf of the summed noise (d = 1) is at most the
    bound, and the pmf is within a factor 1 + tau of N_Z(0, n s^2) (Theorem 3)."""
    pmf = mp_sum_pmf(s, n, 14)
    tau = mp_tau(s, n)
    var = n * mpmath.mpf(s) ** 2
    ref_w = {x: mpmath.exp(-(mpmath.mpf(x) ** 2) / (2 * var)) for x in pmf}
    ref_z = mpmath.fsum(mpmath.exp(-(mpmath.mpf(x) ** 2) / (2 * var)) for x in range(-300, 301))
    for x in range(-6, 7):
        ratio = pmf[x] / (ref_w[x] / ref_z)
        assert 1 / (1 + tau) <= ratio <= 1 + tau
    for delta in (1, 2):
        for a in (2.0, 5.0, 10.0):
            terms = [pmf[x] ** a * pmf[x - delta] ** (1 - a) for x in pmf if x - delta in pmf]
            exact = mpmath.log(mpmath.fsum(terms)) / (a - 1)
            bound = distributed_discrete_gaussian_rdp(
                [a], l2_sensitivity=delta, share_sigma=s, n=n, dim=1
            )[0]
            assert 0 < exact <= bound


@pytest.mark.parametrize(("s", "n"), [(0.5, 3), (1.3, 4), (4.0, 2)])
def test_sampler_sum_matches_the_exact_pmf(s: float, n: int) -> None:
    """n draws of the real sampler, summed, against the exact pmf of the sum: the variance
    (z-test) and a chi-square test, each with a false-failure rate below 1e-7."""
    draws = 20_000
    gen = NoiseGenerator(seed=15, secure=False)
    sums = gen.discrete_gaussian(s, (draws, n)).sum(axis=1)
    half = int(12 * s) + 2
    pmf = mp_sum_pmf(s, n, half)
    support = np.array(sorted(pmf))
    p = np.array([float(pmf[int(x)]) for x in support])
    mean_sq = float(np.sum(p * support.astype(np.float64) ** 2))
    fourth = float(np.sum(p * support.astype(np.float64) ** 4))
    # E[Z^2] of the sum is n Var(N_Z(0, s^2)): close to n s^2 once s >= 1.
    if s >= 1:
        assert mean_sq == pytest.approx(n * s * s, rel=1e-6)
    z = (np.mean(sums.astype(np.float64) ** 2) - mean_sq) / math.sqrt((fourth - mean_sq**2) / draws)
    assert abs(z) < 5.5
    expected = p * draws
    keep = expected >= 20
    observed = np.array([np.count_nonzero(sums == x) for x in support[keep]])
    rest = draws - observed.sum()
    chi2 = np.sum((observed - expected[keep]) ** 2 / expected[keep])
    chi2 += (rest - (draws - expected[keep].sum())) ** 2 / max(draws - expected[keep].sum(), 1)
    assert chi2 < stats.chi2.isf(1e-7, int(keep.sum()))


def test_rounding_bound_and_mechanism_rdp_follow_the_paper() -> None:
    for c, d, beta in [(10.0, 100, math.exp(-0.5)), (3.0, 1000, 0.0), (1e3, 64, 1e-9)]:
        want = float(mp_rounding_bound(c, d, beta))
        assert conditional_rounding_bound(c, d, beta) == pytest.approx(want, rel=1e-14)
    # s = 24.5 (tau ~ 0) and s = 0.6 (tau matters, and with it the padded dimension)
    for gamma, sigma, n_min in [(0.02, 1.2, 6), (0.1, 0.06 * math.sqrt(5), 5)]:
        mech = DistributedDiscreteGaussian(clip=1.0, gamma=gamma, sigma=sigma, n_min=n_min, dim=100)
        d_enc = 128
        l2 = mpmath.sqrt(mp_rounding_bound(1.0 / gamma, d_enc, math.exp(-0.5)))
        l1 = l2 * min(mpmath.sqrt(d_enc), l2)
        s = sigma / (gamma * math.sqrt(n_min))
        want = [float(mp_rdp(a, float(l2), float(l1), s, n_min, d_enc)) for a in ORDERS]
        np.testing.assert_allclose(mech.rdp(ORDERS), want, rtol=1e-12)


def mp_epsilon(curve: list[mpmath.mpf], delta: float) -> mpmath.mpf:
    """Balle et al. 2020 Theorem 21, minimised over the orders."""
    return max(
        mpmath.mpf(0),
        min(
            r + mpmath.log((a - 1) / mpmath.mpf(a)) - (mpmath.log(delta) + mpmath.log(a)) / (a - 1)
            for a, r in zip(ORDERS, curve, strict=True)
        ),
    )


def test_released_epsilon_is_what_the_accountant_reports() -> None:
    mech = DistributedDiscreteGaussian(clip=0.5, gamma=0.01, sigma=0.9, n_min=8, dim=300)
    rounds = 25
    acc = RDPAccountant(ORDERS)
    mech.record(acc, rounds)
    eps = mech.epsilon(1e-5, rounds, ORDERS)
    assert (eps, 1e-5) == (acc.get_privacy_spent(1e-5)[0], 1e-5)
    s = mech.share_sigma
    l2 = mpmath.sqrt(mp_rounding_bound(0.5 / 0.01, 512, math.exp(-0.5)))
    l1 = l2 * min(mpmath.sqrt(512), l2)
    curve = [rounds * mp_rdp(a, float(l2), float(l1), s, 8, 512) for a in ORDERS]
    assert eps == pytest.approx(float(mp_epsilon(curve, 1e-5)), rel=1e-10)
    # the summed noise is close to a Gaussian of sigma 0.9 on sensitivity ~ 0.5 (plus rounding)
    central = RDPAccountant(ORDERS)
    central.step(0.9 / 0.5, steps=rounds)
    assert central.get_epsilon(1e-5) < eps < 1.2 * central.get_epsilon(1e-5)


def test_randomized_hadamard_is_an_orthogonal_rotation(rng: np.random.Generator) -> None:
    """R = H D / sqrt(d) against scipy's Hadamard matrix: H^T R sqrt(d) / d is a diagonal of
    random signs; R is orthogonal; the inverse undoes it; another seed rotates otherwise."""
    rot = np.array([randomized_hadamard(e, seed=7) for e in np.eye(128)]).T  # columns R e_i
    signs = linalg.hadamard(128).T @ rot / math.sqrt(128)
    np.testing.assert_allclose(np.abs(np.diag(signs)), 1.0, atol=1e-12)
    np.testing.assert_allclose(signs - np.diag(np.diag(signs)), 0.0, atol=1e-12)
    assert 30 < np.count_nonzero(np.diag(signs) > 0) < 98
    np.testing.assert_allclose(rot @ rot.T, np.eye(128), atol=1e-12)
    x = rng.standard_normal(100)
    y = randomized_hadamard(x, seed=7)
    np.testing.assert_allclose(y, rot[:, :100] @ x, atol=1e-12)
    assert np.linalg.norm(y) == pytest.approx(np.linalg.norm(x), rel=1e-13)
    np.testing.assert_allclose(randomized_hadamard_inverse(y, 7, 100), x, atol=1e-12)
    assert not np.allclose(randomized_hadamard(x, seed=8), y)


@pytest.mark.parametrize("threads", [1, 3])
def test_walsh_hadamard_kernel_is_the_reference_bit_for_bit(
    backend: str, threads: int, rng: np.random.Generator
) -> None:
    """Every backend's kernel gives the numpy reference's bits: sizes from 1 to past the C++
    tile (4096) and its threading threshold (2^16), values from 3 numbers (ties), huge
    offsets, subnormals and non-finite values; H H = n I; bad arrays are refused."""
    from hierfed import _backend
    from hierfed._kernels.numpy.hadamard import walsh_hadamard as reference

    kernel = _backend.kernels().walsh_hadamard
    for n in (1, 2, 8, 4096, 8192, 1 << 17):
        for x in (
            rng.standard_normal(n),
            rng.choice([-1.5, 0.0, 2.25], n),
            1e12 + rng.standard_normal(n),
            np.where(rng.random(n) < 0.5, 5e-324, -1e300),
        ):
            got, want = x.copy(), x.copy()
            kernel(got, threads)
            reference(want)
            assert np.array_equal(got, want)
        x = rng.standard_normal(n)
        back = x.copy()
        kernel(back, threads)
        kernel(back, threads)
        np.testing.assert_allclose(back / n, x, rtol=0, atol=1e-12 * math.sqrt(n))  # H H = n I
    odd = np.array([np.inf, 1.0, np.nan, 2.0])
    got, want = odd.copy(), odd.copy()
    kernel(got, threads)
    reference(want)
    assert np.array_equal(got, want, equal_nan=True)
    for bad in (np.ones(6), np.ones(0), np.ones(8, np.float32), np.ones(16)[::2], np.ones((2, 4))):
        with pytest.raises((ValueError, TypeError)):
            kernel(bad, threads)
    frozen = np.ones(8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError):
        kernel(frozen, threads)


def seeded(seed: int) -> NoiseGenerator:
    return NoiseGenerator(seed=seed, secure=False)


@pytest.mark.parametrize("rotate", [True, False])
def test_noiseless_round_trip_wraps_and_stays_within_rounding(
    rng: np.random.Generator, rotate: bool
) -> None:
    """Sum of n quantized vectors, as words mod 2^bits summed mod 2^32 (SecAgg), decodes to
    gamma R^T (integer sum) exactly, within gamma n sqrt(d) of the sum of clipped vectors."""
    mech = DistributedDiscreteGaussian(
        clip=1.0, gamma=1 / 60, sigma=0.2, n_min=4, dim=50, bits=11, rotate=rotate
    )
    seed = 99 if rotate else None
    xs = rng.standard_normal((6, 50)) * np.array([[0.1], [3.0], [0.5], [2.0], [0.02], [1.0]])
    ints = [mech.quantize(x, seeded(i), seed) for i, x in enumerate(xs)]
    for r in ints:
        assert int(r @ r) <= mech.l2_sensitivity_squared
    words = np.sum([mech.wrap(r) for r in ints], axis=0, dtype=np.uint32)
    exact = np.sum(ints, axis=0)
    assert np.abs(exact).max() < 1 << 10  # within the centred range ...
    assert int(np.sum([mech.wrap(r) for r in ints], axis=0, dtype=np.int64).max()) >= 1 << 11
    decoded = mech.decode(words, seed, survivors=6)  # ... although the words wrapped mod 2^11
    want = exact * mech.gamma
    if rotate:
        want = randomized_hadamard_inverse(want, 99, 50)
    np.testing.assert_allclose(decoded, want, atol=1e-12)
    clipped = xs / np.maximum(1.0, np.linalg.norm(xs, axis=1, keepdims=True))
    err = np.linalg.norm(decoded - clipped.sum(axis=0))
    assert err <= mech.gamma * 6 * math.sqrt(mech.encoded_dim)
    assert err > 0  # rounding happened


def test_out_of_range_sum_wraps_as_documented() -> None:
    mech = DistributedDiscreteGaussian(
        clip=1.0, gamma=1 / 100, sigma=1.0, n_min=1, dim=2, bits=8, rotate=False
    )
    ints = np.array([127, 128], dtype=np.int64)  # 128 is outside [-128, 128)
    np.testing.assert_array_equal(mech.decode(mech.wrap(ints), survivors=1) * 100, [127.0, -128.0])


def test_encode_is_quantize_plus_the_next_discrete_gaussian_draws(
    rng: np.random.Generator,
) -> None:
    mech = DistributedDiscreteGaussian(clip=2.0, gamma=0.05, sigma=3.0, n_min=3, dim=30, bits=16)
    x = rng.standard_normal(30)
    words = mech.encode(x, seeded(5), rotation_seed=b"round-1")
    twin = seeded(5)
    r = mech.quantize(x, twin, rotation_seed=b"round-1")
    noise = twin.discrete_gaussian(mech.share_sigma, 32)
    np.testing.assert_array_equal(words, (r + noise) % (1 << 16))
    assert words.dtype == np.uint32 and words.max() < 1 << 16


def test_noised_round_trip_within_the_tail_bound(rng: np.random.Generator) -> None:
    """Decoded - sum of clipped = gamma R^T (rounding + noise); the summed noise is
    (n s^2)-subgaussian per coordinate, so every coordinate is within
    sqrt(2 n s^2 log(2 d / 1e-9)) with probability >= 1 - 1e-9."""
    n, dim = 10, 200
    mech = DistributedDiscreteGaussian(clip=1.0, gamma=0.005, sigma=0.5, n_min=n, dim=dim)
    xs = rng.standard_normal((n, dim)) * 0.1
    gens = NoiseGenerator(seed=3, secure=False).spawn(n)
    words = np.sum(
        [mech.encode(x, g, 4) for x, g in zip(xs, gens, strict=True)], axis=0, dtype=np.uint32
    )
    decoded = mech.decode(words, 4, survivors=n)
    clipped = xs / np.maximum(1.0, np.linalg.norm(xs, axis=1, keepdims=True))
    d = mech.encoded_dim
    per_coord = math.sqrt(2 * n * mech.share_sigma**2 * math.log(2 * d / 1e-9))
    bound = mech.gamma * math.sqrt(d) * (n + per_coord)
    err = np.linalg.norm(decoded - clipped.sum(axis=0))
    assert err <= bound
    # and the noise is there: its energy is about d n s^2 steps (within 30 %)
    assert err > 0.7 * mech.gamma * math.sqrt(d * n) * mech.share_sigma


def test_conditional_rounding_draws_again() -> None:
    """With beta = 0.99 the bound is tight: plain randomized rounding of (0.5, ..., 0.5)
    exceeds it about 4 times in 10; the conditional rounding never returns such a draw."""
    dim = 400
    mech = DistributedDiscreteGaussian(
        clip=10.0, gamma=1.0, sigma=10.0, n_min=1, dim=dim, beta=0.99, rotate=False
    )
    x = np.full(dim, 0.5)  # norm 10: not clipped
    bound = mech.l2_sensitivity_squared
    assert bound == pytest.approx(dim / 2 + math.sqrt(2 * math.log(1 / 0.99)) * math.sqrt(dim))
    gen = seeded(11)
    plain = np.sum(gen.uniform(size=(200, dim)) < 0.5, axis=1)  # squared norms of plain draws
    assert np.count_nonzero(plain > bound) > 40
    for _ in range(200):
        r = mech.quantize(x, gen)
        assert set(np.unique(r)) <= {0, 1}
        assert int(r @ r) <= bound


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"clip": 0.0}, "clip must be > 0"),
        ({"gamma": -1.0}, "gamma must be > 0"),
        ({"sigma": math.nan}, "sigma must be finite"),
        ({"n_min": 0}, "n_min must be >= 1"),
        ({"dim": 0}, "dim must be >= 1"),
        ({"bits": 1}, r"bits must be in \[2, 32\]"),
        ({"bits": 33}, r"bits must be in \[2, 32\]"),
        ({"beta": 1.0}, r"beta must be in \[0, 1\)"),
        ({"gamma": 1e-3, "bits": 10}, "gamma must exceed"),
        ({"sigma": 0.009}, r"sigma / \(gamma sqrt\(n_honest\)\) must be in \[0.5, 2\^30\]"),
        ({"sigma": 1e8, "gamma": 1e-3}, r"must be in \[0.5, 2\^30\]"),
        ({"colluders": 4}, r"colluders must be < n_min \(4\)"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], match: str) -> None:
    params: dict[str, float] = {"clip": 1.0, "gamma": 0.01, "sigma": 1.0, "n_min": 4, "dim": 8}
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        DistributedDiscreteGaussian(**params)  # type: ignore[arg-type]


def test_bad_calls_are_refused() -> None:
    mech = DistributedDiscreteGaussian(clip=1.0, gamma=0.01, sigma=1.0, n_min=4, dim=8)
    gen = seeded(0)
    with pytest.raises(TypeError, match="rotate must be a bool"):
        DistributedDiscreteGaussian(1.0, 0.01, 1.0, 4, 8, rotate=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"survivors \(3\) < n_min \(4\)"):
        mech.decode(np.zeros(8, np.uint32), 1, survivors=3)
    with pytest.raises(ValueError, match=r"dim must be in \[1, 8\]"):
        randomized_hadamard_inverse(np.zeros(8), 1, 9)
    with pytest.raises(ValueError, match="y must have a power-of-two length"):
        randomized_hadamard_inverse(np.zeros(6), 1, 6)
    with pytest.raises(ValueError, match="rotation_seed is required"):
        mech.encode(np.zeros(8), gen)
    with pytest.raises(ValueError, match=r"x must have shape \(8,\)"):
        mech.encode(np.zeros(9), gen, 1)
    with pytest.raises(ValueError, match="x must be finite"):
        mech.encode(np.full(8, np.inf), gen, 1)
    with pytest.raises(TypeError, match="generator must be a NoiseGenerator"):
        mech.encode(np.zeros(8), np.random.default_rng(0), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total must be a uint32 array of shape"):
        mech.decode(np.zeros(8, np.int64), 1, survivors=4)
    unrotated = DistributedDiscreteGaussian(1.0, 0.01, 1.0, 4, 8, rotate=False)
    with pytest.raises(ValueError, match="rotation_seed given but rotate=False"):
        unrotated.decode(np.zeros(8, np.uint32), 1, survivors=4)
    with pytest.raises(ValueError, match=r"share_sigma must be >= 0\.5"):
        discrete_gaussian_sum_tau(0.4, 3)
    with pytest.raises(ValueError, match="orders must be finite and > 1"):
        distributed_discrete_gaussian_rdp([1.0], l2_sensitivity=1, share_sigma=1, n=1, dim=1)
    with pytest.raises(TypeError, match="accountant must be an RDPAccountant"):
        mech.record(object())  # type: ignore[arg-type]


def test_colluders_known_shares_are_not_counted() -> None:
    """8 survivors of whom 2 collude: the noise and the accounting are those of 6 shares."""
    with_colluders = DistributedDiscreteGaussian(1.0, 0.01, 2.0, n_min=8, dim=64, colluders=2)
    six = DistributedDiscreteGaussian(1.0, 0.01, 2.0, n_min=6, dim=64)
    assert with_colluders.share_sigma == six.share_sigma == 2.0 / (0.01 * math.sqrt(6))
    np.testing.assert_array_equal(with_colluders.rdp(ORDERS), six.rdp(ORDERS))
    # each share grows by sqrt(8 / 6) so that the 6 unknown shares still sum to variance
    # sigma^2: the same epsilon as 8 honest parties
    eight = DistributedDiscreteGaussian(1.0, 0.01, 2.0, n_min=8, dim=64)
    assert with_colluders.share_sigma == pytest.approx(eight.share_sigma * math.sqrt(8 / 6))
    assert with_colluders.epsilon(1e-5, 10) == pytest.approx(eight.epsilon(1e-5, 10), rel=1e-12)


def test_through_secagg_with_a_dropout_then_too_few_survivors(rng: np.random.Generator) -> None:
    """Encoded words summed by the real SecAgg+ round: one party drops, the 8 survivors'
    noised sum decodes within the tail bound; with 7 survivors decoding is refused."""
    n, dim = 9, 60
    mech = DistributedDiscreteGaussian(clip=1.0, gamma=2e-3, sigma=0.5, n_min=8, dim=dim)
    models = rng.standard_normal((n, dim)) * 0.05
    gens = seeded(21).spawn(n)
    words = {
        i: mech.encode(m, g, b"round-7") for i, (m, g) in enumerate(zip(models, gens, strict=True))
    }
    result = secure_sum(words, dropouts={3: "masked_input"})
    assert sorted(result.survivors) == [0, 1, 2, 4, 5, 6, 7, 8]
    decoded = mech.decode(result.total, b"round-7", survivors=len(result.survivors))
    d = mech.encoded_dim
    per_coord = math.sqrt(2 * 8 * mech.share_sigma**2 * math.log(2 * d / 1e-9))
    err = np.linalg.norm(decoded - np.delete(models, 3, axis=0).sum(axis=0))
    assert err <= mech.gamma * math.sqrt(d) * (8 + per_coord)
    short = secure_sum(words, dropouts={3: "masked_input", 5: "masked_input"})
    with pytest.raises(ValueError, match=r"survivors \(7\) < n_min \(8\)"):
        mech.decode(short.total, b"round-7", survivors=len(short.survivors))


def test_wrap_probability_bounds_the_observed_wraps(rng: np.random.Generator) -> None:
    """Integer sums of 4 encodings leave the centred range no more often than the bound says,
    in a signal-dominated and a noise-dominated setting near t / sqrt(V) = 2, where the
    bound (about 0.25) is a few times the Gaussian tail (about 0.04): a proxy too small by
    4 would bound the rate below 1e-3."""
    n = 4
    signal_heavy = DistributedDiscreteGaussian(
        clip=2000.0, gamma=1.0, sigma=1.0, n_min=n, dim=64, bits=12
    )
    noise_heavy = DistributedDiscreteGaussian(
        clip=1.0, gamma=1.0, sigma=2 * 1024 / 2.0, n_min=n, dim=64, bits=12, rotate=False
    )
    x = rng.standard_normal(64)
    x *= 2000.0 / np.linalg.norm(x)
    for mech, vector in [(signal_heavy, x), (noise_heavy, np.zeros(64))]:
        half = 2 ** (mech.bits - 1)
        sums = []
        for r in range(60):
            seed = r if mech.rotate else None
            gens = seeded(1000 + r).spawn(n)
            parts = [mech.quantize(vector, g, seed) for g in gens]
            noise = [g.discrete_gaussian(mech.share_sigma, mech.encoded_dim) for g in gens]
            sums.append(np.sum(parts, axis=0) + np.sum(noise, axis=0))
        total = np.concatenate(sums)
        rate = np.mean((total >= half) | (total < -half))
        bound = mech.coordinate_wrap_probability(n)
        assert 0.1 < bound < 0.5
        assert 0.005 < rate <= bound  # the rate is not negligible: the test can fail
    assert signal_heavy.wrap_probability(n) == 1.0  # 64 coordinates: the union is vacuous
    readme = DistributedDiscreteGaussian(1.0, 1e-3, 5.0, n_min=8, dim=1000, bits=20)
    assert readme.wrap_probability(9) < 1e-6
