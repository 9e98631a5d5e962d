"""BasketManager: the examples of spec/basket.md as written, and the rules of hierfed.basket.

Lifecycle against a fake clock, assignment (centroid, fullest, cross-domain), split (2-means
and seeded halving), disband reassignment, stats, errors, snapshots, state round trip and
concurrent use from 8 threads.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from threads import run_in_threads

from hierfed import BasketConfig, BasketInfo, BasketManager, BasketStatus, ClientInfo
from hierfed._basket_split import random_halves, two_means


class FakeClock:
    """A settable clock: staleness is tested without sleeping."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def fill(manager: BasketManager, domain: str, n: int, prefix: str = "c") -> list[str]:
    """Add ``n`` clients of ``domain`` named ``{prefix}{i}``; their basket ids."""
    return [manager.add_client(f"{prefix}{i}", domain) for i in range(n)]


def invariants(manager: BasketManager) -> None:
    """Every client is in exactly one live basket, and counts agree."""
    live = manager.list_baskets()
    seen: dict[str, str] = {}
    for info in live:
        assert info.status is not BasketStatus.DISBANDED
        assert len(info.clients) <= manager.config.max_clients
        for cid in info.clients:
            assert cid not in seen, f"{cid} in {seen[cid]} and {info.basket_id}"
            seen[cid] = info.basket_id
            assert manager.get_client_basket(cid) == info.basket_id
    stats = manager.get_stats()
    assert stats["n_clients"] == len(seen)
    assert stats["n_baskets"] == len(live)


# ---------------------------------------------------------------- the spec's examples
def spec_manager() -> BasketManager:
    manager = BasketManager(config=BasketConfig(min_clients=3, max_clients=50))
    return manager


def test_spec_data_structures() -> None:
    assert BasketConfig() == BasketConfig(
        min_clients=3, max_clients=100, stale_threshold=600.0, allow_cross_domain=False
    )
    client_fields = [f.name for f in dataclasses.fields(ClientInfo)]
    assert client_fields == [
        "client_id",
        "domain_id",
        "basket_id",
        "features",
        "joined_at",
        "last_active",
        "n_updates",
        "trust_score",
    ]
    basket_fields = [f.name for f in dataclasses.fields(BasketInfo)]
    assert basket_fields[:6] == [
        "basket_id",
        "domain_id",
        "status",
        "clients",
        "created_at",
        "last_activity",
    ]
    assert {s.name: s.value for s in BasketStatus} == {
        "FORMING": "forming",
        "ACTIVE": "active",
        "STALE": "stale",
        "DISBANDED": "disbanded",
    }


def test_spec_initialization() -> None:
    manager = BasketManager(config=BasketConfig(min_clients=3, max_clients=50))
    assert manager.config == BasketConfig(3, 50, 600.0, False)


def test_spec_add_client() -> None:
    manager = spec_manager()
    basket_id = manager.add_client(
        client_id="hospital_1",
        domain_id="healthcare",
        features=np.array([1.0, 0.5, 0.3]),  # Optional fingerprint
    )
    assert basket_id == "healthcare_basket_0"


def test_spec_remove_client() -> None:
    manager = spec_manager()
    manager.add_client("hospital_1", "healthcare")
    manager.remove_client("hospital_1")
    assert manager.get_client_basket("hospital_1") is None


def test_spec_get_basket(capsys: pytest.CaptureFixture[str]) -> None:
    manager = spec_manager()
    manager.add_client("hospital_1", "healthcare")
    info = manager.get_basket("healthcare_basket_0")
    print(f"Clients: {info.clients}, Status: {info.status}")  # type: ignore[union-attr]
    assert capsys.readouterr().out == "Clients: {'hospital_1'}, Status: BasketStatus.FORMING\n"


def test_spec_get_client_basket_and_clients() -> None:
    manager = spec_manager()
    manager.add_client("hospital_1", "healthcare")
    basket_id = manager.get_client_basket("hospital_1")
    clients = manager.get_basket_clients("healthcare_basket_0")
    assert basket_id == "healthcare_basket_0"
    assert clients == {"hospital_1"}


def test_spec_fingerprinting() -> None:
    manager = spec_manager()
    manager.add_client(
        "hospital_1",
        domain_id="healthcare",
        features=np.array([1.0, 0.5, 0.3]),  # E.g., [size, specialty, region]
    )
    client = manager.get_client("hospital_1")
    assert client is not None and client.features is not None
    assert client.features.tolist() == [1.0, 0.5, 0.3]


