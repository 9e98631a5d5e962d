"""Harnesses of :mod:`hierfed.privacy`: norms, clipping, noise, the generator's methods and
the raw ChaCha20 keystream, each run on the backend under test and on the numpy reference.

Noise comes from seeded generators (``secure=False``) built afresh for each backend: the
streams, and so the draws, must agree bit for bit (DESIGN.md, "Privacy")."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import _gen
import numpy as np
from _compare import WrongResultError, agree, has_nonfinite, on, rtol_for, same, scale_of
from _data import Data
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

import hierfed
from hierfed import _backend, privacy

Target = Callable[[Data], None]


def _in_place(call: Callable[[Any], Any], x: Any, data: Data) -> tuple[Any, Any]:
    """``call(x)`` on the backend under test, ``call(clone of x)`` on the reference."""
    ref = _gen.clone(x)
    saved = hierfed.get_num_threads()
    hierfed.set_num_threads(data.int(1, 3))
    try:
        got = on(_backend.backend(), lambda: call(x))
    finally:
        hierfed.set_num_threads(saved)
    return got, on("numpy", lambda: call(ref))


def _both(call: Callable[[], Any], data: Data) -> tuple[Any, Any]:
    """``call`` on the backend under test (1-3 threads) and on the reference."""
    saved = hierfed.get_num_threads()
    hierfed.set_num_threads(data.int(1, 3))
    try:
        got = on(_backend.backend(), call)
    finally:
        hierfed.set_num_threads(saved)
    return got, on("numpy", call)


def l2_norms(data: Data) -> None:
    u = _gen.updates(data)
    check_finite = not data.chance(6)
    got, want = _both(lambda: privacy.l2_norms(u, check_finite=check_finite), data)
    agree(got, want, 1e-13)


def _norm64(parts: list[np.ndarray[Any, Any]]) -> float:
    top = max((float(np.max(np.abs(p))) for p in parts if p.size), default=0.0)
    if top == 0.0:
        return 0.0
    return top * math.sqrt(sum(float(np.sum(np.square(p / top, dtype=np.float64))) for p in parts))


def _rows(result: Any) -> list[list[np.ndarray[Any, Any]]]:
    """Each update of a clip result as float64 parts."""
    if isinstance(result, np.ndarray):
        return [[r.astype(np.float64)] for r in result]
    return [
        [np.asarray(p, np.float64) for p in (r if isinstance(r, list) else [r])] for r in result
    ]


def clip_by_l2_norm(data: Data) -> None:
    u = _gen.updates(data)
    max_norm = _gen.real(data) if data.chance(4) else 10.0 ** data.int(-6, 6)
    check_finite = not data.chance(6)
    return_norms = bool(data.int(0, 1))
    out_kind = data.int(0, 4)  # 0: new arrays, 1: in place, 2: a fresh out, 3: bad out

    def call(updates: Any) -> Any:
        out: Any = None
        if out_kind == 1:
            out = updates
        elif out_kind == 2:
            out = _gen.clone(updates)
        elif out_kind == 3:
            out = data_bad_out
        return privacy.clip_by_l2_norm(
            updates, max_norm, out, check_finite=check_finite, return_norms=return_norms
        )

    data_bad_out = data.pick((np.zeros(3), [np.zeros(2)], "x", None))
    got, want = _in_place(call, u, data)
    agree(got, want, rtol_for(u) / 10, scale_of(u))
    if got.ok and not has_nonfinite(u) and isinstance(max_norm, (float, int)):
        result = got.value[0] if return_norms else got.value
        for i, parts in enumerate(_rows(result)):
            if _norm64(parts) > float(max_norm) * (1 + 1e-12):
                raise WrongResultError(
                    f"update {i}: norm {_norm64(parts)!r} > max_norm {max_norm!r}"
                )


def _noise_input(data: Data) -> Any:
    """An array, a per-layer model, or something noise cannot go into."""
    kind = data.int(0, 7)
    if kind <= 3:
        return _gen.layout(data, _gen.values(data, _gen.shape(data), _gen.dtype(data)))
    if kind <= 5:
        return [
            _gen.layout(data, _gen.values(data, _gen.shape(data), _gen.dtype(data)))
            for _ in range(data.int(0, 3))
        ]
    return data.pick(([1.0, 2.0], 3.0, None, (np.zeros(2),), np.zeros((2, 0))))


def _generator(data: Data, allow_bad: bool = True) -> Callable[[], Any]:
    """A factory of identical generators (seed fixed by the input), or of a bad argument."""
    kind = data.int(0, 11 if allow_bad else 9)
    seed: Any = data.int(-(2**70), 2**70) if kind else data.take(data.int(0, 40))
    if kind == 11:
        seed = data.pick((True, 1.5, "seed", [1]))  # None would draw a fresh OS key
    secure = not data.int(0, 30)  # now and then a seed with secure=True: refused
    if kind == 10:
        return lambda: data.pick(("gen", np.random.default_rng(0)))
    return lambda: privacy.NoiseGenerator(seed, secure=secure)


def _add_noise(add: Callable[..., Any]) -> Target:
    def target(data: Data) -> None:
        x = _noise_input(data)
        scale = _gen.real(data) if data.chance(4) else 10.0 ** data.int(-3, 3)
        make = _generator(data)

        def call(y: Any) -> Any:
            return add(y, scale, make())

        got, want = _in_place(call, x, data)
        agree(got, want, 0.0)

    return target


def _size(data: Data, limit: int = 5000) -> Any:
    kind = data.int(0, 9)
    if kind == 0:
        return None
    if kind <= 5:
        return data.int(0, limit)
    if kind <= 7:
        return (data.int(0, 30), data.int(0, 30))
    return data.pick((-1, (2, -1), 1.5, "3", (), [2, 3], np.int64(7), True))


def _dtype_arg(data: Data) -> Any:
    return data.pick((None, np.float32, np.float64, "float32", np.int32, "f2", "nope", float))


def _out(data: Data) -> Any:
    if data.int(0, 3):
        return None
    a = _gen.layout(data, np.zeros(_gen.shape(data), data.pick(_gen.FLOATS)))
    return a if data.int(0, 5) else np.zeros(3, np.int64)


def _method(name: str, draw: Callable[[Any, Data], Callable[[Any], Any]]) -> Target:
    """A target calling ``draw``'s call twice on fresh identical generators per backend."""

    def target(data: Data) -> None:
        make = _generator(data, allow_bad=False)
        call = draw(make, data)
        got, want = _both(call, data)
        agree(got, want, 0.0)

    target.__name__ = name
    return target


