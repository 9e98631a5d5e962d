"""Simulation data and models: the documented non-IID split, user files, gradients, local SGD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hierfed.simulation import datasets
from hierfed.simulation.datasets import load_raw, make_federated
from hierfed.simulation.models import MLP, LogisticRegression, accuracy, local_sgd, make_model


def _split(**kw: object) -> datasets.FederatedData:
    args: dict[str, object] = dict(
        clients=30, domains=3, dirichlet_alpha=1.0, domain_shift=0.5, test_fraction=0.25, seed=0
    )
    args.update(kw)
    return make_federated(load_raw(str(args.pop("name", "digits"))), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "shape", "classes"),
    [("digits", (1797, 64), 10), ("breast_cancer", (569, 30), 2), ("wine", (178, 13), 3)],
)
def test_bundled_datasets_load_without_network(
    name: str, shape: tuple[int, int], classes: int
) -> None:
    raw = load_raw(name)
    assert raw.X.shape == shape and raw.n_classes == classes and raw.domain is None


def test_split_keeps_every_sample_once_and_holds_out_a_stratified_test_set() -> None:
    raw = load_raw("digits")
    data = _split()
    n_train = sum(len(y) for y in data.client_y)
    assert n_train + data.y_test.size == raw.y.size
    test_counts = np.bincount(data.y_test, minlength=10)
    all_counts = np.bincount(raw.y, minlength=10)
    assert np.all(np.abs(test_counts - 0.25 * all_counts) <= 1)
    assert data.n_clients == 30 and np.bincount(data.client_domain).tolist() == [10, 10, 10]
    assert min(len(y) for y in data.client_y) >= datasets.MIN_CLIENT_SAMPLES


def test_split_standardises_then_shifts_each_domain() -> None:
    plain = _split(domain_shift=0.0)
    x = np.concatenate(plain.client_x)
    assert np.allclose(x.mean(axis=0), 0.0, atol=1e-9)
    sd = x.std(axis=0)
    assert np.all((np.abs(sd - 1.0) < 1e-9) | (sd < 1e-12))
    shifted = _split(domain_shift=0.5)
    # same samples to the same clients; each domain moved by one fixed offset
    for d in range(3):
        members = np.flatnonzero(shifted.client_domain == d)
        offsets = np.concatenate([shifted.client_x[i] - plain.client_x[i] for i in members])
        assert np.allclose(offsets, offsets[0])
        assert 0.2 < np.std(offsets[0]) < 0.8


def test_dirichlet_label_skew_grows_as_alpha_shrinks() -> None:
    def skew(alpha: float) -> float:
        data = _split(dirichlet_alpha=alpha)
        counts = np.array(
            [
                np.bincount(
                    np.concatenate(
                        [data.client_y[i] for i in np.flatnonzero(data.client_domain == d)]
                    ),
                    minlength=10,
                )
                for d in range(3)
            ],
            dtype=float,
        )
        shares = counts / counts.sum(axis=1, keepdims=True)
        return float(np.abs(shares - 0.1).sum())

    assert skew(0.3) > skew(100.0)
    assert skew(100.0) < 0.3


def test_split_is_deterministic_for_a_seed() -> None:
    a, b, c = _split(seed=4), _split(seed=4), _split(seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.client_x, b.client_x, strict=True))
    assert np.array_equal(a.y_test, b.y_test)
    assert not all(
        x.shape == y.shape and np.array_equal(x, y)
        for x, y in zip(a.client_x, c.client_x, strict=True)
    )


def test_too_many_clients_for_the_data_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="samples per client"):
        make_federated(
            load_raw("wine"),
            clients=60,
            domains=3,
            dirichlet_alpha=1.0,
            domain_shift=0.0,
            test_fraction=0.25,
            seed=0,
        )


def test_user_npz_with_domains(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = np.where(x[:, 0] > 0, "yes", "no")
    domain = np.repeat(["bank", "clinic"], 100)
    path = tmp_path / "mine.npz"
    np.savez(path, X=x, y=y, domain=domain)
    raw = load_raw(str(path))
    assert raw.name == "mine" and raw.n_classes == 2 and raw.domain_names == ("bank", "clinic")
    data = make_federated(
        raw, clients=6, domains=99, dirichlet_alpha=1.0, domain_shift=9.0, test_fraction=0.2, seed=0
    )
    assert data.domain_names == ("bank", "clinic")
    assert np.bincount(data.client_domain).tolist() == [3, 3]
    assert np.bincount(data.test_domain).tolist() == [20, 20]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((5, 2))}, "must hold arrays 'X' and 'y'"),
        ({"X": np.zeros(5), "y": np.zeros(5)}, "2-D"),
        ({"X": np.zeros((5, 2)), "y": np.zeros(4)}, "4 labels for 5 samples"),
        ({"X": np.zeros((5, 2)), "y": np.zeros(5)}, "two classes"),
        ({"X": np.full((5, 2), np.nan), "y": np.arange(5)}, "NaN"),
    ],
)
def test_bad_npz_is_a_clear_error(
    tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_raw(str(path))


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="digits, breast_cancer, wine"):
        load_raw("mnist")
    with pytest.raises(ValueError, match="does not exist"):
        load_raw("/nonexistent/file.npz")


# ---- models ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LogisticRegression(5, 3), MLP(5, 4, 3)])
def test_gradients_match_finite_differences(model: LogisticRegression | MLP) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(7, 5))
    y = rng.integers(0, 3, size=7)
    theta = rng.normal(scale=0.5, size=model.n_params)
    _, grad = model.loss_grad(theta, x, y)
    eps = 1e-6
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        numeric[i] = (model.loss_grad(theta + e, x, y)[0] - model.loss_grad(theta - e, x, y)[0]) / (
            2 * eps
        )
    assert np.allclose(grad, numeric, atol=1e-6)


def test_local_sgd_learns_clips_and_is_deterministic() -> None:
    data = _split(clients=5, domains=1, domain_shift=0.0)
    model = make_model("logreg", data.n_features, data.n_classes)
    theta = model.init(np.random.default_rng(0))
    x, y = np.concatenate(data.client_x), np.concatenate(data.client_y)
    kw = dict(epochs=2, batch_size=16, learning_rate=0.1, clip_norm=100.0)
    delta = local_sgd(model, theta, x, y, rng=np.random.default_rng(1), **kw)  # type: ignore[arg-type]
    assert accuracy(model, theta + delta, data.x_test, data.y_test)[0] > 0.85
    again = local_sgd(model, theta, x, y, rng=np.random.default_rng(1), **kw)  # type: ignore[arg-type]
    assert np.array_equal(delta, again)
    kw["clip_norm"] = 0.25
    clipped = local_sgd(model, theta, x, y, rng=np.random.default_rng(1), **kw)  # type: ignore[arg-type]
    assert np.linalg.norm(clipped) == pytest.approx(0.25)
    assert np.allclose(clipped / 0.25, delta / np.linalg.norm(delta))


def test_mlp_starts_random_and_logreg_at_zero() -> None:
    assert not np.any(make_model("logreg", 4, 3).init(np.random.default_rng(0)))
    mlp = make_model("mlp", 4, 3, hidden=6)
    assert mlp.n_params == 4 * 6 + 6 + 6 * 3 + 3
    assert np.array_equal(mlp.init(np.random.default_rng(0)), mlp.init(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="logreg, mlp"):
        make_model("cnn", 4, 3)
