"""JAX arrays on the CPU: read in place through DLPack, answered as JAX arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from interop_cases import CASES, N, leaves, rows_read

from hierfed.privacy import CentralDPMechanism, NoiseGenerator, add_gaussian_noise

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")


def _pointer(x: Any) -> int:
    return int(x.unsafe_buffer_pointer())


@pytest.fixture
def matrix() -> Any:
    data = np.random.default_rng(2).standard_normal((N, 129)).astype(np.float32)
    return jnp.asarray(data)


@pytest.mark.parametrize("name", list(CASES))
def test_matrix_in_jax_out_read_in_place(name: str, matrix: Any) -> None:
    with rows_read() as seen:
        got = CASES[name](matrix)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves(got))
    want = CASES[name](np.asarray(matrix))
    for g, w in zip(leaves(got), leaves(want), strict=True):
        # without jax_enable_x64 JAX holds every array in 32 bits, float64 answers included
        assert np.asarray(g).dtype == jax.dtypes.canonicalize_dtype(w.dtype)
        np.testing.assert_array_equal(np.asarray(g), w.astype(np.asarray(g).dtype))
    # row i starts i * 129 floats after the buffer: the kernels read JAX's memory
    base, step = _pointer(matrix), 129 * 4
    assert {base + i * step for i in range(N)} <= seen


def test_list_of_jax_arrays_read_in_place(matrix: Any) -> None:
    updates = [jnp.array(np.asarray(row)) for row in matrix]
    with rows_read() as seen:
        got = CASES["trimmed_mean"](updates)
    assert isinstance(got, jax.Array)
    assert {_pointer(u) for u in updates} <= seen


def test_noise_returns_a_noised_copy_of_an_immutable_array() -> None:
    x = jnp.zeros(100, jnp.float32)
    noised = add_gaussian_noise(x, 1.0, NoiseGenerator(seed=6, secure=False))
    assert isinstance(noised, jax.Array) and noised.dtype == jnp.float32
    assert not np.asarray(x).any()  # the input is untouched
    ref = add_gaussian_noise(np.zeros(100, np.float32), 1.0, NoiseGenerator(seed=6, secure=False))
    np.testing.assert_array_equal(np.asarray(noised), ref)
    mech = CentralDPMechanism(generator=NoiseGenerator(seed=7, secure=False))
    assert isinstance(mech.add_noise(x), jax.Array)
    with pytest.raises(ValueError, match="writeable"):
        mech.add_noise(x, in_place=True)


def test_float64_in_and_out_with_x64_enabled() -> None:
    with jax.enable_x64(True):
        updates = jnp.asarray(np.random.default_rng(3).standard_normal((N, 33)))
        assert updates.dtype == jnp.float64
        got = CASES["median"](updates)
        dist = CASES["pairwise_sq_distances"](updates)
        assert got.dtype == jnp.float64 and dist.dtype == jnp.float64
        np.testing.assert_array_equal(np.asarray(got), np.median(np.asarray(updates), axis=0))