def test_spec_activity_tracking() -> None:
    clock = FakeClock()
    manager = BasketManager(config=BasketConfig(min_clients=3, max_clients=50), clock=clock)
    manager.add_client("hospital_1", "healthcare")
    clock.advance(700.0)
    assert manager.get_stale_baskets(threshold=600.0) == ["healthcare_basket_0"]
    manager.touch_client("hospital_1")
    assert manager.get_client("hospital_1").last_active == clock.t  # type: ignore[union-attr]
    manager.touch_basket("healthcare_basket_0")
    stale_baskets = manager.get_stale_baskets(threshold=600.0)
    assert stale_baskets == []


def test_spec_basket_operations() -> None:
    manager = spec_manager()
    basket_id = manager.create_basket("new_domain")
    assert basket_id == "new_domain_basket_0"

    manager.create_basket("legacy", basket_id="old_basket")
    manager.add_client("a", "legacy")
    manager.disband_basket("old_basket")
    assert manager.get_basket("old_basket").status is BasketStatus.DISBANDED  # type: ignore[union-attr]
    assert manager.get_client_basket("a") == "legacy_basket_0"

    manager.create_basket("big", basket_id="huge_basket")
    fill(manager, "big", 40)
    new_basket_1, new_basket_2 = manager.split_basket("huge_basket")
    sizes = [len(manager.get_basket_clients(b)) for b in (new_basket_1, new_basket_2)]
    assert sizes == [20, 20]


def test_spec_stats_example() -> None:
    manager = BasketManager(config=BasketConfig(min_clients=3, max_clients=10))
    for domain, n in (("healthcare", 20), ("finance", 20), ("retail", 10)):
        fill(manager, domain, n, prefix=domain)
    expected = {
        "n_clients": 50,
        "n_baskets": 5,
        "baskets_by_domain": {"healthcare": 2, "finance": 2, "retail": 1},
        "avg_clients_per_basket": 10,
        "n_stale_baskets": 0,
    }
    stats = manager.get_stats()
    assert {k: stats[k] for k in expected} == expected
    assert stats["baskets_by_status"] == {"forming": 0, "active": 5, "stale": 0}
    assert stats["clients_by_domain"] == {"healthcare": 20, "finance": 20, "retail": 10}


def test_spec_edge_cases() -> None:
    manager = spec_manager()
    assert manager.get_stats()["n_baskets"] == 0  # empty domain has no baskets
    assert manager.add_client("x", "d") == "d_basket_0"  # first client creates the first
    info = manager.get_basket("d_basket_0")
    assert info is not None and info.status is BasketStatus.FORMING  # single client: valid


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"min_clients": 0}, ValueError, "min_clients"),
        ({"min_clients": 1.5}, TypeError, "min_clients"),
        ({"min_clients": True}, TypeError, "min_clients"),
        ({"max_clients": 0}, ValueError, "max_clients"),
        ({"min_clients": 5, "max_clients": 4}, ValueError, "max_clients"),
        ({"stale_threshold": 0.0}, ValueError, "stale_threshold"),
        ({"stale_threshold": -1.0}, ValueError, "stale_threshold"),
        ({"stale_threshold": float("nan")}, ValueError, "stale_threshold"),
        ({"stale_threshold": "600"}, TypeError, "stale_threshold"),
        ({"allow_cross_domain": 1}, TypeError, "allow_cross_domain"),
    ],
)
def test_bad_config(kwargs: dict[str, Any], exc: type[Exception], name: str) -> None:
    with pytest.raises(exc, match=name):
        BasketConfig(**kwargs)


def test_config_is_copied_and_checked_again() -> None:
    config = BasketConfig(min_clients=2, max_clients=4)
    manager = BasketManager(config)
    config.max_clients = 1000
    assert manager.config.max_clients == 4
    config.max_clients = 1
    with pytest.raises(ValueError, match="max_clients"):
        BasketManager(config)


