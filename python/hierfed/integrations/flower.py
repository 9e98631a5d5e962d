"""A Flower strategy running hierfed's baskets and two layers (extra ``flower``).

:class:`HierarchicalStrategy` plugs into Flower's Message API (``flwr.serverapp``): it
samples nodes and runs federated evaluation as Flower's ``FedAvg`` does, and replaces the
aggregation of training replies with a :class:`~hierfed.HierarchicalFederation`:

- each node is placed in a basket of the ``domain`` it reports -- a ``"domain"`` entry in a
  ConfigRecord of its reply (a string, e.g. from its ``--node-config``), or in its MetricRecord
  (a number), or ``default_domain``; a node that reports none is rejected and counted;
- its reply's ArrayRecord, flattened to one vector, minus the global model it was sent, is its
  update; each basket is aggregated by Layer 1 with the configured rule
  (any :class:`~hierfed.AggregationMethod`), the basket models by Layer 2 (clipping, weights,
  SecAgg+ simulated in process, central DP with its accountant), and the global model moves by
  ``server_learning_rate`` times the result;
- the MetricRecord it returns holds the clients' train metrics (Flower's weighted average)
  and hierfed's round numbers under ``hierfed.`` (``hierfed.epsilon`` and ``hierfed.delta``
  spent so far, ``hierfed.baskets``, ``hierfed.clients``, ``hierfed.rejected``, ...: see
  :meth:`hierfed.integrations._rounds.FederationRounds.finish_round`).

The ``num-examples`` a node reports weights its train metrics, not its update: a robust rule
must not let one node claim a large weight. A round whose baskets cannot be aggregated (too
few updates for the rule, fewer than ``layer2.min_baskets`` baskets) leaves the global model
as it was. ``strategy.federation`` is the federation itself (stats, checkpoints).

Trust: nodes send their updates in the clear to the ServerApp, which computes every basket
model and the sum itself. SecAgg+ here is a simulation over models the server already holds
(``hierfed.secure-agg`` is 0, ``hierfed.secure-agg-simulated`` 1) and central DP trusts the
server with the exact sum. Where the server must see neither, run the roles as separate
parties (:mod:`hierfed.deploy`: members seal their updates to their basket aggregator, which
adds its share of distributed noise before SecAgg+).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from ..aggregator import AggregationMethod
from ._rounds import HierarchyMixin

__all__ = ["HierarchicalStrategy", "domain_of"]

PREFIX = "hierfed."


def domain_of(content: RecordDict, key: str = "domain") -> str | None:
    """The domain a reply reports: ``key`` in a ConfigRecord (as text) or a MetricRecord (a
    number, as its decimal text: ``1.0`` gives ``"1"``); ``None`` if neither holds it."""
    for config in content.config_records.values():
        if key in config:
            return str(config[key])
    for metrics in content.metric_records.values():
        if key in metrics:
            value = metrics[key]
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return str(value)
    return None


def _named_arrays(content: RecordDict, key: str) -> dict[str, np.ndarray[Any, Any]]:
    """The reply's model: ArrayRecord ``key`` (or its only ArrayRecord), as numpy arrays."""
    records = content.array_records
    record = records.get(key)
    if record is None and len(records) == 1:
        record = next(iter(records.values()))
    if record is None:
        return {}
    return {name: array.numpy() for name, array in record.items()}


class HierarchicalStrategy(HierarchyMixin, FedAvg):
    """Flower strategy: nodes in domain baskets, robust Layer 1, secure and private Layer 2.

    Parameters
    ----------
    config
        The federation's settings (:class:`~hierfed.FederationConfig`): baskets, the Layer 1
        rule and its parameters, Layer 2 clipping, weighting, SecAgg+ and central DP.
    domain_key
        The reply entry naming the node's domain.
    default_domain
        The domain of nodes that report none; ``None`` rejects their updates.
    generator
        Noise source of both layers (default: secure, keyed from the OS).
    seed
        Seed of the basket manager's random splits.
    **fedavg
        Flower's ``FedAvg`` parameters (``fraction_train``, ``fraction_evaluate``,
        ``min_train_nodes``, ``min_evaluate_nodes``, ``min_available_nodes``,
        ``weighted_by_key``, ``arrayrecord_key``, ``configrecord_key``,
        ``train_metrics_aggr_fn``, ``evaluate_metrics_aggr_fn``), with its defaults.
    """

    def summary(self) -> None:
        """Log the hierarchy's settings, then FedAvg's sampling settings."""
        cfg = self.rounds.config
        log(
            logging.INFO,
            "hierfed: domain baskets by %r; Layer 1 %s %s; Layer 2 clip %.3g, %s weights, "
            "secure aggregation %s, central DP %s",
            self.domain_key,
            AggregationMethod(cfg.layer1.aggregation_method).value,
            dict(cfg.layer1.method_params),
            cfg.layer2.clip_norm,
            cfg.layer2.scheme.value,
            "on" if cfg.layer2.use_secure_aggregation else "off",
            "on" if cfg.layer2.central_dp else "off",
        )
        super().summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Record ``arrays`` as this round's global model, then sample nodes as FedAvg."""
        self.rounds.start_round({name: array.numpy() for name, array in arrays.items()})
        messages: Iterable[Message] = super().configure_train(server_round, arrays, config, grid)
        return messages

    def _client_metrics(self, contents: list[RecordDict]) -> MetricRecord:
        """Flower's weighted train metrics of the accepted replies (when they allow it)."""
        usable = contents and all(
            len(c.metric_records) == 1
            and isinstance(
                next(iter(c.metric_records.values())).get(self.weighted_by_key), (int, float)
            )
            for c in contents
        )
        if not usable:
            return MetricRecord()
        try:
            metrics: MetricRecord = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        except (KeyError, TypeError, ValueError) as exc:  # replies with different metrics
            log(logging.WARNING, "hierfed: client train metrics not aggregated: %s", exc)
            return MetricRecord()
        if self.domain_key in metrics:
            del metrics[self.domain_key]
        return metrics

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Run Layer 1 per basket and Layer 2 across baskets over the replies' updates."""
        valid, _ = self._check_and_log_replies(replies, is_train=True, validate=False)
        accepted = []
        for msg in valid:
            client_id = str(msg.metadata.src_node_id)
            domain = domain_of(msg.content, self.domain_key) or self.default_domain
            try:
                arrays = _named_arrays(msg.content, self.arrayrecord_key)
            except (TypeError, ValueError) as exc:
                log(
                    logging.WARNING,
                    "hierfed: reply of %s has unreadable arrays: %s",
                    client_id,
                    exc,
                )
                arrays = {}
            if self.rounds.submit(client_id, domain, arrays) is None:
                accepted.append(msg.content)
        result = self.rounds.finish_round()
        metrics = self._client_metrics(accepted)
        for key, value in result.metrics.items():
            metrics[PREFIX + key] = value
        if result.arrays is None:
            return None, metrics
        record = ArrayRecord({name: Array(a) for name, a in result.arrays.items()})
        return record, metrics
