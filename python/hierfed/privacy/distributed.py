"""The distributed discrete Gaussian mechanism (Kairouz, Liu & Steinke, ICML 2021).

Each party (a basket aggregator) turns its vector into integers that secure aggregation can
sum, with its own share of the noise already inside, so the server that unmasks the sum
never sees it un-noised:

1. clip to L2 norm ``clip``; pad with zeros to a power of two and rotate with a randomized
   Walsh-Hadamard transform of a public seed shared by the round (``rotate=True``: spreads
   the vector's mass evenly over the coordinates, which makes modular clipping rare);
2. scale by ``1 / gamma`` and round each coordinate randomly to an integer (up with the
   probability of its fractional part, so the rounding is unbiased), drawing again until the
   rounded vector's squared norm is within the paper's bound (conditional randomized
   rounding, Kairouz et al. Theorem 1: a draw is within it with probability >= 1 - beta);
3. add discrete Gaussian noise ``N_Z(0, share_sigma^2)`` per coordinate (the exact sampler
   :meth:`NoiseGenerator.discrete_gaussian`), ``share_sigma = sigma / (gamma sqrt(n_honest))``
   with ``n_honest = n_min - colluders``;
4. reduce mod ``2^bits`` (modular clipping) into uint32 words, SecAgg's input.

The server decodes the SecAgg sum (mod 2^32, reduced mod ``2^bits``) by centring it into
``[-2^(bits-1), 2^(bits-1))``, multiplying by ``gamma`` and rotating back. The result is the
sum of the parties' rotated-and-rounded vectors plus the summed noise, exactly, whenever each
coordinate of that integer sum lies in the centred range; otherwise those coordinates wrap.

Accounting. Neighbours: one party's vector replaced by zero (its noise share is still
added); for one vector replaced by another, the two encoded vectors differ by at most
``2 Delta_2``: pass that to :func:`distributed_discrete_gaussian_rdp`. The sum of ``n``
independent ``N_Z(0, s^2)``, ``s >= 1/2``, is close to ``N_Z(0, n s^2)`` (Kairouz et al.
Theorem 3, with ``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1))``); with
``Delta_2``, ``Delta_1`` the L2 and L1 bounds of one encoded vector in ``d`` coordinates
(integer steps), the release is RDP at order ``alpha`` with (their Proposition 14, eq. 17)

    eps(alpha) = min(alpha D2^2 / (2 n s^2) + tau d,
                     alpha / 2 (D2^2 / (n s^2) + 2 D1 tau / (sqrt(n) s) + tau^2 d),
                     alpha / 2 (D2 / (sqrt(n) s) + tau sqrt(d))^2).

``Delta_2^2`` is the conditional rounding's bound, enforced by the draw-again loop (so it
holds by construction), and ``Delta_1 = Delta_2 min(sqrt(d), Delta_2)`` (an integer vector's
L1 norm is at most its squared L2 norm). Modular reduction and decoding are
post-processing.

Survivors: ``n_min`` is the fewest survivors a round accepts, ``colluders`` the most parties
that may collude with the server (they know their own noise shares, which then protect
nobody). The shares are sized, and the accounting done, for the ``n_min - colluders`` shares
the adversary does not know. A sum over more parties holds more independent noise, which
(post-processing) can only lower the divergence, so the bound holds for every round with at
least ``n_min`` survivors; :meth:`DistributedDiscreteGaussian.decode` refuses a sum of fewer
(the round must abort, or its survivors top up their noise: never release it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _backend, _checks
from .accountant import Orders, RDPAccountant, _orders, rdp_to_epsilon
from .clipping import clip_by_l2_norm
from .rng import NoiseGenerator

__all__ = [
    "DistributedDiscreteGaussian",
    "conditional_rounding_bound",
    "discrete_gaussian_sum_tau",
    "distributed_discrete_gaussian_rdp",
    "randomized_hadamard",
    "randomized_hadamard_inverse",
]

_FAILURE_EXPONENT = 60.0  # draw-again loop: give up with probability <= e^-60


def conditional_rounding_bound(norm: float, dim: int, beta: float) -> float:
    """Squared L2 norm bound of a vector of norm <= ``norm`` after conditional rounding.

    ``min((norm + sqrt(d))^2, norm^2 + d/4 + sqrt(2 log(1/beta)) (norm + sqrt(d)/2))``
    (Kairouz et al. 2021, Theorem 1); the first always holds (each coordinate moves by less
    than 1), the second with probability >= 1 - beta per draw; ``beta = 0`` keeps the first.
    """
    c = _checks.non_negative(norm, "norm")
    d = _checks.count(dim, "dim", minimum=1)
    b = _checks.real(beta, "beta")
    if not 0 <= b < 1:
        raise ValueError(f"beta must be in [0, 1), got {b}")
    always = (c + math.sqrt(d)) ** 2
    if b == 0:
        return always
    likely = c * c + d / 4 + math.sqrt(2 * math.log(1 / b)) * (c + math.sqrt(d) / 2)
    return min(always, likely)


def discrete_gaussian_sum_tau(share_sigma: float, n: int) -> float:
    """``tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s^2 k / (k + 1))`` of Kairouz et al. Theorem 3.

    The sum of ``n`` independent ``N_Z(0, s^2)`` (``s >= 1/2``) has, at every integer, a
    probability within a factor ``1 + tau`` of ``N_Z(0, n s^2)``'s.
    """
    s = _checks.real(share_sigma, "share_sigma")
    if s < 0.5:
        raise ValueError(f"share_sigma must be >= 0.5 (Kairouz et al. Theorem 3), got {s}")
    count = _checks.count(n, "n", minimum=1)
    k = np.arange(1, count, dtype=np.float64)
    return float(10 * np.sum(np.exp(-2 * math.pi**2 * s * s * k / (k + 1))))


def distributed_discrete_gaussian_rdp(
    orders: Orders | None,
    *,
    l2_sensitivity: float,
    share_sigma: float,
    n: int,
    dim: int,
    l1_sensitivity: float | None = None,
) -> NDArray[np.float64]:
    """RDP at each order of the sum of ``n`` parties' ``N_Z(0, share_sigma^2)`` noise.

    Kairouz et al. 2021, Proposition 14 (see the module docstring), in integer units:
    ``l2_sensitivity`` and ``l1_sensitivity`` (default ``l2 min(sqrt(dim), l2)``, valid for
    integer vectors) bound one party's encoded vector, ``dim`` its coordinates; ``orders``
    ``None`` means ``hierfed.privacy.DEFAULT_ORDERS``.
    """
    ords = _orders(orders)
    l2 = _checks.non_negative(l2_sensitivity, "l2_sensitivity")
    d = _checks.count(dim, "dim", minimum=1)
    l1 = (
        l2 * min(math.sqrt(d), l2)
        if l1_sensitivity is None
        else _checks.non_negative(l1_sensitivity, "l1_sensitivity")
    )
    tau = discrete_gaussian_sum_tau(share_sigma, n)
    scale = math.sqrt(n) * float(share_sigma)
    a2, a1 = (l2 / scale) ** 2, l1 / scale
    first = ords * a2 / 2 + tau * d
    second = ords / 2 * (a2 + 2 * a1 * tau + tau * tau * d)
    third = ords / 2 * (l2 / scale + tau * math.sqrt(d)) ** 2
    return np.minimum(np.minimum(first, second), third)


def _hadamard(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """``v <- H v`` in place and returned: the unnormalised Walsh-Hadamard transform
    (Sylvester order; ``H H = d I``) by the active backend's kernel (the same bits on every
    backend and thread count). ``v`` must be a fresh C-contiguous float64 array."""
    _backend.kernels().walsh_hadamard(v, _backend.get_num_threads())
    return v


def _signs(seed: int | bytes, dim: int) -> NDArray[np.float64]:
    words: NDArray[np.uint32] = NoiseGenerator(seed=seed, secure=False).random_uint32(dim)
    return 1.0 - 2.0 * (words & 1).astype(np.float64)


def _power_of_two(dim: int) -> int:
    return 1 << (dim - 1).bit_length()


def randomized_hadamard(x: Any, seed: int | bytes) -> NDArray[np.float64]:
    """``H D x / sqrt(d)``: ``x`` zero-padded to a power of two ``d``, ``D`` random signs from
    ``seed``; an orthogonal map (norms kept up to float rounding)."""
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    size = _power_of_two(max(v.size, 1))
    padded = np.zeros(size)
    padded[: v.size] = v
    return _hadamard(_signs(seed, size) * padded) / math.sqrt(size)


def randomized_hadamard_inverse(y: Any, seed: int | bytes, dim: int) -> NDArray[np.float64]:
    """The first ``dim`` coordinates of ``D H y / sqrt(d)``: undoes :func:`randomized_hadamard`."""
    v = np.asarray(y, dtype=np.float64).reshape(-1)
    if v.size != _power_of_two(max(v.size, 1)):
        raise ValueError(f"y must have a power-of-two length, got {v.size}")
    if not 1 <= _checks.count(dim, "dim") <= v.size:
        raise ValueError(f"dim must be in [1, {v.size}] (the length of y), got {dim}")
    return (_signs(seed, v.size) * _hadamard(v.copy()) / math.sqrt(v.size))[:dim]


@dataclass(frozen=True)
class DistributedDiscreteGaussian:
    """Encoding, decoding and accounting of the distributed discrete Gaussian for one setup.

    Every party and the server build it from the same public parameters.

    Parameters
    ----------
    clip
        L2 norm each party's vector is clipped to (the vector's units).
    gamma
        Granularity: one integer step is ``gamma`` in the vector's units.
    sigma
        Standard deviation of the noise the server cannot remove (the vector's units): the
        sum of the :attr:`n_honest` shares it does not know; a central Gaussian of this
        sigma is what the released sum is compared with.
    n_min
        The fewest survivors (parties whose words are in the sum) a round releases with.
    dim
        Length of the vectors.
    bits
        Modulus ``2^bits`` of the encoded words (2 to 32; SecAgg sums uint32 mod 2^32).
    beta
        Conditional rounding's parameter in [0, 1): a larger beta tightens the norm bound
        (less privacy loss for the same noise) but each draw meets it only with probability
        >= 1 - beta, so rounding takes more draws (``exp(-0.5)`` as in the paper; 0 keeps
        the bound that always holds).
    rotate
        Randomized Walsh-Hadamard rotation before rounding (then each round needs a shared
        public ``rotation_seed``, and vectors are padded to :attr:`encoded_dim`).
    colluders
        The most parties that may collude with the server, in ``[0, n_min)``; the noise is
        sized for the other :attr:`n_honest` = ``n_min - colluders``.
    """

    clip: float
    gamma: float
    sigma: float
    n_min: int
    dim: int
    bits: int = 32
    beta: float = math.exp(-0.5)
    rotate: bool = True
    colluders: int = 0

    def __post_init__(self) -> None:
        _checks.positive(self.clip, "clip")
        _checks.positive(self.gamma, "gamma")
        _checks.positive(self.sigma, "sigma")
        _checks.count(self.n_min, "n_min", minimum=1)
        _checks.count(self.dim, "dim", minimum=1)
        if _checks.count(self.bits, "bits") not in range(2, 33):
            raise ValueError(f"bits must be in [2, 32], got {self.bits}")
        conditional_rounding_bound(1.0, 1, self.beta)  # checks beta
        if not isinstance(self.rotate, bool):
            raise TypeError(f"rotate must be a bool, got {type(self.rotate).__name__}")
        if _checks.count(self.colluders, "colluders") >= self.n_min:
            raise ValueError(
                f"colluders must be < n_min ({self.n_min}), got {self.colluders}: some noise "
                f"must stay unknown to the server"
            )
        if self.clip / self.gamma + 1 >= 2.0 ** (self.bits - 1):
            raise ValueError(
                f"gamma must exceed clip / (2^(bits-1) - 1) = "
                f"{self.clip / (2.0 ** (self.bits - 1) - 1):g}: one clipped vector must fit "
                f"in the centred range of 2^bits"
            )
        if not 0.5 <= self.share_sigma <= 2.0**30:
            raise ValueError(
                f"sigma / (gamma sqrt(n_honest)) must be in [0.5, 2^30] (each party's noise in "
                f"integer steps: Kairouz et al. Theorem 3 needs >= 0.5, the sampler <= 2^30), "
                f"got {self.share_sigma:g}: change gamma"
            )

    @property
    def encoded_dim(self) -> int:
        """Words per encoded vector: ``dim`` padded to a power of two when rotating."""
        return _power_of_two(self.dim) if self.rotate else self.dim

    @property
    def n_honest(self) -> int:
        """Noise shares the server cannot know in a sum of :attr:`n_min` survivors."""
        return self.n_min - self.colluders

    @property
    def share_sigma(self) -> float:
        """Each party's noise, in integer steps: ``sigma / (gamma sqrt(n_honest))``."""
        return self.sigma / (self.gamma * math.sqrt(self.n_honest))

    @property
    def l2_sensitivity_squared(self) -> float:
        """Bound on one encoded vector's squared L2 norm, in integer steps (enforced)."""
        return conditional_rounding_bound(self.clip / self.gamma, self.encoded_dim, self.beta)

    def _seed(self, rotation_seed: int | bytes | None) -> int | bytes | None:
        if self.rotate and rotation_seed is None:
            raise ValueError("rotation_seed is required with rotate=True (public, per round)")
        if not self.rotate and rotation_seed is not None:
            raise ValueError("rotation_seed given but rotate=False")
        return rotation_seed

    def quantize(
        self,
        x: Any,
        generator: NoiseGenerator,
        rotation_seed: int | bytes | None = None,
    ) -> NDArray[np.int64]:
        """``x`` clipped, rotated, scaled by ``1/gamma`` and conditionally rounded (no noise).

        The result's squared norm is at most :attr:`l2_sensitivity_squared` (checked).
        """
        if not isinstance(generator, NoiseGenerator):
            raise TypeError(f"generator must be a NoiseGenerator, got {type(generator).__name__}")
        seed = self._seed(rotation_seed)
        v = np.asarray(x, dtype=np.float64)
        if v.shape != (self.dim,):
            raise ValueError(f"x must have shape ({self.dim},), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("x must be finite")
        clipped = clip_by_l2_norm(v[None, :], self.clip)[0]
        y = clipped if seed is None else randomized_hadamard(clipped, seed)
        return self._round(y / self.gamma, generator)

    def encode(
        self,
        x: Any,
        generator: NoiseGenerator,
        rotation_seed: int | bytes | None = None,
    ) -> NDArray[np.uint32]:
        """One party's SecAgg input: :meth:`quantize` plus ``N_Z(0, share_sigma^2)`` noise per
        coordinate (drawn from ``generator`` next), reduced mod ``2^bits`` (words < 2^bits)."""
        rounded = self.quantize(x, generator, rotation_seed)
        noised = rounded + generator.discrete_gaussian(self.share_sigma, rounded.size)
        return self.wrap(noised)

    def wrap(self, integers: NDArray[np.int64]) -> NDArray[np.uint32]:
        """Integers reduced mod ``2^bits`` into uint32 words (modular clipping)."""
        return (np.asarray(integers, dtype=np.int64) & ((1 << self.bits) - 1)).astype(np.uint32)

    def _round(self, y: NDArray[np.float64], generator: NoiseGenerator) -> NDArray[np.int64]:
        """Conditional randomized rounding: draw until the squared norm is within the bound."""
        bound = self.l2_sensitivity_squared
        low = np.floor(y)
        frac = y - low
        base = low.astype(np.int64)
        attempts = 8 if self.beta == 0 else 8 + math.ceil(_FAILURE_EXPONENT / -math.log(self.beta))
        for _ in range(attempts):
            r: NDArray[np.int64] = base + (generator.uniform(size=y.size) < frac)
            if int(np.dot(r, r)) <= bound:
                return r
        raise RuntimeError(  # pragma: no cover - probability <= e^-60 for a clipped vector
            "conditional rounding found no draw within the norm bound"
        )

    def decode(
        self, total: Any, rotation_seed: int | bytes | None = None, *, survivors: int
    ) -> NDArray[np.float64]:
        """The noised sum of the parties' vectors from SecAgg's uint32 total (mod 2^32).

        ``survivors`` is how many parties' words are in ``total``; fewer than :attr:`n_min`
        is refused (ValueError): that sum holds too little noise. Exact (up to float
        rounding of the inverse rotation) when each coordinate of the integer sum lies in
        ``[-2^(bits-1), 2^(bits-1))``; coordinates outside wrap.
        """
        if _checks.count(survivors, "survivors") < self.n_min:
            raise ValueError(
                f"survivors ({survivors}) < n_min ({self.n_min}): the sum holds too little "
                f"noise to be released; abort the round (or have the survivors top up)"
            )
        seed = self._seed(rotation_seed)
        words = np.asarray(total)
        if words.dtype != np.uint32 or words.shape != (self.encoded_dim,):
            raise ValueError(
                f"total must be a uint32 array of shape ({self.encoded_dim},), got "
                f"{words.dtype} {words.shape}"
            )
        reduced = words.astype(np.int64) & ((1 << self.bits) - 1)
        half = 1 << (self.bits - 1)
        centred = np.where(reduced >= half, reduced - (1 << self.bits), reduced)
        scaled = centred.astype(np.float64) * self.gamma
        return scaled if seed is None else randomized_hadamard_inverse(scaled, seed, self.dim)

    def coordinate_wrap_probability(self, survivors: int) -> float:
        """Bound on the probability that one coordinate of the integer sum of ``survivors``
        encodings leaves ``[-2^(bits-1), 2^(bits-1))`` (so wraps), for inputs chosen without
        knowledge of the round's rotation seed.

        A coordinate is signal + rounding errors + noise. The rotated signal is sub-Gaussian
        with variance proxy ``(survivors clip / gamma)^2 / encoded_dim`` (Hoeffding over the
        random signs; unrotated it is at most ``survivors clip / gamma``), the rounding
        errors sum to less than ``survivors`` in size, and the noise is
        ``survivors share_sigma^2``-sub-Gaussian (Canonne, Kamath & Steinke 2020): the bound
        is ``2 exp(-t^2 / (2 V))``, ``t`` the half-range less the bounded terms.
        """
        n = _checks.count(survivors, "survivors", minimum=1)
        signal = n * self.clip / self.gamma
        slack = 2.0 ** (self.bits - 1) - n - (0.0 if self.rotate else signal)
        # the sampler rounds sigma^2 up by less than 2^-28 relative: 2^-20 covers it
        proxy = n * self.share_sigma**2 * (1 + 2.0**-20)
        if self.rotate:
            proxy += signal**2 / self.encoded_dim
        if slack <= 0:
            return 1.0
        return min(1.0, 2 * math.exp(-(slack**2) / (2 * proxy)))

    def wrap_probability(self, survivors: int) -> float:
        """Bound on the probability that any coordinate wraps (union over the coordinates)."""
        return min(1.0, self.encoded_dim * self.coordinate_wrap_probability(survivors))

    def rdp(self, orders: Orders | None = None) -> NDArray[np.float64]:
        """RDP of one release at each order (default ``hierfed.privacy.DEFAULT_ORDERS``)."""
        return distributed_discrete_gaussian_rdp(
            orders,
            l2_sensitivity=math.sqrt(self.l2_sensitivity_squared),
            share_sigma=self.share_sigma,
            n=self.n_honest,
            dim=self.encoded_dim,
        )

    def epsilon(self, delta: float, rounds: int = 1, orders: Orders | None = None) -> float:
        """Epsilon of ``rounds`` releases at ``delta`` (RDP composed, Balle et al. 2020)."""
        ords = _orders(orders)
        count = _checks.count(rounds, "rounds")
        return rdp_to_epsilon(ords, self.rdp(ords) * count, delta)[0]

    def record(self, accountant: RDPAccountant, rounds: int = 1) -> None:
        """Add ``rounds`` releases to ``accountant`` (at its orders)."""
        if not isinstance(accountant, RDPAccountant):
            raise TypeError(f"accountant must be an RDPAccountant, got {type(accountant).__name__}")
        accountant.add_rdp(self.rdp(accountant.orders), rounds)
