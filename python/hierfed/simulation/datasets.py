"""Data for the simulation: bundled or user data, a held-out test set and a non-IID split.

The split, step by step (every draw from one generator seeded by the simulation's seed):

1. **Load**: scikit-learn's bundled ``digits`` (1797 x 64, 10 classes; the default),
   ``breast_cancer`` (569 x 30, 2 classes) or ``wine`` (178 x 13, 3 classes), never the
   network; or a user ``.npz`` holding ``X`` (n, p), ``y`` (n,) and optionally ``domain`` (n,).
   Labels are mapped to ``0..C-1`` in sorted order.
2. **Hold out** a stratified ``test_fraction`` of every class (of every (domain, class) pair
   when the file gives domains).
3. **Standardise** every feature with the training set's mean and standard deviation
   (constant features are only centred).
4. **Domains** (unless the file gives them), like hospitals or banks that see different
   populations through different instruments:

   - *label skew*: for each class ``c`` the domains' shares ``p_c ~ Dirichlet(alpha 1_D)``;
     the class's training samples are cut among the domains by those shares (in shuffled
     order) and each test sample of the class goes to domain ``d`` with probability
     ``p_c[d]``, so the test set is drawn from the same mixture of domains. Small ``alpha``
     gives each domain few classes; large ``alpha`` approaches an even split. A draw that
     leaves a domain fewer than ``MIN_CLIENT_SAMPLES`` samples per client is redrawn (up to
     ``MAX_DRAWS`` times).
   - *feature shift*: every sample of domain ``d`` (training and test) is moved by a fixed
     offset ``delta_d ~ N(0, shift^2 I)`` in standardised units, a per-site calibration
     offset.

5. **Clients**: the clients are spread evenly over the domains (the first ``clients % D``
   domains take one more); each domain's training samples are shuffled and cut into
   near-equal parts, one per client (IID inside a domain, non-IID across).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._deps import require

__all__ = [
    "BUILTIN",
    "MAX_DRAWS",
    "MIN_CLIENT_SAMPLES",
    "FederatedData",
    "RawData",
    "clients_per_domain",
    "dirichlet_domains",
    "load_raw",
    "make_federated",
    "standardise",
    "stratified_split",
]

BUILTIN = ("digits", "breast_cancer", "wine")
MIN_CLIENT_SAMPLES = 4
MAX_DRAWS = 200

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RawData:
    """A dataset before the split: features, labels ``0..C-1``, optional domain ids."""

    name: str
    X: FloatArray
    y: IntArray
    domain: IntArray | None
    domain_names: tuple[str, ...] | None = None

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return int(self.y.max()) + 1


@dataclass(frozen=True)
class FederatedData:
    """The clients' training data and the held-out test set.

    Attributes
    ----------
    name
        Dataset name.
    n_classes, n_features
        Shape of the learning problem.
    client_x, client_y
        One array each per client (client ``i`` is ``"client_{i}"``).
    client_domain
        Domain index of each client.
    domain_names
        Name of each domain.
    x_test, y_test, test_domain
        The held-out test set and the domain of each test sample.
    """

    name: str
    n_classes: int
    n_features: int
    client_x: tuple[FloatArray, ...]
    client_y: tuple[IntArray, ...]
    client_domain: IntArray
    domain_names: tuple[str, ...]
    x_test: FloatArray
    y_test: IntArray
    test_domain: IntArray

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return len(self.client_x)

    def summary(self) -> dict[str, Any]:
        """Sizes and class counts, for ``results.json``."""
        sizes = [len(y) for y in self.client_y]
        per_domain = {}
        for d, name in enumerate(self.domain_names):
            members = np.flatnonzero(self.client_domain == d)
            ys = (
                np.concatenate([self.client_y[i] for i in members])
                if members.size
                else np.zeros(0, np.int64)
            )
            per_domain[name] = {
                "clients": int(members.size),
                "train_samples": int(ys.size),
                "class_counts": np.bincount(ys, minlength=self.n_classes).tolist(),
            }
        return {
            "name": self.name,
            "n_classes": self.n_classes,
            "n_features": self.n_features,
            "n_clients": self.n_clients,
            "train_samples": int(sum(sizes)),
            "test_samples": int(self.y_test.size),
            "client_samples_min": int(min(sizes)),
            "client_samples_max": int(max(sizes)),
            "domains": per_domain,
        }


def _labels(y: Any, name: str) -> IntArray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name}: y must be 1-D, got shape {y.shape}")
    _, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64)


def _load_npz(path: str) -> RawData:
    try:
        with np.load(path, allow_pickle=False) as f:
            files = dict(f.items())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read dataset file {path!r}: {exc}") from None
    for key in ("X", "y"):
        if key not in files:
            raise ValueError(f"{path}: the .npz must hold arrays 'X' and 'y' (has {sorted(files)})")
    x = np.asarray(files["X"])
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{path}: X must be a 2-D array (samples, features), got {x.shape}")
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: X holds NaN or infinity")
    y = _labels(files["y"], path)
    if y.size != x.shape[0]:
        raise ValueError(f"{path}: y has {y.size} labels for {x.shape[0]} samples")
    if y.max() < 1:
        raise ValueError(f"{path}: y must hold at least two classes")
    domain = None
    names = None
    if "domain" in files:
        raw = np.asarray(files["domain"])
        if raw.ndim != 1 or raw.size != x.shape[0]:
            raise ValueError(f"{path}: domain must be 1-D with one entry per sample")
        values, codes = np.unique(raw, return_inverse=True)
        domain = codes.astype(np.int64)
        names = tuple(str(v) for v in values)
    name = os.path.splitext(os.path.basename(path))[0]
    return RawData(name, x, y, domain, names)


def load_raw(dataset: str) -> RawData:
    """Load a bundled dataset by name or a user ``.npz`` by path (never the network).

    Raises
    ------
    ValueError
        An unknown name, or a file that is missing or malformed.
    """
    if dataset in BUILTIN:
        sk = require("sklearn.datasets")
        loader = getattr(sk, f"load_{dataset}")
        bunch = loader()
        return RawData(
            dataset, np.asarray(bunch.data, np.float64), _labels(bunch.target, dataset), None
        )
    if dataset.endswith(".npz"):
        if not os.path.isfile(dataset):
            raise ValueError(f"dataset file {dataset!r} does not exist")
        return _load_npz(dataset)
    raise ValueError(
        f"dataset must be one of {', '.join(BUILTIN)} or a path to a .npz file; got {dataset!r}"
    )


def stratified_split(
    strata: IntArray, test_fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Train and test indices: ``round(test_fraction * size)`` of every stratum held out.

    Every stratum of two or more samples keeps at least one sample on each side.
    """
    train: list[IntArray] = []
    test: list[IntArray] = []
    for s in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == s))
        k = round(test_fraction * idx.size)
        k = min(max(k, 1), idx.size - 1) if idx.size >= 2 else 0
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def standardise(train: FloatArray, test: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Both sets centred and scaled by the training set's per-feature mean and std."""
    mu = train.mean(axis=0)
    sd = train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def clients_per_domain(clients: int, domains: int) -> list[int]:
    """Clients of each domain: even, the first ``clients % domains`` domains one more."""
    return [clients // domains + (d < clients % domains) for d in range(domains)]


def dirichlet_domains(
    y: IntArray,
    n_classes: int,
    counts: list[int],
    alpha: float,
    rng: np.random.Generator,
) -> tuple[IntArray, FloatArray]:
    """Domain of every training sample by Dirichlet label skew, and the shares ``(C, D)``.

    Redraws until every domain holds at least ``MIN_CLIENT_SAMPLES`` samples per client
    (``counts[d]`` clients in domain ``d``).

    Raises
    ------
    ValueError
        When ``MAX_DRAWS`` draws all leave some domain short.
    """
    n_domains = len(counts)
    need = np.asarray(counts) * MIN_CLIENT_SAMPLES
    order = [rng.permutation(np.flatnonzero(y == c)) for c in range(n_classes)]
    for _ in range(MAX_DRAWS):
        shares = rng.dirichlet(np.full(n_domains, alpha), size=n_classes)
        domain = np.empty(y.size, np.int64)
        for c, idx in enumerate(order):
            cuts = np.round(np.cumsum(shares[c])[:-1] * idx.size).astype(np.int64)
            for d, part in enumerate(np.split(idx, cuts)):
                domain[part] = d
        have = np.bincount(domain, minlength=n_domains)
        if np.all(have >= need):
            return domain, shares
    raise ValueError(
        f"dirichlet_alpha={alpha} leaves some domain fewer than {MIN_CLIENT_SAMPLES} training "
        f"samples per client in {MAX_DRAWS} draws ({y.size} samples, clients per domain "
        f"{counts}); raise dirichlet_alpha, or use fewer clients or domains"
    )


def make_federated(
    raw: RawData,
    *,
    clients: int,
    domains: int,
    dirichlet_alpha: float,
    domain_shift: float,
    test_fraction: float,
    seed: int,
) -> FederatedData:
    """Split ``raw`` into a held-out test set and ``clients`` clients in domains (see the
    module docstring). The same arguments give the same split.

    When ``raw`` carries domains they are used as they are and ``domains``,
    ``dirichlet_alpha`` and ``domain_shift`` are ignored.

    Raises
    ------
    ValueError
        Too few samples for the clients, or more domains than clients.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    n_classes = raw.n_classes
    strata = raw.y if raw.domain is None else raw.domain * n_classes + raw.y
    train_idx, test_idx = stratified_split(strata, test_fraction, rng)
    x_train, x_test = standardise(raw.X[train_idx], raw.X[test_idx])
    y_train, y_test = raw.y[train_idx], raw.y[test_idx]
    if raw.domain is not None:
        n_domains = int(raw.domain.max()) + 1
        names = raw.domain_names or tuple(f"domain{d}" for d in range(n_domains))
    else:
        n_domains = domains
        names = tuple(f"domain{d}" for d in range(n_domains))
    if clients < n_domains:
        raise ValueError(
            f"clients ({clients}) must be at least the number of domains ({n_domains})"
        )
    counts = clients_per_domain(clients, n_domains)
    if raw.domain is not None:
        train_domain = raw.domain[train_idx]
        test_domain = raw.domain[test_idx]
        have = np.bincount(train_domain, minlength=n_domains)
        short = [names[d] for d in range(n_domains) if have[d] < counts[d] * MIN_CLIENT_SAMPLES]
        if short:
            raise ValueError(
                f"domains {short} hold fewer than {MIN_CLIENT_SAMPLES} training samples per "
                f"client (clients per domain {counts}); use fewer clients"
            )
    else:
        train_domain, shares = dirichlet_domains(y_train, n_classes, counts, dirichlet_alpha, rng)
        test_domain = np.empty(y_test.size, np.int64)
        for c in range(n_classes):
            at = np.flatnonzero(y_test == c)
            test_domain[at] = rng.choice(n_domains, size=at.size, p=shares[c])
        shifts = rng.normal(0.0, domain_shift, size=(n_domains, x_train.shape[1]))
        x_train = x_train + shifts[train_domain]
        x_test = x_test + shifts[test_domain]
    client_x: list[FloatArray] = []
    client_y: list[IntArray] = []
    client_domain: list[int] = []
    for d in range(n_domains):
        idx = rng.permutation(np.flatnonzero(train_domain == d))
        for part in np.array_split(idx, counts[d]):
            part = np.sort(part)
            client_x.append(np.ascontiguousarray(x_train[part]))
            client_y.append(y_train[part])
            client_domain.append(d)
    return FederatedData(
        name=raw.name,
        n_classes=n_classes,
        n_features=int(x_train.shape[1]),
        client_x=tuple(client_x),
        client_y=tuple(client_y),
        client_domain=np.asarray(client_domain, np.int64),
        domain_names=tuple(names),
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        test_domain=test_domain,
    )