def _draws(kind: str) -> Callable[[Any, Data], Callable[[], Any]]:
    def draw(make: Any, data: Data) -> Callable[[], Any]:
        size, dtype, out = _size(data), _dtype_arg(data), _out(data)
        a, b = _gen.real(data), _gen.real(data)
        if data.int(0, 2):
            a, b = data.pick((0.0, -1.0, 5.0)), data.pick((1.0, 2.0, 1e-3))

        def call() -> Any:
            gen = make()
            first_out = None if out is None else out.copy()
            if kind == "uniform":
                first = gen.uniform(a, b, size, dtype, out=first_out)
            elif kind == "standard_normal":
                first = gen.standard_normal(size, dtype, out=first_out)
            elif kind == "normal":
                first = gen.normal(a, b, size, dtype, out=first_out)
            else:
                first = gen.laplace(a, b, size, dtype, out=first_out)
            return first, gen.random_uint32(3)  # the stream moved on by whole super-blocks

        return call

    return draw


def _discrete(make: Any, data: Data) -> Callable[[], Any]:
    sigma = data.pick((0.0, 1e-6, 0.3, 1.0, 7.5, 1e4, 2.0**30, 2.0**31, 1e-7, -1.0, math.nan))
    if data.chance(4):
        sigma = _gen.real(data)
    size = _size(data, 40)
    return lambda: make().discrete_gaussian(sigma, size)


