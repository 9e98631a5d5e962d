"""The same hierarchy for Flower's legacy strategy API (``flwr.server.strategy``).

:class:`LegacyHierarchicalStrategy` is Flower's legacy ``FedAvg`` (client sampling, federated
evaluation, ``start_server``/``ServerApp(strategy=...)``) whose ``aggregate_fit`` runs
hierfed's baskets and two layers, as :class:`~hierfed.integrations.flower.HierarchicalStrategy`
does for the Message API. A client reports its domain as ``metrics["domain"]`` of its
``FitRes`` (a string or a number); the model's NDArrays are named ``"0"``, ``"1"``, ... in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg

from ._rounds import HierarchyMixin
from .flower import PREFIX

__all__ = ["LegacyHierarchicalStrategy"]


def _named(ndarrays: list[np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    return {str(i): a for i, a in enumerate(ndarrays)}


class LegacyHierarchicalStrategy(HierarchyMixin, FedAvg):
    """Flower's legacy ``FedAvg`` with hierfed's hierarchy in ``aggregate_fit``.

    Parameters
    ----------
    config, domain_key, default_domain, generator, seed
        As :class:`~hierfed.integrations.flower.HierarchicalStrategy`.
    **fedavg
        Flower's legacy ``FedAvg`` parameters (``fraction_fit``, ``min_fit_clients``,
        ``initial_parameters``, ``evaluate_fn``, ...); ``fit_metrics_aggregation_fn``
        aggregates the clients' own fit metrics.
    """

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, Any]]:
        """Record ``parameters`` as this round's global model, then sample as FedAvg."""
        self.rounds.start_round(_named(parameters_to_ndarrays(parameters)))
        instructions: list[tuple[ClientProxy, Any]] = super().configure_fit(
            server_round, parameters, client_manager
        )
        return instructions

    def _domain(self, res: FitRes) -> str | None:
        value = res.metrics.get(self.domain_key) if res.metrics else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return self.default_domain if value is None else str(value)

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Layer 1 per basket, Layer 2 across baskets; hierfed's metrics under ``hierfed.``."""
        if failures and not self.accept_failures:
            return None, {}
        for proxy, res in results:
            arrays = _named(parameters_to_ndarrays(res.parameters))
            self.rounds.submit(str(proxy.cid), self._domain(res), arrays)
        result = self.rounds.finish_round()
        metrics: dict[str, Scalar] = {}
        if self.fit_metrics_aggregation_fn is not None and results:
            own = [
                (res.num_examples, {k: v for k, v in res.metrics.items() if k != self.domain_key})
                for _, res in results
            ]
            metrics.update(self.fit_metrics_aggregation_fn(own))
        metrics.update({PREFIX + k: v for k, v in result.metrics.items()})
        if result.arrays is None:
            return None, metrics
        return ndarrays_to_parameters(list(result.arrays.values())), metrics
