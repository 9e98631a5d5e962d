"""The ServerApp: the plaintext path (hierfed's HierarchicalStrategy over the nodes' domain
baskets: nodes send their models in the clear, the ServerApp runs every role in its own
process) or, with ``private=true``, the private path (:mod:`.private_server`)."""

from __future__ import annotations

from typing import Any

from flwr.app import Array, ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

from hierfed import FederationConfig, Layer1Config, Layer2Config
from hierfed.integrations.flower import HierarchicalStrategy

from . import task
from .private_server import central_accuracy, run_private

app = ServerApp()


def federation_config(cfg: dict[str, Any]) -> FederationConfig:
    """The federation the run config describes (one basket per domain at this size)."""
    epsilon = float(cfg["central-dp-epsilon"])
    params: dict[str, Any] = {}
    if cfg["rule"] == "trimmed_mean":
        params["trim_ratio"] = float(cfg["trim-ratio"])
    elif cfg["rule"] in ("krum", "multi_krum", "bulyan"):
        params["f"] = int(cfg["f"])  # Byzantine nodes tolerated per basket
    return FederationConfig(
        layer1=Layer1Config(
            aggregation_method=str(cfg["rule"]),
            method_params=params,
            apply_local_noise=False,
        ),
        layer2=Layer2Config(
            use_secure_aggregation=bool(cfg["secure-aggregation"]),
            central_dp_epsilon=epsilon if epsilon > 0 else None,
            clip_norm=float(cfg["clip-norm"]),
            min_baskets=1,
        ),
    )


def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Accuracy of the global model on the held-out digits."""
    x, y = task.held_out()
    loss, accuracy = task.evaluate({k: a.numpy() for k, a in arrays.items()}, x, y)
    return MetricRecord({"central-loss": loss, "central-acc": accuracy})


def run(grid: Grid, cfg: dict[str, Any]) -> Result:
    """Run the federation for ``num-server-rounds`` rounds; Flower's Result."""
    strategy = HierarchicalStrategy(
        federation_config(cfg),
        min_available_nodes=int(cfg["min-nodes"]),
        min_train_nodes=int(cfg["min-nodes"]),
        min_evaluate_nodes=int(cfg["min-nodes"]),
        seed=int(cfg["seed"]),
    )
    initial = ArrayRecord({k: Array(a) for k, a in task.initial_arrays().items()})
    return strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg["num-server-rounds"]),
        evaluate_fn=central_evaluate,
    )


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Entry point of the ServerApp."""
    cfg = task.settings(context.run_config)
    if cfg["private"]:
        model, _ = run_private(grid, cfg)
        accuracy = central_accuracy(model)
    else:
        result = run(grid, cfg)
        final = result.evaluate_metrics_serverapp[max(result.evaluate_metrics_serverapp)]
        value = final["central-acc"]
        assert isinstance(value, (int, float)), value  # a MetricRecord value may be a list
        accuracy = float(value)
    print(f"hierfed-flower: final central accuracy {accuracy:.3f}")