def test_bad_manager_arguments() -> None:
    with pytest.raises(TypeError, match="config"):
        BasketManager({"min_clients": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        BasketManager(clock=5.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        BasketManager(clock=lambda: "now")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="seed"):
        BasketManager(seed=-1)


# ---------------------------------------------------------------- lifecycle
def test_lifecycle_forming_active_stale_disbanded() -> None:
    clock = FakeClock()
    manager = BasketManager(BasketConfig(min_clients=2, stale_threshold=60.0), clock=clock)

    def status() -> BasketStatus:
        info = manager.get_basket("d_basket_0")
        assert info is not None
        return info.status

    manager.add_client("a", "d")
    assert status() is BasketStatus.FORMING
    manager.add_client("b", "d")
    assert status() is BasketStatus.ACTIVE
    clock.advance(59.0)
    assert status() is BasketStatus.ACTIVE
    clock.advance(1.0)  # exactly stale_threshold without activity
    assert status() is BasketStatus.STALE
    assert manager.get_stats()["n_stale_baskets"] == 1
    manager.touch_client("a")  # a client heartbeat is not basket activity
    assert status() is BasketStatus.STALE
    manager.record_update("a")  # an update is
    assert status() is BasketStatus.ACTIVE
    clock.advance(100.0)
    manager.touch_basket("d_basket_0")
    assert status() is BasketStatus.ACTIVE
    manager.remove_client("b")  # leaving is activity; below min_clients again
    assert status() is BasketStatus.FORMING
    clock.advance(60.0)
    assert status() is BasketStatus.STALE  # a forming basket goes stale too
    manager.add_client("c", "d")  # a join revives it
    assert status() is BasketStatus.ACTIVE
    manager.remove_client("a")
    manager.remove_client("c")  # the last client leaves: disbanded
    assert status() is BasketStatus.DISBANDED
    info = manager.get_basket("d_basket_0")
    assert info is not None and info.clients == set()
    clock.advance(1000.0)
    manager.touch_basket("d_basket_0")  # ignored: DISBANDED is terminal
    assert status() is BasketStatus.DISBANDED
    assert manager.get_stale_baskets() == []
    assert manager.list_baskets() == []
    assert [b.basket_id for b in manager.list_baskets(include_disbanded=True)] == ["d_basket_0"]
    assert manager.get_stats()["n_baskets"] == 0
    assert manager.get_basket_clients("d_basket_0") == set()
    assert manager.disband_basket("d_basket_0") == {}  # idempotent
    assert manager.add_client("e", "d") == "d_basket_1"  # ids are never reused


def test_stale_threshold_argument() -> None:
    clock = FakeClock()
    manager = BasketManager(BasketConfig(stale_threshold=600.0), clock=clock)
    manager.add_client("a", "x")
    clock.advance(30.0)
    manager.add_client("b", "y")
    clock.advance(20.0)
    assert manager.get_stale_baskets() == []
    assert manager.get_stale_baskets(threshold=25.0) == ["x_basket_0"]
    assert manager.get_stale_baskets(threshold=10.0) == ["x_basket_0", "y_basket_0"]
    with pytest.raises(ValueError, match="threshold"):
        manager.get_stale_baskets(threshold=0.0)
    with pytest.raises(TypeError, match="threshold"):
        manager.get_stale_baskets(threshold="1")  # type: ignore[arg-type]


def test_times_come_from_the_clock() -> None:
    clock = FakeClock(5.0)
    manager = BasketManager(clock=clock)
    manager.add_client("a", "d")
    clock.advance(2.0)
    manager.record_update("a")
    manager.record_update("a")
    client = manager.get_client("a")
    assert client == ClientInfo("a", "d", "d_basket_0", None, 5.0, 7.0, 2, 1.0)
    info = manager.get_basket("d_basket_0")
    assert info is not None and (info.created_at, info.last_activity) == (5.0, 7.0)
    manager.set_trust_score("a", 0.25)
    assert manager.get_client("a").trust_score == 0.25  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="trust_score"):
        manager.set_trust_score("a", float("inf"))


# ---------------------------------------------------------------- assignment
def test_fill_then_new_basket() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=3))
    assert fill(manager, "d", 7) == ["d_basket_0"] * 3 + ["d_basket_1"] * 3 + ["d_basket_2"]
    invariants(manager)


