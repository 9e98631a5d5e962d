"""The ClientApp: local training and evaluation on a node's shard; it reports its domain."""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from . import task

app = ClientApp()


def _received(msg: Message) -> task.Arrays:
    """The global model's arrays in ``msg``, by name."""
    return {name: a.numpy() for name, a in msg.content.array_records["arrays"].items()}


def _shard(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply with it, the metrics and the node's domain."""
    cfg = task.settings(context.run_config)
    x, y, _, _ = task.partition(*_shard(context))
    received = _received(msg)
    model, loss = task.train(received, x, y, int(cfg["local-epochs"]), float(cfg["lr"]))
    content = RecordDict(
        {
            "arrays": ArrayRecord({name: Array(a) for name, a in model.items()}),
            "metrics": MetricRecord({"train-loss": loss, "num-examples": len(y)}),
            "node": ConfigRecord(
                {"domain": task.domain(context.node_config, int(cfg["num-domains"]))}
            ),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the node's validation split."""
    _, _, x, y = task.partition(*_shard(context))
    received = _received(msg)
    loss, accuracy = task.evaluate(received, x, y)
    metrics = MetricRecord({"eval-loss": loss, "eval-acc": accuracy, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
