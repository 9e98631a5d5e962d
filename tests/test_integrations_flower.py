"""HierarchicalStrategy on Flower's Message API: replies in, hierfed's rounds, metrics out."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hierfed import FederationConfig, Layer1Config, Layer2Config

pytest.importorskip("flwr")
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)

from hierfed.integrations.flower import HierarchicalStrategy, domain_of


@pytest.fixture(autouse=True)
def _server_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages are built as inside a running ServerApp (run 1, the SuperLink's node 0)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _config(**layer2: Any) -> FederationConfig:
    return FederationConfig(
        layer1=Layer1Config(aggregation_method="median", apply_local_noise=False),
        layer2=Layer2Config(
            **{"central_dp_epsilon": None, "clip_norm": 100.0, "min_baskets": 1, **layer2}
        ),
    )


def _record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in arrays.items()})


def _reply(node_id: int, content: RecordDict) -> Message:
    sent = Message(content=RecordDict(), dst_node_id=node_id, message_type=MessageType.TRAIN)
    return Message(content=content, reply_to=sent)


def _train_reply(node_id: int, arrays: dict[str, np.ndarray], **extra: Any) -> Message:
    content = {
        "arrays": _record(arrays),
        "metrics": MetricRecord({"num-examples": 10, "train-loss": float(node_id)}),
    }
    content.update(extra)
    return _reply(node_id, RecordDict(content))


GLOBAL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def _run_round(strategy: HierarchicalStrategy, replies: list[Message]) -> tuple[Any, Any]:
    strategy.rounds.start_round(GLOBAL)  # what configure_train records
    return strategy.aggregate_train(1, replies)


def test_domain_from_config_record_metric_record_or_default() -> None:
    cfg = RecordDict({"node": ConfigRecord({"domain": "hospital"})})
    assert domain_of(cfg) == "hospital"
    assert domain_of(RecordDict({"m": MetricRecord({"domain": 2.0})})) == "2"
    assert domain_of(RecordDict({"m": MetricRecord({"domain": 3})})) == "3"
    assert domain_of(RecordDict({"m": MetricRecord({"loss": 1.0})})) is None


def test_aggregate_train_places_nodes_in_domain_baskets_and_reports_metrics() -> None:
    strategy = HierarchicalStrategy(_config(use_secure_aggregation=True))
    replies = []
    for node in range(1, 7):
        model = {k: v + node for k, v in GLOBAL.items()}
        domain = ConfigRecord({"domain": "bank" if node <= 3 else "clinic"})
        replies.append(_train_reply(node, model, node=domain))
    arrays, metrics = _run_round(strategy, replies)
    # median per basket: bank 2, clinic 5; equal sizes: the global model moves by 3.5
    np.testing.assert_allclose(arrays["w"].numpy(), np.full((2, 3), 3.5), atol=1e-6)
    assert arrays["b"].numpy().dtype == np.float32
    assert metrics["hierfed.baskets"] == 2 and metrics["hierfed.clients"] == 6
    assert metrics["hierfed.secure-agg"] == 0 and metrics["hierfed.secure-agg-simulated"] == 1
    assert metrics["hierfed.version"] == 1
    assert metrics["hierfed.epsilon"] == 0.0 and metrics["hierfed.rejected"] == 0
    assert metrics["train-loss"] == pytest.approx(3.5)  # Flower's weighted average
    assert strategy.federation is not None and strategy.federation.version == 1
    baskets = {strategy.federation.manager.get_client_basket(str(n)) for n in range(1, 7)}
    assert len(baskets) == 2


def test_replies_without_domain_or_arrays_are_rejected_unless_defaulted() -> None:
    strategy = HierarchicalStrategy(_config())
    good = [_train_reply(n, GLOBAL, node=ConfigRecord({"domain": "bank"})) for n in (1, 2)]
    no_domain = _train_reply(3, GLOBAL)
    no_arrays = _reply(4, RecordDict({"node": ConfigRecord({"domain": "bank"})}))
    _, metrics = _run_round(strategy, [*good, no_domain, no_arrays])
    assert metrics["hierfed.accepted"] == 2 and metrics["hierfed.rejected"] == 2
    assert metrics["hierfed.rejected-domain"] == 1 and metrics["hierfed.rejected-layout"] == 1
    defaulted = HierarchicalStrategy(_config(), default_domain="everyone")
    _, metrics = _run_round(defaulted, [*good, no_domain])
    assert metrics["hierfed.accepted"] == 3


def test_no_model_when_too_few_baskets() -> None:
    strategy = HierarchicalStrategy(_config(min_baskets=2))
    replies = [_train_reply(n, GLOBAL, node=ConfigRecord({"domain": "bank"})) for n in (1, 2)]
    arrays, metrics = _run_round(strategy, replies)
    assert arrays is None and metrics["hierfed.discarded"] == 2


def test_central_dp_is_accounted_over_rounds() -> None:
    strategy = HierarchicalStrategy(_config(central_dp_epsilon=1.0))
    spent = []
    for node_offset in (0, 10):
        replies = [
            _train_reply(node_offset + n, GLOBAL, node=ConfigRecord({"domain": d}))
            for n, d in ((1, "a"), (2, "a"), (3, "b"), (4, "b"))
        ]
        _, metrics = _run_round(strategy, replies)
        spent.append(metrics["hierfed.epsilon"])
        assert metrics["hierfed.noise-sigma"] > 0 and metrics["hierfed.delta"] == 1e-5
    assert 0 < spent[0] < spent[1] <= 2.0


def test_layer2_clips_basket_models() -> None:
    strategy = HierarchicalStrategy(_config(clip_norm=10.0))
    replies = []
    for node in range(1, 7):
        model = {k: v + node for k, v in GLOBAL.items()}
        domain = ConfigRecord({"domain": "bank" if node <= 3 else "clinic"})
        replies.append(_train_reply(node, model, node=domain))
    arrays, metrics = _run_round(strategy, replies)
    # clinic's median 5 in 9 coordinates has norm 15: clipped to 10 (5 -> 10/3)
    assert metrics["hierfed.baskets-clipped"] == 1
    np.testing.assert_allclose(arrays["w"].numpy(), (2 + 10 / 3) / 2, rtol=1e-5)


def test_legacy_strategy_runs_the_same_hierarchy() -> None:
    from types import SimpleNamespace

    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    from hierfed.integrations.flower_legacy import LegacyHierarchicalStrategy

    def weighted(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        total = sum(n for n, _ in metrics)
        return {"train-loss": sum(n * m["train-loss"] for n, m in metrics) / total}

    strategy = LegacyHierarchicalStrategy(_config(), fit_metrics_aggregation_fn=weighted)
    strategy.rounds.start_round({"0": GLOBAL["w"], "1": GLOBAL["b"]})  # what configure_fit does
    results = []
    for node in range(1, 7):
        params = ndarrays_to_parameters([GLOBAL["w"] + node, GLOBAL["b"] + node])
        domain = "bank" if node <= 3 else 7.0  # a string or a number
        res = FitRes(Status(Code.OK, ""), params, 10, {"domain": domain, "train-loss": 1.0})
        results.append((SimpleNamespace(cid=f"c{node}"), res))
    params, metrics = strategy.aggregate_fit(1, results, [])
    w, b = parameters_to_ndarrays(params)
    np.testing.assert_allclose(w, np.full((2, 3), 3.5), atol=1e-6)
    np.testing.assert_allclose(b, np.full(3, 3.5), atol=1e-6)
    assert metrics["hierfed.baskets"] == 2 and metrics["train-loss"] == 1.0
    assert strategy.federation is not None
    assert strategy.federation.manager.get_client("c4").domain_id == "7"
