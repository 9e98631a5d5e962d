"""HierarchicalStrategy with DP-FedAvg in its baskets against Flower's own
DifferentialPrivacyServerSideAdaptiveClipping on the same replies (noise off): the same
clipped mean in the first round, the clip norm moved by the inverse factor (Flower counts
clipped updates with the paper's sign), and the round metrics naming each epsilon."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hierfed import FederationConfig, Layer1Config, Layer2Config
from hierfed.basket import BasketConfig
from hierfed.privacy import DPFedAvgConfig, NoiseGenerator

pytest.importorskip("flwr")
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import DifferentialPrivacyServerSideAdaptiveClipping, FedAvg

from hierfed.integrations.flower import HierarchicalStrategy


@pytest.fixture(autouse=True)
def _server_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


GLOBAL = {"w": np.zeros((2, 3)), "b": np.zeros(3)}


def replies(models: list[dict[str, np.ndarray]]) -> list[Message]:
    out = []
    for node, arrays in enumerate(models, start=1):
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v.copy()) for k, v in arrays.items()}),
                "metrics": MetricRecord({"num-examples": 10, "domain": 1}),
            }
        )
        sent = Message(content=RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)
        out.append(Message(content=content, reply_to=sent))
    return out


def strategy(dp: DPFedAvgConfig, across: DPFedAvgConfig | None = None) -> HierarchicalStrategy:
    config = FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=100),
        layer1=Layer1Config(
            aggregation_method="mean", min_updates=1, apply_local_noise=False, dp_fedavg=dp
        ),
        layer2=Layer2Config(
            use_secure_aggregation=False,
            central_dp_epsilon=None,
            clip_norm=1e9,
            min_baskets=1,
            dp_fedavg=across,
        ),
    )
    return HierarchicalStrategy(config, generator=NoiseGenerator(4, secure=False))


def test_first_round_and_clip_norm_against_flower(rng):
    for gamma in (0.25, 0.5, 0.75):
        models = [{k: rng.normal(0, 1, v.shape) for k, v in GLOBAL.items()} for _ in range(6)]
        ours = strategy(
            DPFedAvgConfig(0.0, count_stddev=0.0, initial_clip_norm=1.5, target_quantile=gamma)
        )
        ours.rounds.start_round(GLOBAL)
        arrays, metrics = ours.aggregate_train(1, replies(models))
        flower = DifferentialPrivacyServerSideAdaptiveClipping(
            FedAvg(), 0.0, 6, initial_clipping_norm=1.5, target_clipped_quantile=1 - gamma
        )
        flower.current_arrays = ArrayRecord({k: Array(v) for k, v in GLOBAL.items()})
        theirs, _ = flower.aggregate_train(1, replies(models))
        for k in GLOBAL:
            np.testing.assert_allclose(arrays[k].numpy(), theirs[k].numpy(), rtol=1e-12)
        assert math.log(metrics["hierfed.client-clip-norm"] / 1.5) == pytest.approx(
            -math.log(flower.clipping_norm / 1.5), rel=1e-12, abs=1e-15
        )


def test_round_metrics_name_the_client_epsilon(rng):
    dp = DPFedAvgConfig(1.0, sample_rate=0.5, count_stddev=2.0, initial_clip_norm=0.5)
    s = strategy(dp, DPFedAvgConfig(1.0, count_stddev=1.0))
    for t in range(3):
        s.rounds.start_round(GLOBAL)
        models = [{k: rng.normal(0, 1, v.shape) for k, v in GLOBAL.items()} for _ in range(6)]
        _, metrics = s.aggregate_train(t + 1, replies(models))
    fed = s.federation
    assert fed is not None and fed.version == 3
    assert metrics["hierfed.client-epsilon"] == fed.max_client_privacy_spent()[0] > 0
    assert metrics["hierfed.epsilon"] == fed.privacy_spent()[0] > 0
    assert metrics["hierfed.clip-norm"] == fed.layer2.dp_fedavg.clip_norm
    assert metrics["hierfed.client-clip-norm"] == next(iter(fed.layer1.clip_norms.values()))
    assert metrics["hierfed.baskets-clipped"] == 0  # released only noised under DP-FedAvg
