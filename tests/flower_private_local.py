"""The example's private path with every node in this process: a Grid that hands each message
to the example's ClientApp with that node's own Context (node config, persistent
``context.state``), as a SuperNode does, and can kill nodes at a stage."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context, Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flower"


def example_modules() -> Any:
    """The example's modules (imported from examples/flower)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    from hierfed_flower import client_app, private_server, provision, task

    return client_app, private_server, provision, task


class LocalGrid(Grid):
    """Nodes in this process; ``kill[node_id] = stage``: the node stops answering from that
    SecAgg+ stage on (``"advertise"`` .. ``"unmask"``), as a killed SuperNode would."""

    def __init__(self, app: Any, node_configs: dict[int, dict[str, Any]]) -> None:
        self.app = app
        self.contexts = {
            n: Context(run_id=1, node_id=n, node_config=cfg, state=RecordDict(), run_config={})
            for n, cfg in node_configs.items()
        }
        self.kill: dict[int, str] = {}
        self.dead: set[int] = set()
        self.sent: list[Message] = []
        self.tamper: Any = None
        self._pushed = 0
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:  # pragma: no cover - not used
        pass

    @property
    def run(self) -> Run:  # pragma: no cover - not used
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:  # pragma: no cover
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Each message handed to its node's ClientApp at once; the reply kept for a pull."""
        ids = []
        for m in messages:
            if self.tamper is not None:
                m = self.tamper(m)
            self.sent.append(m)
            self._pushed += 1
            msg_id = f"local-{self._pushed}"
            m.metadata.__dict__["_message_id"] = msg_id  # as Flower's InMemoryGrid does
            ids.append(msg_id)
            node = m.metadata.dst_node_id
            cfg = m.content.config_records.get("hierfed.secagg")
            stage = None if cfg is None else cfg.get("stage")
            if stage is not None and self.kill.get(node) == stage:
                self.dead.add(node)
            if node in self.dead:
                continue
            server, TaskIdentity.node_id = TaskIdentity.node_id, node  # the reply's source
            try:
                reply = self.app(m, self.contexts[node])
            finally:
                TaskIdentity.node_id = server
            assert reply.metadata.reply_to_message_id == msg_id
            self._replies[msg_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The kept replies to ``message_ids``, each once."""
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))


def deployment(
    root: Path,
    *,
    members: int = 6,
    domains: int = 2,
    n_min: int | None = None,
    rounds: int = 3,
    sigma: float = 0.002,
) -> tuple[LocalGrid, Any]:
    """Provision ``root`` and build the nodes' configs: members first, then baskets."""
    client_app, _, provision, _ = example_modules()
    args = [str(root), "--members", str(members), "--domains", str(domains)]
    args += ["--rounds", str(rounds), "--sigma", str(sigma)]
    if n_min is not None:
        args += ["--n-min", str(n_min)]
    provision.main(args)
    configs: dict[int, dict[str, Any]] = {}
    for i in range(members):
        configs[100 + i] = {
            "role": "member",
            "partition-id": i,
            "num-partitions": members,
            "provision-dir": str(root / f"member-{i}"),
        }
    for b in range(domains):
        configs[200 + b] = {"role": "basket", "provision-dir": str(root / f"basket-domain-{b}")}
    return LocalGrid(client_app.app, configs), np


def member_update(task: Any, base: dict[str, Any], partition: int, members: int) -> Any:
    """Member ``partition``'s update from global model ``base``, recomputed (deterministic)."""
    cfg = task.settings({})
    x, y, _, _ = task.partition(partition, members)
    model, _ = task.train(base, x, y, int(cfg["local-epochs"]), float(cfg["lr"]))
    flat = np.concatenate([model["weight"].ravel(), model["bias"]])
    start = np.concatenate([np.asarray(base["weight"]).ravel(), np.asarray(base["bias"])])
    return flat.astype(np.float32) - start.astype(np.float32)