def test_fullest_non_full_basket_wins_ties_to_older() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=3))
    fill(manager, "d", 6)  # d_basket_0: c0-c2, d_basket_1: c3-c5
    manager.remove_client("c0")
    manager.remove_client("c1")
    manager.remove_client("c3")  # 1 and 2 clients
    assert manager.add_client("n1", "d") == "d_basket_1"  # the fuller
    assert manager.add_client("n2", "d") == "d_basket_0"  # d_basket_1 is full now
    manager.remove_client("n1")  # both hold 2: tie goes to the older
    assert manager.add_client("n3", "d") == "d_basket_0"


def test_nearest_centroid_wins_over_fullest() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=4))
    far, near = manager.create_basket("d"), manager.create_basket("d")
    for i in range(4):  # the far basket fills first (fullest, then nearest)
        assert manager.add_client(f"f{i}", "d", features=[10.0 + i, 0.0]) == far
    assert manager.add_client("g", "d", features=[0.0, 0.0]) == near  # the only room
    manager.remove_client("f3")  # far: 3 clients, near: 1
    assert manager.add_client("p", "d", features=[1.0, 1.0]) == near  # nearer, though emptier
    assert manager.add_client("q", "d", features=[9.0, 0.0]) == far
    assert manager.add_client("r", "d") == near  # no fingerprint: the fullest with room


def test_feature_length_is_per_domain() -> None:
    manager = BasketManager()
    manager.add_client("a", "d", features=[1.0, 2.0])
    with pytest.raises(ValueError, match="features has length 3"):
        manager.add_client("b", "d", features=[1.0, 2.0, 3.0])
    manager.add_client("b", "e", features=[1.0, 2.0, 3.0])  # another domain may differ
    manager.remove_client("a")  # the domain's only fingerprint leaves: the length resets
    manager.add_client("c", "d", features=[1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("features", "exc"),
    [
        ([[1.0, 2.0]], ValueError),
        ([], ValueError),
        ([1.0, float("nan")], ValueError),
        ([1.0, float("inf")], ValueError),
        (["a", "b"], TypeError),
        ([True, False], TypeError),
        ([1 + 2j], TypeError),
    ],
)
def test_bad_features(features: Any, exc: type[Exception]) -> None:
    manager = BasketManager()
    with pytest.raises(exc, match="features"):
        manager.add_client("a", "d", features=features)
    assert manager.get_stats()["n_clients"] == 0


def test_integer_features_are_float64_copies() -> None:
    manager = BasketManager()
    raw = np.array([1, 2, 3])
    manager.add_client("a", "d", features=raw)
    raw[0] = 99
    client = manager.get_client("a")
    assert client is not None and client.features is not None
    assert client.features.dtype == np.float64 and client.features.tolist() == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- cross-domain
def test_cross_domain_pools_small_domains() -> None:
    manager = BasketManager(BasketConfig(min_clients=3, max_clients=4, allow_cross_domain=True))
    assert manager.add_client("h1", "health") == "health_basket_0"
    assert manager.add_client("f1", "finance") == "health_basket_0"  # pools, no singleton
    assert manager.add_client("f2", "finance") == "health_basket_0"  # the pool serves finance
    info = manager.get_basket("health_basket_0")
    assert info is not None
    assert info.domain_id == "health" and info.domains == {"health", "finance"}
    assert info.status is BasketStatus.ACTIVE
    # the pool has reached min_clients: a new domain starts its own basket
    assert manager.add_client("r1", "retail") == "retail_basket_0"
    assert manager.add_client("f3", "finance") == "health_basket_0"  # fills the pool
    assert manager.add_client("f4", "finance") == "finance_basket_0"  # pool full: own basket
    stats = manager.get_stats()
    assert stats["baskets_by_domain"] == {"health": 1, "retail": 1, "finance": 1}
    assert stats["clients_by_domain"] == {"health": 1, "finance": 4, "retail": 1}
    invariants(manager)


def test_cross_domain_off_keeps_domains_apart() -> None:
    manager = BasketManager(BasketConfig(min_clients=3, allow_cross_domain=False))
    assert manager.add_client("h1", "health") == "health_basket_0"
    assert manager.add_client("f1", "finance") == "finance_basket_0"


def test_cross_domain_leaving_stops_serving() -> None:
    manager = BasketManager(BasketConfig(min_clients=3, allow_cross_domain=True))
    manager.add_client("h1", "health")
    manager.add_client("f1", "finance")
    manager.remove_client("f1")  # finance has no client in the pool any more
    info = manager.get_basket("health_basket_0")
    assert info is not None and info.domains == {"health"}
    manager.add_client("h2", "health")
    manager.add_client("h3", "health")  # the pool is no longer small
    assert manager.add_client("f2", "finance") == "finance_basket_0"


def test_cross_domain_disband_applies_the_rule() -> None:
    manager = BasketManager(BasketConfig(min_clients=3, allow_cross_domain=True))
    manager.add_client("h1", "health")
    manager.add_client("f1", "finance")
    manager.add_client("r1", "retail")  # all three pooled into health_basket_0
    manager.create_basket("other", basket_id="small")
    moved = manager.disband_basket("health_basket_0")
    # every domain lost its only basket: each client joins the fullest small basket
    assert moved == {"f1": "small", "h1": "small", "r1": "small"}
    invariants(manager)


# ---------------------------------------------------------------- split
def two_clusters(manager: BasketManager, n: int) -> None:
    rng = np.random.default_rng(1)
    for i in range(n):
        center = 0.0 if i % 2 else 50.0
        manager.add_client(f"c{i:02d}", "d", features=center + rng.standard_normal(3))


def test_split_by_features_separates_clusters() -> None:
    manager = BasketManager(BasketConfig(min_clients=2, max_clients=20))
    two_clusters(manager, 20)
    first, second = manager.split_basket("d_basket_0")
    assert (first, second) == ("d_basket_1", "d_basket_2")
    old = manager.get_basket("d_basket_0")
    assert old is not None and old.status is BasketStatus.DISBANDED
    halves = [manager.get_basket_clients(b) for b in (first, second)]
    odd = {f"c{i:02d}" for i in range(1, 20, 2)}
    even = {f"c{i:02d}" for i in range(0, 20, 2)}
    assert sorted(map(sorted, halves)) == sorted(map(sorted, [odd, even]))
    invariants(manager)


def test_split_without_features_is_a_seeded_halving() -> None:
    def halves(seed: int, n: int) -> list[set[str]]:
        manager = BasketManager(BasketConfig(min_clients=1, max_clients=50), seed=seed)
        fill(manager, "d", n)
        return [manager.get_basket_clients(b) for b in manager.split_basket("d_basket_0")]

    for n in (2, 3, 10, 11):
        a = halves(7, n)
        assert a == halves(7, n)  # deterministic for a seed
        assert abs(len(a[0]) - len(a[1])) <= 1 and min(map(len, a)) >= 1
        assert a[0] | a[1] == {f"c{i}" for i in range(n)}
    assert halves(7, 11) != halves(8, 11)  # the seed matters


def test_split_with_partial_features_halves() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=50), seed=3)
    two_clusters(manager, 9)
    manager.add_client("plain", "d")
    first, second = manager.split_basket("d_basket_0")
    assert {len(manager.get_basket_clients(b)) for b in (first, second)} == {5}