def _uint32(make: Any, data: Data) -> Callable[[], Any]:
    size = _size(data)
    return lambda: make().random_uint32(size)


def _spawn(make: Any, data: Data) -> Callable[[], Any]:
    n = data.int(0, 5) if data.int(0, 5) else _gen.count(data, 40)

    def call() -> Any:
        gen = make()
        children = gen.spawn(n)
        keys = [c._key for c in children]  # every child's key; the first two draw
        return keys, [c.random_uint32(4) for c in children[:2]], gen.random_uint32(2)

    return call


def chacha20_keystream(data: Data) -> None:
    key = data.take(data.pick((32, 32, 32, 31, 33, 0)))
    nonce = data.take(data.pick((12, 12, 12, 11, 16)))
    counter = data.pick((0, 1, 2**32 - 1, 2**32 - 2, 2**32, -1, data.int(0, 2**32 - 1)))
    n_words = data.pick((0, 1, 15, 16, 17, 256, data.int(0, 5000), -1))
    if data.chance(10):
        key = data.pick((list(key), "k" * 32, bytearray(key), memoryview(key)))
    if data.chance(10):
        counter = data.pick((1.0, True, "0", None))

    def call() -> Any:
        return privacy.chacha20_keystream(key, nonce, counter, n_words)

    got, want = _both(call, data)
    agree(got, want, 0.0)
    if got.ok and n_words:  # RFC 8439 through an independent implementation
        full_nonce = int(counter).to_bytes(4, "little") + bytes(nonce)
        cipher = Cipher(algorithms.ChaCha20(bytes(key), full_nonce), mode=None)
        stream = cipher.encryptor().update(bytes(4 * int(n_words)))
        same(got.value, np.frombuffer(stream, "<u4").astype(np.uint32), 0.0, 0.0)


def randomized_hadamard(data: Data) -> None:
    """The distributed discrete Gaussian's rotation and its inverse (the hadamard kernel):
    the same bits on every backend and thread count, any length, values of every scale."""
    n = data.pick((0, 1, 2, 3, 4095, 4096, 4097, 1 << 16, 70_000, data.int(0, 3000)))
    x = np.array([data.float64() for _ in range(min(n, 64))] * (n // 64 + 1))[:n]
    if data.chance(3):
        x = x * 10.0 ** data.int(-300, 300)
    seed = data.pick((0, 7, b"s" * 32, data.take(32)))

    def call() -> Any:
        y = privacy.distributed.randomized_hadamard(x, seed)
        return y, privacy.distributed.randomized_hadamard_inverse(y, seed, max(n, 1))

    got, want = _both(call, data)
    agree(got, want, 0.0)


TARGETS: dict[str, Target] = {
    "l2_norms": l2_norms,
    "clip_by_l2_norm": clip_by_l2_norm,
    "add_gaussian_noise": _add_noise(privacy.add_gaussian_noise),
    "add_laplace_noise": _add_noise(privacy.add_laplace_noise),
    "NoiseGenerator.uniform": _method("uniform", _draws("uniform")),
    "NoiseGenerator.standard_normal": _method("standard_normal", _draws("standard_normal")),
    "NoiseGenerator.normal": _method("normal", _draws("normal")),
    "NoiseGenerator.laplace": _method("laplace", _draws("laplace")),
    "NoiseGenerator.discrete_gaussian": _method("discrete_gaussian", _discrete),
    "NoiseGenerator.random_uint32": _method("random_uint32", _uint32),
    "NoiseGenerator.spawn": _method("spawn", _spawn),
    "chacha20_keystream": chacha20_keystream,
    "randomized_hadamard": randomized_hadamard,
}
