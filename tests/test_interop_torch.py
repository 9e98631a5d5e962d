"""CPU torch tensors: read in place through DLPack, answered as torch tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from interop_cases import CASES, N, leaves, rows_read

import hierfed
from hierfed.privacy import (
    CentralDPMechanism,
    GaussianMechanism,
    LaplaceMechanism,
    NoiseGenerator,
    add_gaussian_noise,
    add_laplace_noise,
    clip_by_l2_norm,
)

torch = pytest.importorskip("torch")


def _numpy(x: Any) -> Any:
    """The numpy twin of a torch answer (tensors to arrays, structure kept)."""
    if isinstance(x, (list, tuple)):
        return [_numpy(item) for item in x]
    assert isinstance(x, torch.Tensor), type(x)
    return x.numpy()


def _assert_same(got: Any, want: Any) -> None:
    for g, w in zip(leaves(_numpy(got)), leaves(want), strict=True):
        assert g.dtype == np.asarray(w).dtype
        np.testing.assert_array_equal(g, w)


@pytest.fixture
def matrix() -> Any:
    return torch.from_numpy(np.random.default_rng(1).standard_normal((N, 257)).astype(np.float32))


@pytest.mark.parametrize("name", list(CASES))
def test_matrix_in_tensor_out_read_in_place(name: str, matrix: Any) -> None:
    with rows_read() as seen:
        got = CASES[name](matrix)
    assert all(isinstance(leaf, torch.Tensor) for leaf in leaves(got))
    _assert_same(got, CASES[name](matrix.numpy()))
    # the kernels read the tensor's own rows: no copy of the input
    rows = {matrix[i].data_ptr() for i in range(N)}
    assert rows <= seen


@pytest.mark.parametrize("name", list(CASES))
def test_list_of_tensors_read_in_place(name: str, matrix: Any) -> None:
    updates = [torch.tensor(row.numpy(), dtype=torch.float64) for row in matrix]
    with rows_read() as seen:
        got = CASES[name](updates)
    assert all(leaf.dtype == torch.float64 for leaf in leaves(got))
    _assert_same(got, CASES[name]([u.numpy() for u in updates]))
    assert {u.data_ptr() for u in updates} <= seen


@pytest.mark.parametrize("name", ["mean", "trimmed_mean", "bulyan", "clip_by_l2_norm"])
def test_models_of_parameters_that_require_grad(name: str) -> None:
    torch.manual_seed(0)
    models = [list(torch.nn.Linear(6, 3).parameters()) for _ in range(N)]
    assert models[0][0].requires_grad
    with rows_read() as seen:
        got = CASES[name](models)
    plain = [[p.detach().numpy() for p in m] for m in models]
    _assert_same(got, CASES[name](plain))
    assert {p.data_ptr() for m in models for p in m} <= seen
    if name != "clip_by_l2_norm":  # one model: a tensor per layer, in the layers' shapes
        assert [tuple(g.shape) for g in got] == [(3, 6), (3,)]


def test_answer_is_a_fresh_tensor_not_a_view_of_the_input(matrix: Any) -> None:
    chosen = hierfed.krum(matrix, f=2)
    assert not any(chosen.data_ptr() == matrix[i].data_ptr() for i in range(N))
    before = matrix.clone()
    chosen += 1.0
    assert torch.equal(matrix, before)


def test_noise_is_added_in_place_to_the_callers_tensor() -> None:
    for add in (add_gaussian_noise, add_laplace_noise):
        x = torch.zeros(1000, dtype=torch.float32)
        ptr = x.data_ptr()
        out = add(x, 1.0, NoiseGenerator(seed=3, secure=False))
        assert out is x and x.data_ptr() == ptr
        ref = add(np.zeros(1000, np.float32), 1.0, NoiseGenerator(seed=3, secure=False))
        np.testing.assert_array_equal(x.numpy(), ref)


def test_noise_into_a_per_layer_model_of_parameters() -> None:
    layer = torch.nn.Linear(4, 2)
    params = list(layer.parameters())
    before = [p.detach().clone() for p in params]
    out = add_gaussian_noise(params, 0.5, NoiseGenerator(seed=4, secure=False))
    assert out is params
    assert all(not torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))


@pytest.mark.parametrize(
    "mechanism",
    [
        GaussianMechanism(1.0, generator=NoiseGenerator(seed=5, secure=False)),
        LaplaceMechanism(1.0, generator=NoiseGenerator(seed=5, secure=False)),
        CentralDPMechanism(generator=NoiseGenerator(seed=5, secure=False)),
    ],
)
def test_mechanisms_copy_or_write_in_place(mechanism: Any) -> None:
    x = torch.ones(64, dtype=torch.float64)
    noised = mechanism.add_noise(x)
    assert isinstance(noised, torch.Tensor) and noised.dtype == torch.float64
    assert torch.equal(x, torch.ones(64, dtype=torch.float64))  # a copy by default
    assert noised.data_ptr() != x.data_ptr()
    same = mechanism.add_noise(x, in_place=True)
    assert same is x and not torch.equal(x, torch.ones(64, dtype=torch.float64))


def test_clip_in_place_with_out(matrix: Any) -> None:
    x = matrix * 10
    out = clip_by_l2_norm(x, 1.0, out=x)
    assert out is x
    assert float(torch.linalg.vector_norm(x, dim=1).max()) <= 1.0


def test_bad_tensors_are_named() -> None:
    with pytest.raises(TypeError, match=r"updates\[1\].*bfloat16"):
        hierfed.mean([torch.ones(3), torch.ones(3, dtype=torch.bfloat16)])
    with pytest.raises(TypeError, match="dtype int64"):
        hierfed.mean(torch.ones((3, 4), dtype=torch.int64))
    with pytest.raises(ValueError, match=r"updates\[1\] has shape"):
        hierfed.median([torch.ones(3), torch.ones(4)])
    with pytest.raises(ValueError, match=r"updates\[2\] contains a non-finite"):
        hierfed.trimmed_mean(torch.tensor([[0.0], [1.0], [float("nan")]]))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_refused_with_a_torch_idiom(dtype: str) -> None:
    x = torch.ones((3, 4), dtype=getattr(torch, dtype))
    with pytest.raises(TypeError, match=rf"dtype torch.{dtype}.*x\.float\(\) or x\.to\(torch"):
        hierfed.trimmed_mean(x)