def test_split_errors() -> None:
    manager = BasketManager()
    manager.add_client("a", "d")
    with pytest.raises(ValueError, match="d_basket_0"):
        manager.split_basket("d_basket_0")  # one client
    with pytest.raises(ValueError, match="nope"):
        manager.split_basket("nope")
    manager.remove_client("a")
    with pytest.raises(ValueError, match="disbanded"):
        manager.split_basket("d_basket_0")


def test_two_means_unit() -> None:
    same = np.ones((4, 2))
    assert two_means(same, cap=4) is None  # nothing to separate by
    points = np.array([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5], [0.6], [0.7], [0.8], [9.0]])
    labels = two_means(points, cap=10)
    assert labels is not None and labels.sum() in (1, 9)  # the outlier alone
    capped = two_means(points, cap=6)
    assert capped is not None and sorted([capped.sum(), (~capped).sum()]) == [4, 6]
    assert (two_means(points, cap=6) == capped).all()  # deterministic
    halves = random_halves(7, np.random.default_rng(0))
    assert halves.sum() == 3


def test_oversized_basket_splits_automatically_after_disband() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=4), seed=5)
    fill(manager, "d", 8)  # d_basket_0 and d_basket_1, both full
    moved = manager.disband_basket("d_basket_0")
    # 4 clients overflow into d_basket_1 (8 > 4), which is split in two new baskets
    assert set(moved) == {"c0", "c1", "c2", "c3"}
    live = manager.list_baskets()
    assert sorted(b.basket_id for b in live) == ["d_basket_2", "d_basket_3"]
    assert sorted(len(b.clients) for b in live) == [4, 4]
    assert all(moved[c] == manager.get_client_basket(c) for c in moved)
    invariants(manager)


