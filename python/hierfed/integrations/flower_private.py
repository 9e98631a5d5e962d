"""Private rounds on Flower's runtime: the ServerApp relays and releases only a noised sum
(extra ``flower``).

Roles (each node's ``--node-config role="member"`` or ``role="basket"``, see
:mod:`.flower_private_node`): *members* train; one *basket aggregator* node per basket runs
Layer 1 for its members and enters SecAgg+; the ServerApp (:class:`PrivateRounds`) is the
global aggregator, trusted for availability only. One round, as Flower's
``SecAggPlusWorkflow`` runs its stages (a push and pulls per stage, :mod:`.flower_grid`;
SecAgg+ bytes in ConfigRecords, a node that does not answer within ``timeout`` dropped):

1. the global model to every member (with the round's session id and number) and, in the
   same push, the operator-signed session plan to every basket aggregator (``advertise``);
   members reply with their update sealed to their basket's pinned key and signed;
2. ``share_keys``: the rosters;
3. ``masked_input``: the routed shares, each basket's sealed updates and the round's rotation
   seed (drawn now, after the updates are in): the node opens, runs Layer 1, clips, weights,
   noises, encodes and masks;
4. ``consistency``;
5. ``unmask``;
6. :class:`hierfed.secagg.Server` unmasks the survivors' sum, which holds every survivor's
   noise share, and :class:`hierfed.deploy.GlobalAggregator` decodes and accounts it; the
   global model moves by ``server_learning_rate`` times the released update.

A round with too few survivors for the threshold or the noise (``ddg.n_min``), or any
protocol failure, aborts: nothing is released, the global model stays, the report says why.
The ServerApp sees the global model, ciphertexts, SecAgg+ messages, public weights and counts,
and the noised sum; never a member update, a basket model or the un-noised sum.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.supercore import log

from .. import _checks
from ..deploy import GlobalAggregator
from ..secagg import IdentityRegistry, SecAggError, Server
from ._layout import ArrayLayout
from ._private_wire import BASKET_ACTION, ROLE_ACTION, SEALED, SECAGG
from .flower_grid import send_and_receive
from .private_provision import ServerFiles

__all__ = ["PrivateRounds", "RoundReport"]

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass
class RoundReport:
    """What one private round did (public facts only).

    Attributes
    ----------
    server_round
        The round (1-based).
    released
        Whether a noised update was released and applied.
    survivors
        The basket ids whose inputs are in the released sum.
    dropped
        Basket id -> at which stage and why it was left out.
    relayed
        Sealed member updates relayed to each basket.
    rejected
        Basket id -> the updates its aggregator refused and why (as it reported them).
    error
        Why the round aborted (``None`` when it released).
    stats
        The global aggregator's stats of the release (epsilon spent so far, ...) and the
        round's wall time, ``seconds``.
    """

    server_round: int
    released: bool = False
    survivors: tuple[str, ...] = ()
    dropped: dict[str, str] = field(default_factory=dict)
    relayed: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class PrivateRounds:
    """The ServerApp side of private rounds (see the module docstring).

    Parameters
    ----------
    files
        The server's provisioned files (:func:`~.private_provision.load_server`).
    timeout
        Seconds each stage waits for replies; a node that has not answered by then is dropped.
    server_learning_rate
        The global model moves by this times the released update.
    delta
        The delta the privacy spent is reported at.
    """

    def __init__(
        self,
        files: ServerFiles,
        *,
        timeout: float = 120.0,
        server_learning_rate: float = 1.0,
        delta: float = 1e-5,
    ) -> None:
        if not isinstance(files, ServerFiles):
            raise TypeError(f"files must be ServerFiles, got {type(files).__name__}")
        self.files = files
        self.timeout = _checks.positive(timeout, "timeout")
        self.lr = _checks.positive(server_learning_rate, "server_learning_rate")
        self.registry = IdentityRegistry.from_signed(files.registry, files.operator)
        self.aggregator = GlobalAggregator(files.ddg, delta=delta)
        self.members: dict[int, str] = {}
        """Member node id -> the basket it reports."""
        self.baskets: dict[str, int] = {}
        """Basket id -> its aggregator's node id."""

    # ------------------------------------------------------------------------------ nodes

    def discover(self, grid: Grid, min_nodes: int, wait: float = 300.0) -> None:
        """Wait for ``min_nodes`` nodes, then ask each its role (``query.hierfed_role``).

        Raises RuntimeError when fewer connect within ``wait`` seconds, or when a basket of
        the provisioned registry has no aggregator node.
        """
        deadline = time.monotonic() + _checks.positive(wait, "wait")
        while len(ids := list(grid.get_node_ids())) < min_nodes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ids)} of {min_nodes} nodes connected in {wait} s")
            time.sleep(1.0)
        asks = [
            Message(RecordDict(), dst_node_id=n, message_type=f"{MessageType.QUERY}.{ROLE_ACTION}")
            for n in ids
        ]
        for reply in send_and_receive(grid, asks, self.timeout):
            node = reply.metadata.src_node_id
            cfg = None if reply.has_error() else reply.content.config_records.get("role")
            role = None if cfg is None else cfg.get("role")
            basket = None if cfg is None else cfg.get("basket")
            if role == "member" and isinstance(basket, str):
                self.members[node] = basket
            elif role == "basket" and isinstance(basket, str) and basket not in self.baskets:
                self.baskets[basket] = node
            else:
                log(logging.WARNING, "hierfed: node %s has no usable role; ignored", node)
        missing = set(self.files.baskets.values()) - self.baskets.keys()
        if missing:
            raise RuntimeError(f"no aggregator node for baskets {sorted(missing)}")
        log(
            logging.INFO,
            "hierfed: %d members, %d basket aggregators",
            len(self.members),
            len(self.baskets),
        )

    # ------------------------------------------------------------------------------ rounds

    def run(
        self,
        grid: Grid,
        arrays: Mapping[str, np.ndarray[Any, Any]],
        num_rounds: int,
        evaluate: Callable[[int, Arrays], Mapping[str, Any]] | None = None,
    ) -> tuple[Arrays, list[RoundReport]]:
        """``num_rounds`` rounds from ``arrays``; the final model and each round's report
        (``evaluate(round, model)``'s metrics go into the report's stats)."""
        model = {k: np.asarray(v) for k, v in arrays.items()}
        reports = []
        for r in range(1, _checks.count(num_rounds, "num_rounds", minimum=1) + 1):
            new, report = self.round(grid, r, model)
            model = model if new is None else new
            if evaluate is not None:
                report.stats.update(evaluate(r, model))
            log(logging.INFO, "hierfed: round %d: %s", r, _summary(report))
            reports.append(report)
        return model, reports

    def round(
        self, grid: Grid, server_round: int, arrays: Mapping[str, np.ndarray[Any, Any]]
    ) -> tuple[Arrays | None, RoundReport]:
        """One round; the new global model (``None`` when the round aborted) and its report."""
        if not self.baskets:
            raise RuntimeError("call discover before round")
        report = RoundReport(server_round)
        started = time.monotonic()
        plan = self.files.plan(server_round)
        server = Server(self.registry, plan)
        relay = _Relay(self, grid, server, server_round, report)
        layout = ArrayLayout.of(arrays)
        base = layout.flatten(arrays, "the global model")
        session = server.plan.session
        to_members = [self._train_message(n, arrays, session, server_round) for n in self.members]
        plans = dict.fromkeys(range(server.n), b"")
        replies = send_and_receive(
            grid, to_members + relay.messages("advertise", plans, {"plan": plan}), self.timeout
        )
        sealed = self._sealed(replies, report)
        relay.take("advertise", replies, server.receive_advertise, plans)
        try:
            relay.exchange("share_keys", server.rosters(), server.receive_share_keys)
            seed = self.aggregator.rotation_seed()
            inputs = relay.exchange(
                "masked_input",
                server.route_shares(),
                server.receive_masked_input,
                {} if seed is None else {"rotation-seed": seed},
                sealed,
            )
            relay.exchange("consistency", server.survivors(), server.receive_consistency_tags)
            relay.exchange("unmask", server.consistency_proofs(), server.receive_unmask_response)
            report.rejected = {
                relay.basket_of(i): [str(x) for x in cfg.get("rejected", [])]  # type: ignore[union-attr]
                for i, cfg in inputs.items()
            }
            total, survivors = server.finalize()
            weights = [relay.weight(inputs[i]) for i in survivors]
            update = self.aggregator.release(
                total, survivors=len(survivors), weight_sum=sum(weights), rotation_seed=seed
            )
        except (SecAggError, ValueError) as exc:
            report.stats["seconds"] = time.monotonic() - started
            report.error = str(exc)
            log(logging.ERROR, "hierfed: round %d aborted, nothing released: %s", server_round, exc)
            return None, report
        report.survivors = tuple(relay.basket_of(i) for i in survivors)
        report.stats.update(self.aggregator.last_stats)
        report.stats["seconds"] = time.monotonic() - started
        report.released = True
        if update is None:
            return dict(arrays), report
        new = base + self.lr * update.astype(base.dtype)
        return layout.restore(new, arrays), report

    def _train_message(
        self, node: int, arrays: Mapping[str, np.ndarray[Any, Any]], session: bytes, r: int
    ) -> Message:
        content = RecordDict(
            {
                "arrays": ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()}),
                SECAGG: ConfigRecord({"session": session, "round": r}),
            }
        )
        return Message(content, dst_node_id=node, message_type=MessageType.TRAIN, group_id=str(r))

    def _sealed(self, replies: Iterable[Message], report: RoundReport) -> dict[str, ConfigRecord]:
        """Basket id -> the record relayed to it: each member's ciphertext and signature."""
        out: dict[str, dict[str, bytes]] = {b: {} for b in self.baskets}
        for reply in replies:
            node = reply.metadata.src_node_id
            if node not in self.members or reply.has_error():
                continue
            cfg = reply.content.config_records.get(SEALED)
            if cfg is None:
                continue
            member, basket = cfg.get("member-id"), cfg.get("basket")
            blob, signature = cfg.get("blob"), cfg.get("signature")
            if not (
                isinstance(member, str)
                and member
                and not member.endswith(":sig")
                and isinstance(basket, str)
                and basket in out
                and isinstance(blob, bytes)
                and isinstance(signature, bytes)
                and member not in out[basket]
            ):
                log(logging.WARNING, "hierfed: unusable or repeated reply of node %s", node)
                continue
            out[basket][member] = blob
            out[basket][f"{member}:sig"] = signature
        report.relayed = {b: len(v) // 2 for b, v in out.items()}
        return {b: ConfigRecord(dict(v)) for b, v in out.items()}


class _Relay:
    """One round's SecAgg+ stages between a :class:`~hierfed.secagg.Server` and the basket
    aggregator nodes, by protocol index."""

    def __init__(
        self, owner: PrivateRounds, grid: Grid, server: Server, r: int, report: RoundReport
    ) -> None:
        self.grid, self.server, self.round, self.report = grid, server, r, report
        self.timeout = owner.timeout
        names = owner.files.baskets
        self.names = [names[cid] for cid in server.plan.participants]
        self.nodes = {i: owner.baskets[b] for i, b in enumerate(self.names) if b in owner.baskets}
        self.index = {node: i for i, node in self.nodes.items()}

    def basket_of(self, i: int) -> str:
        return self.names[i]

    def weight(self, cfg: ConfigRecord) -> float:
        w = cfg.get("weight")
        return float(w)  # type: ignore[arg-type]

    def messages(
        self,
        stage: str,
        payloads: Mapping[int, bytes],
        extra: Mapping[str, Any] | None = None,
        records: Mapping[str, ConfigRecord] | None = None,
    ) -> list[Message]:
        """The stage's messages to the nodes of the indices in ``payloads``."""
        out = []
        for i, data in payloads.items():
            if i not in self.nodes:
                continue
            cfg = ConfigRecord(
                {"stage": stage, "round": self.round, "payload": data, **(extra or {})}
            )
            content = RecordDict({SECAGG: cfg})
            if records is not None:
                content[SEALED] = records[self.names[i]]
            out.append(
                Message(
                    content,
                    dst_node_id=self.nodes[i],
                    message_type=f"{MessageType.TRAIN}.{BASKET_ACTION}",
                    group_id=str(self.round),
                )
            )
        return out

    def take(
        self,
        stage: str,
        replies: Iterable[Message],
        receive: Callable[[bytes], None],
        expected: Iterable[int],
    ) -> dict[int, ConfigRecord]:
        """Feed the stage's replies to the server; the accepted ones by index. A node of
        ``expected`` that did not answer, answered with an error or a refusal, or whose
        message the server refuses is dropped (noted in the report)."""
        accepted: dict[int, ConfigRecord] = {}
        for reply in replies:
            i = self.index.get(reply.metadata.src_node_id)
            if i is None:
                continue
            why = self._accept(stage, reply, receive)
            if why is None:
                accepted[i] = reply.content.config_records[SECAGG]
            else:
                self.report.dropped.setdefault(self.names[i], f"{stage}: {why}")
        for i in expected:
            if i not in accepted:
                self.report.dropped.setdefault(self.names[i], f"{stage}: no reply in time")
        return accepted

    def _accept(self, stage: str, reply: Message, receive: Callable[[bytes], None]) -> str | None:
        if reply.has_error():
            return f"error reply ({reply.error.reason})"
        cfg = reply.content.config_records.get(SECAGG)
        if cfg is None or cfg.get("stage") != stage:
            return "reply to another stage"
        if "refused" in cfg:
            return f"refused ({cfg['refused']!s})"
        payload = cfg.get("payload")
        if not isinstance(payload, bytes):
            return "no payload"
        if stage == "masked_input":
            w = cfg.get("weight")
            if not isinstance(w, float) or not 0.0 <= w <= 1.0:
                return f"weight {w!r} is not in [0, 1]"
        try:
            receive(payload)
        except ValueError as exc:
            return f"refused by the server ({exc})"
        return None

    def exchange(
        self,
        stage: str,
        payloads: Mapping[int, bytes],
        receive: Callable[[bytes], None],
        extra: Mapping[str, Any] | None = None,
        records: Mapping[str, ConfigRecord] | None = None,
    ) -> dict[int, ConfigRecord]:
        """Send one stage, wait up to ``timeout``, feed the replies; the accepted ones."""
        sent = self.messages(stage, payloads, extra, records)
        replies = send_and_receive(self.grid, sent, self.timeout)
        return self.take(stage, replies, receive, payloads)


def _summary(report: RoundReport) -> str:
    if not report.released:
        return f"aborted ({report.error}); dropped {report.dropped}"
    return (
        f"released over baskets {list(report.survivors)} (relayed {report.relayed}); "
        f"dropped {report.dropped}; epsilon {report.stats.get('privacy_spent')}"
    )
