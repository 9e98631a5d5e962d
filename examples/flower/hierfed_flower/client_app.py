"""The ClientApp, one for every role a node's ``--node-config`` gives it.

- no ``role`` (the plaintext path, :mod:`.server_app` without ``private``): local training;
  the reply holds the trained model in the clear, its metrics and the node's domain;
- ``role="member"`` (the private path): local training; the reply holds only the update
  sealed to the member's basket aggregator (``provision-dir`` holds its pinned key);
- ``role="basket"``: a basket aggregator, answering the SecAgg+ stages
  (``train.hierfed_secagg``) with its provisioned keys.

A member never answers in the clear, whatever the server asks.
"""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from hierfed.integrations.flower_private_node import BasketAggregatorNode, member_reply
from hierfed.integrations.private_provision import load_basket, load_member

from . import task

app = ClientApp()


def _received(msg: Message) -> task.Arrays:
    """The global model's arrays in ``msg``, by name."""
    return {name: a.numpy() for name, a in msg.content.array_records["arrays"].items()}


def _shard(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def _provision_dir(context: Context) -> str:
    return str(context.node_config["provision-dir"])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model locally; reply (by role) in the clear or sealed."""
    role = task.role(context.node_config)
    if role == "basket":
        raise ValueError("a basket aggregator node does not train")
    cfg = task.settings(context.run_config)
    x, y, _, _ = task.partition(*_shard(context))
    received = _received(msg)
    model, loss = task.train(received, x, y, int(cfg["local-epochs"]), float(cfg["lr"]))
    if role == "member":
        return member_reply(msg, load_member(_provision_dir(context)), model)
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


@app.train("hierfed_secagg")
def secagg_stage(msg: Message, context: Context) -> Message:
    """A basket aggregator's answer to one SecAgg+ stage."""
    if task.role(context.node_config) != "basket":
        raise ValueError("only a basket aggregator node answers SecAgg+ stages")
    return BasketAggregatorNode(load_basket(_provision_dir(context))).handle(msg, context)


@app.query("hierfed_role")
def role(msg: Message, context: Context) -> Message:
    """The node's role and basket (public: the server routes by them)."""
    kind = task.role(context.node_config)
    basket = ""
    if kind == "member":
        basket = load_member(_provision_dir(context)).basket_id
    elif kind == "basket":
        basket = load_basket(_provision_dir(context)).basket_id
    record = ConfigRecord({"role": kind, "basket": basket})
    return Message(content=RecordDict({"role": record}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on the node's validation split (plaintext path)."""
    _, _, x, y = task.partition(*_shard(context))
    received = _received(msg)
    loss, accuracy = task.evaluate(received, x, y)
    metrics = MetricRecord({"eval-loss": loss, "eval-acc": accuracy, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