# ---------------------------------------------------------------- disband
def test_disband_merges_into_domain_baskets_with_room() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=5))
    fill(manager, "d", 7)  # d_basket_0: 5, d_basket_1: 2
    other = manager.add_client("x", "e")
    manager.remove_client("c0")
    manager.remove_client("c1")  # d_basket_0: 3, room for 2
    moved = manager.disband_basket("d_basket_1")
    assert moved == {"c5": "d_basket_0", "c6": "d_basket_0"}
    assert manager.get_client_basket("x") == other  # other domains are not involved
    assert [b.basket_id for b in manager.list_baskets()] == ["d_basket_0", other]
    invariants(manager)


def test_disband_only_basket_creates_one() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=5))
    fill(manager, "d", 3)
    manager.add_client("x", "e")
    moved = manager.disband_basket("d_basket_0")
    assert moved == {"c0": "d_basket_1", "c1": "d_basket_1", "c2": "d_basket_1"}


# ---------------------------------------------------------------- ids and errors
def test_ids_and_counters() -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=1))
    manager.create_basket("d", basket_id="d_basket_1")  # a hand-named id the counter skips
    assert manager.create_basket("d") == "d_basket_0"
    assert manager.create_basket("d") == "d_basket_2"
    with pytest.raises(ValueError, match="d_basket_1"):
        manager.create_basket("e", basket_id="d_basket_1")


def test_unknown_and_duplicate_ids() -> None:
    manager = BasketManager()
    manager.add_client("a", "d")
    with pytest.raises(ValueError, match="'a'"):
        manager.add_client("a", "d")
    with pytest.raises(ValueError, match="'a'"):
        manager.add_client("a", "e")
    for method in (manager.touch_client, manager.record_update):
        with pytest.raises(ValueError, match="unknown client_id 'zz'"):
            method("zz")
    for call in (
        manager.touch_basket,
        manager.get_basket_clients,
        manager.disband_basket,
        manager.split_basket,
    ):
        with pytest.raises(ValueError, match="unknown basket_id 'zz'"):
            call("zz")
    with pytest.raises(ValueError, match="client_id"):
        manager.set_trust_score("zz", 1.0)
    assert manager.get_basket("zz") is None
    assert manager.get_client("zz") is None
    assert manager.get_client_basket("zz") is None
    assert manager.remove_client("zz") is False
    assert manager.remove_client("a") is True
    assert manager.remove_client("a") is False


