"""Server optimizers: Reddi et al. 2021 Algorithm 2 transcribed, Flower's strategies' own
arithmetic, the federation's global step, checkpoints and the store."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config
from hierfed.optimizers import OPTIMIZERS, ServerOptimizer, ServerOptimizerConfig

D = 12
ROUNDS = 6


def _deltas(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.1 * (t + 1), size=D) for t in range(ROUNDS)]


def _paper(
    name: str,
    x0: np.ndarray,
    deltas: list[np.ndarray],
    eta: float,
    b1: float,
    b2: float,
    tau: float,
    v0: float,
    momentum: float = 0.0,
) -> np.ndarray:
    """Algorithm 2 (and FedAvgM), one coordinate at a time, in plain floats."""
    x = [float(a) for a in x0]
    m = [0.0] * D
    v = [v0] * D
    for delta in deltas:
        for i in range(D):
            d = float(delta[i])
            if name == "fedavgm":
                m[i] = momentum * m[i] + d
                x[i] += eta * m[i]
                continue
            m[i] = b1 * m[i] + (1 - b1) * d
            if name == "fedadagrad":
                v[i] = v[i] + d * d
            elif name == "fedadam":
                v[i] = b2 * v[i] + (1 - b2) * d * d
            else:
                v[i] = v[i] - (1 - b2) * d * d * math.copysign(1.0, v[i] - d * d) * (v[i] != d * d)
            x[i] += eta * m[i] / (math.sqrt(v[i]) + tau)
    return np.array(x)


@pytest.mark.parametrize("name", ["fedavgm", "fedadagrad", "fedadam", "fedyogi"])
def test_each_optimizer_is_algorithm_2(name: str) -> None:
    x0 = np.random.default_rng(1).normal(size=D)
    cfg = ServerOptimizerConfig(
        name, momentum=0.7, beta_1=0.8, beta_2=0.95, tau=1e-2, initial_accumulator=1e-4
    )
    opt = ServerOptimizer(cfg, learning_rate=0.3)
    x = x0
    for d in _deltas():
        x = opt.step(x, d)
    want = _paper(name, x0, _deltas(), 0.3, 0.8, 0.95, 1e-2, 1e-4, momentum=0.7)
    np.testing.assert_allclose(x, want, rtol=1e-12, atol=1e-14)
    assert opt.steps == ROUNDS


def test_sgd_is_the_learning_rate_times_the_aggregate() -> None:
    opt = ServerOptimizer("sgd", learning_rate=0.5)
    x = np.ones(D, dtype=np.float32)
    out = opt.step(x, np.full(D, 2.0, dtype=np.float32))
    assert out.dtype == np.float32 and np.all(out == 2.0) and opt.m is None


def _flower(name: str, x0: np.ndarray, eta: float) -> object:
    from flwr.common import ndarrays_to_parameters
    from flwr.server import strategy

    init = ndarrays_to_parameters([x0])
    if name == "fedavgm":
        return strategy.FedAvgM(
            initial_parameters=init, server_learning_rate=eta, server_momentum=0.7
        )
    if name == "fedadagrad":  # Flower fixes beta_1 = 0 (no first-moment decay)
        return strategy.FedAdagrad(initial_parameters=init, eta=eta, tau=1e-2)
    kind = strategy.FedAdam if name == "fedadam" else strategy.FedYogi
    return kind(initial_parameters=init, eta=eta, beta_1=0.8, beta_2=0.95, tau=1e-2)


@pytest.mark.parametrize("name", ["fedavgm", "fedadagrad", "fedadam", "fedyogi"])
def test_each_optimizer_matches_flowers_strategy(name: str) -> None:
    pytest.importorskip("flwr")
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    x0 = np.random.default_rng(2).normal(size=D)
    eta = 0.3
    flower = _flower(name, x0, eta)
    b1 = 0.0 if name == "fedadagrad" else 0.8
    cfg = ServerOptimizerConfig(name, momentum=0.7, beta_1=b1, beta_2=0.95, tau=1e-2)
    ours = ServerOptimizer(cfg, learning_rate=eta)
    x = x0
    for rnd, d in enumerate(_deltas(3), start=1):
        reply = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([x + d]), 1, {})
        params, _ = flower.aggregate_fit(rnd, [(None, reply)], [])  # type: ignore[attr-defined]
        theirs = parameters_to_ndarrays(params)[0]
        if name == "fedadam":  # Flower's bias correction, at round + 1
            b = np.sqrt(1 - 0.95 ** (rnd + 1.0)) / (1 - 0.8 ** (rnd + 1.0))
            ours.learning_rate = eta * b
        x = ours.step(x, (x + d) - x)
        np.testing.assert_allclose(x, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "adam"}, "name must be one of"),
        ({"name": "fedavgm", "momentum": 1.0}, r"momentum must be a finite number in \[0.0, 1.0\)"),
        ({"name": "fedadam", "beta_2": -0.1}, "beta_2"),
        ({"name": "fedyogi", "tau": 0.0}, r"tau must be a finite number in \(0.0"),
        ({"name": "fedadam", "initial_accumulator": math.nan}, "initial_accumulator"),
        ({"name": "fedadam", "beta_1": True}, "beta_1"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ServerOptimizerConfig(**kwargs)


def test_a_bad_step_changes_nothing() -> None:
    opt = ServerOptimizer("fedadam", learning_rate=1.0)
    x = opt.step(np.zeros(D), np.ones(D))
    state = (opt.steps, opt.m.copy(), opt.v.copy())  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="shape"):
        opt.step(x, np.ones(D + 1))
    with pytest.raises(ValueError, match="non-finite"):
        opt.step(x, np.full(D, 1e200))
    assert opt.steps == state[0]
    np.testing.assert_array_equal(opt.m, state[1])
    np.testing.assert_array_equal(opt.v, state[2])


# ---- in the federation ---------------------------------------------------------------------


def _config(optimizer: str | ServerOptimizerConfig, store=None) -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=10),
        layer1=Layer1Config(min_updates=2, apply_local_noise=False),
        layer2=Layer2Config(
            use_secure_aggregation=False, central_dp_epsilon=None, min_baskets=2, clip_norm=1e6
        ),
        server_learning_rate=0.2,
        server_optimizer=optimizer,
        store=store,
    )


def _fed(optimizer: str | ServerOptimizerConfig, store=None) -> HierarchicalFederation:
    fed = HierarchicalFederation(
        _config(optimizer, store),
        initial_model=np.zeros(D),
        clock=lambda: 0.0,
        generator=NoiseGenerator(seed=0, secure=False),
        seed=0,
    )
    if fed.manager.get_client("c0") is None:
        for i in range(4):
            fed.register_client(f"c{i}", "ab"[i % 2])
    return fed


def _round(fed: HierarchicalFederation, t: int) -> np.ndarray:
    rng = np.random.default_rng([7, t])
    for i in range(4):
        fed.submit_update(f"c{i}", rng.normal(size=D), base_version=fed.version)
    assert fed.latest is not None and fed.version == t + 1
    return fed.latest.aggregate


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_global_step_is_the_optimizers(name: str) -> None:
    fed = _fed(name)
    ref = ServerOptimizer(name, learning_rate=0.2)
    x = np.zeros(D)
    for t in range(3):
        x = ref.step(x, _round(fed, t))
        np.testing.assert_array_equal(fed.model, x)


def test_a_checkpoint_keeps_the_optimizer_state(tmp_path) -> None:
    fed = _fed("fedyogi")
    for t in range(2):
        _round(fed, t)
    path = tmp_path / "ck.npz"
    fed.checkpoint(path)
    again = _fed("fedyogi")
    again.restore(path)
    assert again.optimizer.steps == 2
    for t in range(2, 4):
        _round(fed, t)
        _round(again, t)
    np.testing.assert_array_equal(again.model, fed.model)
    np.testing.assert_array_equal(again.optimizer.v, fed.optimizer.v)
    other = _fed("fedadam")
    with pytest.raises(ValueError, match=r"optimizer.*'fedyogi'.*'fedadam'"):
        other.restore(path)
    assert other.optimizer.steps == 0 and other.version == 0


def test_a_checkpoint_with_a_bad_optimizer_state_is_refused(tmp_path) -> None:
    from hierfed import _checkpoint

    fed = _fed("fedadam")
    _round(fed, 0)
    path = tmp_path / "ck.npz"
    fed.checkpoint(path)
    state, arrays = _checkpoint.read(path)
    bad = dict(arrays, optimizer_v=np.full(D, np.nan))
    _checkpoint.write(tmp_path / "nan.npz", state, bad)
    missing = {k: a for k, a in arrays.items() if k != "optimizer_m"}
    _checkpoint.write(tmp_path / "missing.npz", state, missing)
    for name, match in (
        ("nan.npz", "optimizer_v"),
        ("missing.npz", r"arrays must be \['m', 'v'\]"),
    ):
        again = _fed("fedadam")
        with pytest.raises(ValueError, match=match):
            again.restore(tmp_path / name)
        assert again.version == 0 and again.optimizer.m is None


def test_a_store_resumes_the_optimizer(tmp_path) -> None:
    store = tmp_path / "fed.db"
    fed = _fed("fedavgm", store)
    for t in range(3):
        _round(fed, t)
    again = _fed("fedavgm", store)
    assert again.version == 3 and again.optimizer.steps == 3
    np.testing.assert_array_equal(again.model, fed.model)
    np.testing.assert_array_equal(again.optimizer.m, fed.optimizer.m)


def test_a_bad_server_optimizer_is_named() -> None:
    with pytest.raises(ValueError, match="server_optimizer: name must be one of"):
        _config("adam")
    with pytest.raises(TypeError, match="server_optimizer: config must be"):
        _config(3)  # type: ignore[arg-type]


def test_the_flower_strategies_rounds_step_by_the_optimizer() -> None:
    """FederationRounds (behind HierarchicalStrategy and the legacy strategy) keeps the
    optimizer's state across rounds: each round's model is its step by the aggregate."""
    from hierfed.integrations._rounds import FederationRounds

    cfg = dataclasses.replace(_config("fedadam"), server_learning_rate=0.05)
    rounds = FederationRounds(cfg, seed=0)
    ref = ServerOptimizer("fedadam", learning_rate=0.05)
    rng = np.random.default_rng(4)
    arrays = {"w": rng.normal(size=D)}
    for _ in range(3):
        rounds.start_round(arrays)
        for i in range(4):
            trained = {"w": arrays["w"] + rng.normal(scale=0.1, size=D)}
            assert rounds.submit(f"c{i}", "ab"[i % 2], trained) is None
        result = rounds.finish_round()
        assert result.arrays is not None and rounds.federation is not None
        assert rounds.federation.latest is not None
        want = ref.step(arrays["w"], rounds.federation.latest.aggregate)
        np.testing.assert_allclose(result.arrays["w"], want, rtol=1e-12)
        arrays = result.arrays
    assert rounds.federation.optimizer.steps == 3
