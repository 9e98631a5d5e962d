"""ChaCha20 noise generator: cryptographically secure by default, reproducible on request.

The stream of a key is the RFC 8439 ChaCha20 keystream and is the same on every backend and
every thread count; noise is drawn from it by exact integer steps and polynomial transforms of
basic IEEE operations (see ``cpp/include/hierfed/noise.hpp``), so draws agree bit for bit
across backends too.

Floating-point noise leaks through its least significant bits (Mironov 2012): where that
matters, add :meth:`NoiseGenerator.discrete_gaussian` noise to integer (fixed-point) values.

Fork safety: in a child process made by ``os.fork()`` (so also by a ``fork`` multiprocessing
pool), every live secure generator re-keys itself from ``os.urandom`` before the child runs
any Python code (``os.register_at_fork``), so parent and children never draw the same secure
noise. Seeded generators (``secure=False``) keep their stream: like numpy's, a forked seeded
generator repeats its parent's draws; use :meth:`NoiseGenerator.spawn` before forking for
independent reproducible streams. :func:`fork_generation` tells other objects holding secrets
(secagg's clients) that they now live in a forked copy.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import weakref
from fractions import Fraction
from typing import Any, NoReturn

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .. import _backend, _checks

__all__ = [
    "NoiseGenerator",
    "chacha20_keystream",
    "discrete_gaussian_parameters",
    "fork_generation",
]

_BLOCKS = 1 << 32  # blocks of one (key, nonce) stream
_SUPER = 16  # blocks per super-block of the noise kernels
_DG_CHUNK = 1024  # samples per chunk (own nonce) of the discrete Gaussian
_DG_LIMIT = 1 << 62
_SEED_DOMAIN = b"hierfed.privacy.NoiseGenerator.seed.v1\x00"
_UNIFORM, _NORMAL, _LAPLACE = 0, 1, 2
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Size = int | tuple[int, ...] | None

_LIVE: weakref.WeakSet[NoiseGenerator] = weakref.WeakSet()  # every generator, for fork
_fork_generation = 0


def fork_generation() -> int:
    """How many ``os.fork()`` calls separate this process from the one that imported hierfed.

    0 in that process; each child made by ``os.fork()`` (or a ``fork`` multiprocessing pool)
    starts at its parent's value plus one. The value only grows along a line of descent, so an
    object that records it when created is in a forked copy of itself exactly when the current
    value differs; unlike ``os.getpid()`` it cannot be fooled by a reused pid. Reading it is
    one global lookup.
    """
    return _fork_generation


def _after_fork_in_child() -> None:
    """Re-key every secure generator, and give every generator a fresh lock (a thread of the
    parent may have held it at the fork, and that thread does not exist in the child)."""
    global _fork_generation
    _fork_generation += 1
    for gen in list(_LIVE):
        gen._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX; without fork there is nothing to protect
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _words(data: bytes, count: int, name: str) -> NDArray[np.uint32]:
    """``data`` (``4 * count`` bytes) as little-endian uint32 words."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes, got {type(data).__name__}")
    raw = bytes(data)
    if len(raw) != 4 * count:
        raise ValueError(f"{name} must be {4 * count} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def chacha20_keystream(key: bytes, nonce: bytes, counter: int, n_words: int) -> NDArray[np.uint32]:
    """The RFC 8439 ChaCha20 keystream as ``n_words`` uint32 words from block ``counter``.

    Word ``16 b + w`` is word ``w`` of block ``counter + b`` (its bytes, little-endian, are the
    serialised block). Raises ValueError if the stream would pass block ``2^32 - 1``: the
    32-bit counter never wraps.

    Parameters
    ----------
    key
        32 bytes.
    nonce
        12 bytes.
    counter
        The first block, in ``[0, 2^32)``.
    n_words
        Number of words (>= 0).
    """
    k = _words(key, 8, "key")
    nn = _words(nonce, 3, "nonce")
    c = _checks.count(counter, "counter")
    n = _checks.count(n_words, "n_words")
    if c >= _BLOCKS:
        raise ValueError(f"counter must be < 2^32, got {c}")
    if c + -(-n // 16) > _BLOCKS:
        raise ValueError(
            f"counter {c} + {-(-n // 16)} blocks passes block 2^32 - 1: the 32-bit block "
            "counter would wrap"
        )
    out = np.empty(n, np.uint32)
    if n:
        _backend.kernels().chacha20_keystream(k, nn, c, out, _backend.get_num_threads())
    return out


def _key_from_seed(seed: Any) -> bytes:
    """A 32-byte key from an int or bytes seed: SHA-256 of a domain-separated encoding."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int or bytes, got bool")
    if isinstance(seed, (int, np.integer)):
        v = int(seed)
        data = b"int:" + v.to_bytes(v.bit_length() // 8 + 1, "little", signed=True)
    elif isinstance(seed, (bytes, bytearray, memoryview)):
        data = b"bytes:" + bytes(seed)
    else:
        raise TypeError(f"seed must be an int or bytes, got {type(seed).__name__}")
    return hashlib.sha256(_SEED_DOMAIN + data).digest()


def _shape(size: Size) -> tuple[int, ...]:
    if size is None:
        return ()
    if isinstance(size, (tuple, list)):
        return tuple(_checks.count(s, "size") for s in size)
    return (_checks.count(size, "size"),)


def _dtype(dtype: DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in _DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def discrete_gaussian_parameters(sigma: float) -> tuple[int, int, int, int, int]:
    """Exact integer parameters ``(t, alpha, beta, denom, ymax)`` of the sampler for ``sigma``.

    The acceptance probability of CKS Algorithm 3 is ``exp(-(|Y| alpha - beta)^2 / denom)``
    with ``denom < 2^62``. For ``sigma < 2^15`` the variance is rounded up to ``P / 2^E``
    with the largest ``E`` that keeps ``denom < 2^62`` (about 29 significant bits for
    ``sigma >= 1``, fewer below); above, ``sigma`` is rounded up to an integer (a relative
    change below 2^-15). Rounding up never weakens privacy.
    """
    sigma = _checks.real(sigma, "sigma")
    if not 1e-6 <= sigma <= 2.0**30:
        raise ValueError(f"sigma must be 0 or in [1e-6, 2^30] for discrete_gaussian, got {sigma}")
    f = Fraction(sigma)
    s2 = f * f
    if s2 < 1 << 30:
        for e in range(62, -1, -1):
            q = 1 << e
            p = -((-s2.numerator * q) // s2.denominator)  # ceil(s2 * q)
            t = math.isqrt(p // q) + 1
            denom = 2 * p * q * t * t
            if denom < _DG_LIMIT:
                return t, t * q, p, denom, _DG_LIMIT // (t * q)
    s = math.ceil(f)
    return s, 1, s, 2 * s * s, _DG_LIMIT


class NoiseGenerator:
    """Noise from a ChaCha20 keystream (RFC 8439).

    Parameters
    ----------
    seed
        ``None`` (default): a fresh 256-bit key from ``os.urandom``. An int or bytes gives a
        reproducible stream (key = SHA-256 of a domain-separated encoding of the seed) and
        requires ``secure=False``: a seeded stream is predictable, so it is refused for
        secure use (as Opacus' secure mode refuses seeds).
    secure
        Whether the generator is meant for privacy noise; ``True`` refuses ``seed``.

    Notes
    -----
    Each call draws from whole super-blocks of 16 ChaCha20 blocks (256 words) and starts
    where the previous call's blocks ended. A (key, nonce) stream has 2^32 blocks; a call
    that does not fit in what is left moves on to a fresh nonce, so the 32-bit block counter
    never wraps. Children of :meth:`spawn` get their own keys, taken from this stream.
    A generator cannot be copied or pickled: two copies would draw the same noise.
    The generator is thread-safe (each call reserves its blocks under a lock).

    After ``os.fork()`` a secure generator in the child has a fresh key from ``os.urandom``
    (its counter and nonce restart), so the child's draws are independent of the parent's and
    of its siblings'; a seeded generator continues its parent's stream unchanged (as numpy's
    do): spawn one child per process before forking for distinct reproducible streams.
    """

    def __init__(self, seed: int | bytes | None = None, *, secure: bool = True) -> None:
        if not isinstance(secure, (bool, np.bool_)):
            raise TypeError(f"secure must be a bool, got {type(secure).__name__}")
        if seed is not None and secure:
            raise ValueError(
                "seed given with secure=True: a seeded stream is reproducible, hence "
                "predictable; pass secure=False for reproducible noise (tests, simulations)"
            )
        key = os.urandom(32) if seed is None else _key_from_seed(seed)
        self._setup(key, bool(secure))

    def _setup(self, key: bytes, secure: bool) -> None:
        self._key = np.frombuffer(key, dtype="<u4").astype(np.uint32)
        self._secure = secure
        self._epoch = 0
        self._counter = 0
        self._lock = threading.Lock()
        _LIVE.add(self)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock; a fresh key (counter and nonce from 0) if secure."""
        self._lock = threading.Lock()
        if self._secure:
            self._key = np.frombuffer(os.urandom(32), dtype="<u4").astype(np.uint32)
            self._epoch = 0
            self._counter = 0

    @classmethod
    def _from_key(cls, key: bytes, secure: bool) -> NoiseGenerator:
        gen = cls.__new__(cls)
        gen._setup(key, secure)
        return gen

    @property
    def secure(self) -> bool:
        """Whether the key came from the OS's entropy (never from a seed)."""
        return self._secure

    def __repr__(self) -> str:
        return f"NoiseGenerator(secure={self._secure})"

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "a NoiseGenerator cannot be copied or pickled: two copies would draw the same "
            "noise; use spawn() for independent streams"
        )

    def _reserve(self, blocks: int) -> tuple[NDArray[np.uint32], NDArray[np.uint32], int]:
        """Reserve ``blocks`` consecutive blocks: (key, nonce, first counter)."""
        if blocks > _BLOCKS:
            raise ValueError(
                f"one call may use at most 2^32 ChaCha20 blocks (2^36 words); this one "
                f"needs {blocks}: split the request"
            )
        with self._lock:
            if self._counter + blocks > _BLOCKS:
                self._epoch += 1  # a fresh nonce rather than a wrapped counter
                self._counter = 0
            counter, epoch = self._counter, self._epoch
            self._counter += blocks
        nonce = np.array(
            [epoch & 0xFFFFFFFF, (epoch >> 32) & 0xFFFFFFFF, (epoch >> 64) & 0xFFFFFFFF],
            np.uint32,
        )
        return self._key, nonce, counter

    # ---------------------------------------------------------------------------- draws

    def _target(
        self, size: Size, dtype: np.dtype[Any], out: Any
    ) -> tuple[NDArray[Any], NDArray[Any] | None]:
        """(flat contiguous buffer to fill, the user's ``out`` when a copy back is needed)."""
        if out is None:
            return np.empty(_shape(size), dtype).reshape(-1), None
        if size is not None:
            raise ValueError("pass size or out, not both")
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
        if out.dtype != dtype:
            raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
        if out.flags.c_contiguous and out.flags.aligned:
            return out.reshape(-1), None
        return np.empty(out.size, dtype), out

    def _fill(
        self,
        kind: int,
        loc: float,
        scale: float,
        size: Size,
        dtype: DTypeLike | None,
        out: Any,
    ) -> Any:
        """Draws of ``kind`` (``dtype`` default: ``out``'s, else float64)."""
        if dtype is None:
            dtype = out.dtype if isinstance(out, np.ndarray) else np.float64
        dt = _dtype(dtype)
        flat, back = self._target(size, dt, out)
        self._noise_into(flat, kind, loc, scale, accumulate=False)
        if back is not None:
            back[...] = flat.reshape(back.shape)
            return back
        if out is not None:
            return out
        if size is None:
            return float(flat[0])
        return flat.reshape(_shape(size))

    def _fill_loc_scale(
        self, kind: int, loc: Any, scale: Any, size: Size, dtype: DTypeLike | None, out: Any
    ) -> Any:
        """:meth:`_fill` for a location-scale family: ``loc`` real, ``scale >= 0``."""
        loc_ = _checks.real(loc, "loc")
        return self._fill(kind, loc_, _checks.non_negative(scale, "scale"), size, dtype, out)

    def _noise_into(
        self, flat: NDArray[Any], kind: int, loc: float, scale: float, *, accumulate: bool
    ) -> None:
        """Fill (or add to) the 1-D contiguous float array ``flat`` with draws of ``kind``."""
        n = flat.size
        if n == 0:
            return
        per = 256 if (kind == _UNIFORM and flat.dtype == np.float32) else 128
        key, nonce, counter = self._reserve(_SUPER * -(-n // per))
        _backend.kernels().chacha20_noise(
            key, nonce, counter, flat, kind, loc, scale, accumulate, _backend.get_num_threads()
        )

    def random_uint32(self, size: Size = None) -> Any:
        """Raw keystream words (uint32): an int for ``size=None``, else an array."""
        shape = _shape(size)
        n = math.prod(shape)
        out = np.empty(max(n, 1) if size is None else n, np.uint32)
        if out.size:
            key, nonce, counter = self._reserve(_SUPER * -(-out.size // 256))
            _backend.kernels().chacha20_keystream(
                key, nonce, counter, out, _backend.get_num_threads()
            )
        return int(out[0]) if size is None else out.reshape(shape)

    def uniform(
        self,
        low: float = 0.0,
        high: float = 1.0,
        size: Size = None,
        dtype: DTypeLike | None = None,
        *,
        out: NDArray[np.floating[Any]] | None = None,
    ) -> Any:
        """Uniform draws ``low + (high - low) u``, ``u`` in [0, 1) on a grid of 2^-53 (2^-24
        for float32); rounding to the dtype may give ``high`` itself, as in numpy."""
        lo = _checks.real(low, "low")
        span = _checks.real(high, "high") - lo
        if not math.isfinite(span):
            raise ValueError("high - low overflows")
        return self._fill(_UNIFORM, lo, span, size, dtype, out)

    def standard_normal(
        self,
        size: Size = None,
        dtype: DTypeLike | None = None,
        *,
        out: NDArray[np.floating[Any]] | None = None,
    ) -> Any:
        """Standard normal draws (Box-Muller on 53-bit uniforms; tails to 8.5 sigma).

        float32 draws are the float64 ones rounded. Floating-point noise leaks through its
        low bits (Mironov 2012): :meth:`discrete_gaussian` is the exact alternative.
        """
        return self._fill(_NORMAL, 0.0, 1.0, size, dtype, out)

    def normal(
        self,
        loc: float = 0.0,
        scale: float = 1.0,
        size: Size = None,
        dtype: DTypeLike | None = None,
        *,
        out: NDArray[np.floating[Any]] | None = None,
    ) -> Any:
        """Normal draws ``loc + scale z`` (computed in float64, rounded once to ``dtype``)."""
        return self._fill_loc_scale(_NORMAL, loc, scale, size, dtype, out)

    def laplace(
        self,
        loc: float = 0.0,
        scale: float = 1.0,
        size: Size = None,
        dtype: DTypeLike | None = None,
        *,
        out: NDArray[np.floating[Any]] | None = None,
    ) -> Any:
        """Laplace draws ``loc + scale L``, density ``exp(-|x - loc| / scale) / (2 scale)``.

        ``L`` has a random sign and magnitude ``-ln u``, ``u`` uniform on a 2^-53 grid.
        """
        return self._fill_loc_scale(_LAPLACE, loc, scale, size, dtype, out)

    def discrete_gaussian(self, sigma: float, size: Size = None) -> Any:
        """Exact samples of the discrete Gaussian ``P(k) ~ exp(-k^2 / (2 sigma^2))`` (int64).

        Canonne, Kamath and Steinke (2020), Algorithms 1-3, in exact integer arithmetic: no
        floating point touches the samples, so nothing leaks through rounding (unlike
        float noise, Mironov 2012). ``sigma`` is 0 (all zeros) or in ``[1e-6, 2^30]``; the
        variance used is ``sigma^2`` rounded up (see ``discrete_gaussian_parameters``).
        Rejection sampling takes a data-independent but random time per sample.
        """
        s = _checks.non_negative(sigma, "sigma")
        params = discrete_gaussian_parameters(s) if s > 0 else None
        shape = _shape(size)
        out = np.zeros(max(1, math.prod(shape)) if size is None else math.prod(shape), np.int64)
        if out.size and params is not None:
            t, alpha, beta, denom, ymax = params
            key, nonce, counter = self._reserve(1)
            block = np.empty(16, np.uint32)
            _backend.kernels().chacha20_keystream(key, nonce, counter, block, 1)
            # A call key from this stream; chunk c of the call uses nonce (c, 0, 0).
            _backend.kernels().discrete_gaussian(
                np.ascontiguousarray(block[:8]),
                out,
                t,
                alpha,
                beta,
                denom,
                ymax,
                _DG_CHUNK,
                _backend.get_num_threads(),
            )
        return int(out[0]) if size is None else out.reshape(shape)

    def spawn(self, n: int) -> list[NoiseGenerator]:
        """``n`` independent generators, keyed by 256-bit keys taken from this stream."""
        count = _checks.count(n, "n")
        if count == 0:
            return []
        words = -(-8 * count // 256) * 256
        key, nonce, counter = self._reserve(_SUPER * (words // 256))
        stream = np.empty(words, np.uint32)
        _backend.kernels().chacha20_keystream(key, nonce, counter, stream, 1)
        raw = stream.astype("<u4").tobytes()
        return [
            NoiseGenerator._from_key(raw[32 * i : 32 * (i + 1)], self._secure) for i in range(count)
        ]
