"""hierfed.integrations.torch: parameters and state_dicts to one vector and back."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import hierfed

torch = pytest.importorskip("torch")
ht = pytest.importorskip("hierfed.integrations.torch")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )


def test_parameters_round_trip_in_order() -> None:
    net = _net()
    params = list(net.parameters())
    vec = ht.parameters_to_vector(net)
    assert vec.shape == (sum(p.numel() for p in params),) and vec.dtype == torch.float32
    assert not vec.requires_grad
    torch.testing.assert_close(vec[:20], params[0].detach().reshape(-1), rtol=0, atol=0)
    ht.vector_to_parameters(torch.arange(vec.numel(), dtype=torch.float32), net)
    assert float(params[0].detach()[0, 1]) == 1.0  # the weight first,
    assert float(params[1].detach()[0]) == 20.0  # then the bias
    assert params[0].requires_grad  # still a parameter, written outside autograd


def test_vector_is_a_copy() -> None:
    net = _net()
    vec = ht.parameters_to_vector(net)
    vec += 1.0
    assert not torch.equal(ht.parameters_to_vector(net), vec)


def test_state_dict_keeps_buffers_and_counters() -> None:
    net = _net()
    net.train()
    net(torch.randn(8, 5))  # moves the batch-norm statistics and its step counter
    sd = net.state_dict()
    vec = ht.state_dict_to_vector(sd)
    floats = [t for t in sd.values() if t.is_floating_point()]
    assert vec.numel() == sum(t.numel() for t in floats)
    back = ht.vector_to_state_dict(vec * 2, sd)
    assert list(back) == list(sd)
    torch.testing.assert_close(back["1.running_mean"], sd["1.running_mean"] * 2)
    assert back["1.num_batches_tracked"].dtype == torch.int64
    assert int(back["1.num_batches_tracked"]) == 1
    other = _net()
    other.load_state_dict(back)
    torch.testing.assert_close(other.state_dict()["3.weight"], sd["3.weight"] * 2)


def test_dtypes_of_the_vector() -> None:
    assert ht.parameters_to_vector([torch.ones(2, dtype=torch.float64)]).dtype == torch.float64
    mixed = [torch.ones(2, dtype=torch.float16), torch.ones(3)]
    assert ht.parameters_to_vector(mixed).dtype == torch.float32
    half = torch.zeros(2, dtype=torch.float16)
    ht.vector_to_parameters(torch.tensor([0.5, 1.5, 2.0, 3.0, 4.0]), [half, torch.zeros(3)])
    assert half.dtype == torch.float16 and half.tolist() == [0.5, 1.5]


def test_bad_input_is_named() -> None:
    net = _net()
    with pytest.raises(ValueError, match=r"vector has shape \(3,\)"):
        ht.vector_to_parameters(torch.zeros(3), net)
    with pytest.raises(TypeError, match="state_dict_to_vector"):
        ht.parameters_to_vector(net.state_dict())
    with pytest.raises(TypeError, match=r"parameters\[0\] has dtype torch.int64"):
        ht.parameters_to_vector([torch.ones(2, dtype=torch.int64)])
    with pytest.raises(ValueError, match="no parameters"):
        ht.parameters_to_vector([])


def test_robust_aggregation_inside_a_training_loop() -> None:
    """Clients train copies; the server takes the trimmed mean of their deltas, in torch."""
    torch.manual_seed(1)
    model = torch.nn.Linear(10, 1)
    x, w_true = torch.randn(256, 10), torch.randn(10, 1)
    y = x @ w_true
    loss0 = float(torch.nn.functional.mse_loss(model(x), y).detach())
    for _ in range(20):
        base = ht.parameters_to_vector(model)
        deltas = []
        for c in range(10):
            client = copy.deepcopy(model)
            opt = torch.optim.SGD(client.parameters(), lr=0.1)
            part = slice(25 * c, 25 * c + 25)
            opt.zero_grad()
            torch.nn.functional.mse_loss(client(x[part]), y[part]).backward()
            opt.step()
            deltas.append(ht.parameters_to_vector(client) - base)
        deltas[0] = torch.full_like(base, 1e6)  # one attacker
        step = hierfed.trimmed_mean(deltas, trim_ratio=0.1)
        assert isinstance(step, torch.Tensor)
        ht.vector_to_parameters(base + step, model)
    assert float(torch.nn.functional.mse_loss(model(x), y).detach()) < 0.2 * loss0


def test_per_layer_models_of_parameters_aggregate_in_their_shapes() -> None:
    clients = [torch.nn.Linear(3, 2) for _ in range(5)]
    avg = hierfed.mean([list(c.parameters()) for c in clients])
    assert [tuple(a.shape) for a in avg] == [(2, 3), (2,)]
    want = np.mean([c.weight.detach().numpy() for c in clients], axis=0)
    np.testing.assert_allclose(avg[0].numpy(), want, rtol=1e-6)
