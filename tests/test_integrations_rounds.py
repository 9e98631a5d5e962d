"""FederationRounds: synchronous rounds of named-array models over HierarchicalFederation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hierfed import FederationConfig, HierarchicalFederation, Layer1Config, Layer2Config
from hierfed.integrations._rounds import FederationRounds


def _config(secure: bool = False, min_baskets: int = 1, **layer1: object) -> FederationConfig:
    return FederationConfig(
        layer1=Layer1Config(
            **{"aggregation_method": "trimmed_mean", "apply_local_noise": False, **layer1}
        ),
        layer2=Layer2Config(
            use_secure_aggregation=secure,
            central_dp_epsilon=None,
            clip_norm=100.0,
            min_baskets=min_baskets,
        ),
    )


def _model(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "w": (rng.standard_normal((3, 4)) * scale).astype(np.float32),
        "steps": np.array(5, np.int64),
        "b": (rng.standard_normal(4) * scale).astype(np.float32),
    }


CLIENTS = [(f"node{i}", "hospital" if i % 2 else "bank") for i in range(10)]


def test_rounds_equal_the_federation_on_the_same_updates() -> None:
    """Three rounds through FederationRounds and through HierarchicalFederation directly."""
    rng = np.random.default_rng(0)
    initial = _model(rng)
    rounds = FederationRounds(_config())
    reference = HierarchicalFederation(  # one aggregation per round: flush() runs it
        dataclasses.replace(_config(), auto_aggregate=False),
        initial_model=np.concatenate([initial["w"].ravel(), initial["b"]]),
    )
    for cid, domain in CLIENTS:
        reference.register_client(cid, domain)
    arrays = initial
    for _ in range(3):
        rounds.start_round(arrays)
        base = np.concatenate([arrays["w"].ravel(), arrays["b"]])
        for cid, domain in CLIENTS:
            trained = {
                k: v + rng.normal(0, 0.1, v.shape).astype(v.dtype) for k, v in arrays.items()
            }
            trained["steps"] = np.array(99, np.int64)  # not aggregated: the global's is kept
            assert rounds.submit(cid, domain, trained) is None
            flat = np.concatenate([trained["w"].ravel(), trained["b"]])
            reference.submit_update(cid, flat - base, base_version=reference.version)
        result = rounds.finish_round()
        reference.flush()
        assert result.arrays is not None
        assert list(result.arrays) == ["w", "steps", "b"]
        assert result.arrays["steps"] == 5 and result.arrays["w"].dtype == np.float32
        assert reference.model is not None
        np.testing.assert_array_equal(result.arrays["w"].ravel(), reference.model[:12])
        np.testing.assert_array_equal(result.arrays["b"], reference.model[12:])
        assert result.metrics["baskets"] == 2 and result.metrics["clients"] == 10
        assert result.metrics["accepted"] == 10 and result.metrics["rejected"] == 0
        arrays = result.arrays
    assert result.metrics["version"] == 3 == reference.version


def test_secure_aggregation_matches_to_fixed_point_precision() -> None:
    rng = np.random.default_rng(1)
    plain, secure = FederationRounds(_config()), FederationRounds(_config(secure=True))
    initial = _model(rng)
    plain.start_round(initial)
    secure.start_round(initial)
    for cid, domain in CLIENTS:
        trained = _model(rng, 0.3)
        plain.submit(cid, domain, trained)
        secure.submit(cid, domain, trained)
    a, b = plain.finish_round(), secure.finish_round()
    assert b.metrics["secure-agg-simulated"] == 1 and a.metrics["secure-agg-simulated"] == 0
    assert a.metrics["secure-agg"] == b.metrics["secure-agg"] == 0  # in process: simulated
    assert a.arrays is not None and b.arrays is not None
    np.testing.assert_allclose(b.arrays["w"], a.arrays["w"], atol=1e-6)


def test_byzantine_node_in_a_basket_is_trimmed() -> None:
    rng = np.random.default_rng(2)
    rounds = FederationRounds(_config(trim_alpha=0.2))
    initial = _model(rng)
    rounds.start_round(initial)
    for i, (cid, domain) in enumerate(CLIENTS):
        trained = {k: v.copy() for k, v in initial.items()}
        trained["w"] += 0.01
        if i == 0:
            trained["w"] += 1e6  # the attacker
        rounds.submit(cid, domain, trained)
    result = rounds.finish_round()
    assert result.arrays is not None
    np.testing.assert_allclose(result.arrays["w"], initial["w"] + 0.01, atol=1e-5)


def test_bad_replies_are_rejected_and_counted() -> None:
    rng = np.random.default_rng(3)
    rounds = FederationRounds(_config())
    initial = _model(rng)
    rounds.start_round(initial)
    assert rounds.submit("a", None, initial) == "domain"
    wrong = dict(initial, b=np.zeros(5, np.float32))
    assert rounds.submit("b", "bank", wrong) == "layout"
    assert rounds.submit("c", "bank", {}) == "layout"
    nan = {k: v.copy() for k, v in initial.items()}
    nan["w"][0, 0] = np.nan
    assert rounds.submit("d", "bank", nan) == "update"
    for cid in ("e", "f", "g"):
        assert rounds.submit(cid, "bank", initial) is None
    assert rounds.submit("e", "bank", initial) == "update"  # a second update in one round
    metrics = rounds.finish_round().metrics
    assert metrics["accepted"] == 3 and metrics["rejected"] == 5
    assert metrics["rejected-domain"] == 1 and metrics["rejected-layout"] == 2
    assert metrics["rejected-update"] == 2


def test_round_without_enough_baskets_keeps_the_model_and_discards_updates() -> None:
    rng = np.random.default_rng(4)
    rounds = FederationRounds(_config(min_baskets=2))
    initial = _model(rng)
    rounds.start_round(initial)
    for cid in ("a", "b", "c"):
        assert rounds.submit(cid, "bank", _model(rng)) is None
    result = rounds.finish_round()
    assert result.arrays is None and result.metrics["discarded"] == 3
    assert result.metrics["version"] == 0
    rounds.start_round(initial)  # the same clients may submit again, now with a second domain
    for cid, domain in (("a", "bank"), ("b", "bank"), ("x", "hospital")):
        assert rounds.submit(cid, domain, _model(rng)) is None
    result = rounds.finish_round()
    assert result.arrays is not None and result.metrics["baskets"] == 2


def test_too_small_basket_is_left_out_of_the_round() -> None:
    rng = np.random.default_rng(5)
    rounds = FederationRounds(_config(aggregation_method="krum", method_params={"f": 1}))
    rounds.start_round(_model(rng))
    for i in range(5):
        rounds.submit(f"bank{i}", "bank", _model(rng))
    for i in range(3):  # krum with f=1 needs 5
        rounds.submit(f"hospital{i}", "hospital", _model(rng))
    result = rounds.finish_round()
    assert result.metrics["baskets"] == 1 and result.metrics["clients"] == 5
    assert result.metrics["discarded"] == 3 and result.metrics["outliers-removed"] == 4


def test_a_client_changing_domain_moves_basket() -> None:
    rng = np.random.default_rng(6)
    rounds = FederationRounds(_config())
    rounds.start_round(_model(rng))
    rounds.submit("a", "bank", _model(rng))
    rounds.finish_round()
    assert rounds.federation is not None
    first = rounds.federation.manager.get_client_basket("a")
    rounds.start_round(_model(rng))
    rounds.submit("a", "hospital", _model(rng))
    rounds.finish_round()
    client = rounds.federation.manager.get_client("a")
    assert client is not None and client.domain_id == "hospital" and client.basket_id != first


def test_call_order_is_enforced() -> None:
    rounds = FederationRounds()
    with pytest.raises(RuntimeError, match="start_round"):
        rounds.submit("a", "bank", {})
    with pytest.raises(RuntimeError, match="start_round"):
        rounds.finish_round()
    with pytest.raises(TypeError, match="FederationConfig"):
        FederationRounds(object())  # type: ignore[arg-type]


def test_federation_discard_buffered_lets_clients_submit_again() -> None:
    fed = HierarchicalFederation(
        dataclasses.replace(_config(), auto_aggregate=False), initial_model=np.zeros(4)
    )
    for cid in ("a", "b"):
        fed.register_client(cid, "bank")
        fed.submit_update(cid, np.ones(4), base_version=0)
    with pytest.raises(ValueError, match="already submitted"):
        fed.submit_update("a", np.ones(4), base_version=0)
    assert fed.discard_buffered() == 2 and len(fed.buffer) == 0
    assert fed.get_stats()["dropped_unaggregated"] == 2
    assert fed.submit_update("a", np.full(4, 2.0), base_version=0)
    fed.flush()
    assert fed.model is not None and np.allclose(fed.model, 2.0)