def test_bad_id_types() -> None:
    manager = BasketManager()
    with pytest.raises(TypeError, match="client_id"):
        manager.add_client(1, "d")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="domain_id"):
        manager.add_client("a", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="client_id"):
        manager.add_client("", "d")
    with pytest.raises(TypeError, match="basket_id"):
        manager.get_basket(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client_id"):
        manager.remove_client(None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- snapshots
def test_snapshots_do_not_alias() -> None:
    manager = BasketManager()
    manager.add_client("a", "d", features=[1.0, 2.0])
    info = manager.get_basket("d_basket_0")
    assert isinstance(info, BasketInfo)
    info.clients.add("intruder")
    manager.get_basket_clients("d_basket_0").add("intruder")
    manager.list_baskets()[0].clients.clear()
    assert manager.get_basket_clients("d_basket_0") == {"a"}
    client = manager.get_client("a")
    assert client is not None and client.features is not None
    client.features[0] = 100.0
    client.n_updates = 50
    again = manager.get_client("a")
    assert again is not None and again.features is not None
    assert again.features.tolist() == [1.0, 2.0] and again.n_updates == 0
    manager.add_client("b", "d")
    assert info.clients == {"a", "intruder"}  # the old snapshot did not change


# ---------------------------------------------------------------- persistence
def observable(manager: BasketManager) -> tuple[Any, ...]:
    baskets = manager.list_baskets(include_disbanded=True)
    clients = {c for b in baskets for c in b.clients}
    return (
        baskets,
        {c: manager.get_client(c) for c in sorted(clients)},
        manager.get_stats(),
        manager.get_stale_baskets(),
    )


def test_state_round_trip() -> None:
    clock = FakeClock()
    config = BasketConfig(min_clients=2, max_clients=4, stale_threshold=30.0)
    manager = BasketManager(config, clock=clock, seed=11)
    two_clusters(manager, 6)
    fill(manager, "e", 5)
    manager.add_client("x", "f", features=[0.5])
    manager.record_update("c01")
    manager.set_trust_score("c02", 0.5)
    manager.disband_basket("e_basket_1")  # overflows e_basket_0, which is split
    manager.create_basket("g", basket_id="empty")
    clock.advance(40.0)
    e_basket = manager.get_client_basket("c0")
    assert e_basket is not None
    manager.touch_basket(e_basket)

    state = json.loads(json.dumps(manager.state_dict()))
    restored = BasketManager.from_state(state, clock=clock)
    assert observable(restored) == observable(manager)
    assert restored.state_dict() == state
    assert restored.config == manager.config
    # new ids do not collide and seeded halvings agree
    for m in (manager, restored):
        m.add_client("new", "e")
    assert restored.get_client_basket("new") == manager.get_client_basket("new")
    assert restored.split_basket(e_basket) == manager.split_basket(e_basket)
    assert observable(restored) == observable(manager)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s.update(version=2), "version"),
        (lambda s: s["clients"][0].update(basket_id="nowhere"), "no live basket"),
        (lambda s: s["baskets"][0]["clients"].append("ghost"), "disagrees"),
        (lambda s: s["clients"][0].update(n_updates=-1), "negative"),
        (lambda s: s["clients"][0].update(features=[1.0, float("nan")]), "finite"),
        (lambda s: s.pop("counters"), "counters"),
        (lambda s: s["config"].update(min_clients=0), "min_clients"),
        (lambda s: s["baskets"][0].update(status="gone"), "status"),
        (lambda s: s["config"].update(max_clients=1, min_clients=1), "exceeds max_clients"),
    ],
)
def test_bad_state(edit: Any, match: str) -> None:
    manager = BasketManager(BasketConfig(min_clients=1, max_clients=3))
    manager.add_client("a", "d", features=[1.0, 2.0])
    manager.add_client("b", "d", features=[1.0, 3.0])
    state = manager.state_dict()
    edit(state)
    with pytest.raises(ValueError, match=match):
        BasketManager.from_state(state)


# ---------------------------------------------------------------- concurrency
@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every 10 us so the threads below really interleave."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(saved)


@pytest.mark.usefixtures("fast_switching")
def test_eight_threads() -> None:
    manager = BasketManager(BasketConfig(min_clients=2, max_clients=6), seed=0)
    n_threads, per_thread = 8, 200
    updates: list[dict[str, int]] = [{} for _ in range(n_threads)]

    def work(t: int) -> None:
        rnd = random.Random(t)
        mine: list[str] = []
        for i in range(per_thread):
            cid = f"t{t}_{i}"
            domain = f"d{rnd.randrange(3)}"
            feats = [rnd.random(), rnd.random()] if domain == "d0" else None
            manager.add_client(cid, domain, features=feats)
            mine.append(cid)
            updates[t][cid] = 0
            for _ in range(rnd.randrange(4)):
                victim = rnd.choice(mine)
                manager.record_update(victim)
                updates[t][victim] += 1
            manager.touch_client(rnd.choice(mine))
            basket = manager.get_client_basket(rnd.choice(mine))
            if basket is not None:
                manager.touch_basket(basket)
            if rnd.random() < 0.3:
                gone = mine.pop(rnd.randrange(len(mine)))
                assert manager.remove_client(gone)
                del updates[t][gone]
            if rnd.random() < 0.05 and basket is not None:
                manager.disband_basket(basket)
            invariants_light(manager)

    run_in_threads(work, n_threads)
    invariants(manager)
    expected = {cid: n for per in updates for cid, n in per.items()}
    assert manager.get_stats()["n_clients"] == len(expected)
    for cid, n in expected.items():
        client = manager.get_client(cid)
        assert client is not None and client.n_updates == n
    assert sum(b.status is BasketStatus.DISBANDED for b in manager.list_baskets()) == 0


def invariants_light(manager: BasketManager) -> None:
    """A consistent snapshot while other threads write: sizes within bounds, no duplicates."""
    baskets = manager.list_baskets()
    members = [c for b in baskets for c in b.clients]
    assert len(members) == len(set(members))
    assert all(len(b.clients) <= 6 for b in baskets)
