"""A :class:`~hierfed.HierarchicalFederation` driven in synchronous rounds by named arrays.

Runtimes such as Flower send one global model per round and collect each node's trained
model. :class:`FederationRounds` turns that into the federation's terms without knowing the
runtime: every round it flattens the global model and each reply to one vector
(:class:`~hierfed.integrations.ArrayLayout`), registers each client in a basket of the domain
it reports, submits ``reply - global`` as the client's update (staleness 0), runs both
layers once and restores the new global model in the replies' names, shapes and dtypes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..federation import FederationConfig, HierarchicalFederation
from ..privacy import NoiseGenerator
from ._layout import ArrayLayout

__all__ = ["FederationRounds", "HierarchyMixin", "RoundResult"]

log = logging.getLogger("hierfed.integrations")

Arrays = Mapping[str, np.ndarray[Any, Any]]
Metrics = dict[str, int | float]


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """What one round produced.

    Attributes
    ----------
    arrays
        The new global model (named arrays, the global model's order), or ``None`` when the
        round produced none (too few usable updates or baskets): the previous one stands.
    metrics
        The round's numbers (see :meth:`FederationRounds.finish_round`).
    """

    arrays: dict[str, np.ndarray[Any, Any]] | None
    metrics: Metrics


class FederationRounds:
    """Synchronous rounds over a :class:`~hierfed.HierarchicalFederation`.

    Parameters
    ----------
    config
        The federation's settings; ``auto_aggregate`` is turned off (each round aggregates
        once, in :meth:`finish_round`).
    generator, seed
        Passed to the :class:`~hierfed.HierarchicalFederation` (its noise source and its
        basket manager's split seed).

    Attributes
    ----------
    federation
        The :class:`~hierfed.HierarchicalFederation`, created at the first round.
    layout
        The global model's :class:`~hierfed.integrations.ArrayLayout`.
    """

    def __init__(
        self,
        config: FederationConfig | None = None,
        *,
        generator: NoiseGenerator | None = None,
        seed: int | None = None,
    ) -> None:
        base = FederationConfig() if config is None else config
        if not isinstance(base, FederationConfig):
            raise TypeError(f"config must be a FederationConfig, got {type(config).__name__}")
        self.config = dataclasses.replace(base, auto_aggregate=False)
        self._generator = generator
        self._seed = seed
        self.federation: HierarchicalFederation | None = None
        self.layout: ArrayLayout | None = None
        self._global: dict[str, np.ndarray[Any, Any]] = {}
        self._base: np.ndarray[Any, Any] | None = None
        self._rejected: dict[str, int] = {}
        self._accepted = 0

    def start_round(self, arrays: Arrays) -> None:
        """Take ``arrays`` (the global model sent to the clients) as this round's base."""
        if self.layout is None:
            self.layout = ArrayLayout.of(arrays)
        self._global = {name: np.asarray(a) for name, a in arrays.items()}
        self._base = self.layout.flatten(self._global, "the global model")
        if self.federation is None:
            self.federation = HierarchicalFederation(
                self.config, initial_model=self._base, generator=self._generator, seed=self._seed
            )
        else:
            self.federation.model = self._base.copy()
        self._rejected, self._accepted = {}, 0

    def _reject(self, client_id: str, reason: str, detail: str) -> str:
        self._rejected[reason] = self._rejected.get(reason, 0) + 1
        log.warning("hierfed: update of %s rejected (%s): %s", client_id, reason, detail)
        return reason

    def submit(self, client_id: str, domain: str | None, arrays: Arrays) -> str | None:
        """Submit a client's trained model; ``None`` when accepted, else the reason it was not.

        Parameters
        ----------
        client_id
            The client (a Flower node id as a string).
        domain
            The domain it reports; ``None`` rejects the update (reason ``"domain"``). A client
            that reports another domain than before is moved to a basket of the new one.
        arrays
            Its model: the global model's names, shapes and dtypes.
        """
        fed, layout, base = self.federation, self.layout, self._base
        if fed is None or layout is None or base is None:
            raise RuntimeError("call start_round before submit")
        if not domain:
            return self._reject(client_id, "domain", "no domain reported")
        try:
            flat = layout.flatten(arrays, f"the model of {client_id}")
        except (ValueError, TypeError) as exc:
            return self._reject(client_id, "layout", str(exc))
        known = fed.manager.get_client(client_id)
        if known is not None and known.domain_id != domain:
            fed.remove_client(client_id)
            known = None
        if known is None:
            fed.register_client(client_id, domain)
        try:
            fed.submit_update(client_id, flat - base, base_version=fed.version)
        except (ValueError, TypeError) as exc:
            return self._reject(client_id, "update", str(exc))
        self._accepted += 1
        return None

    def finish_round(self) -> RoundResult:
        """Aggregate the round: Layer 1 per basket, Layer 2 across baskets, once.

        The round produces no model when fewer than ``layer2.min_baskets`` baskets hold the
        updates their rule needs; updates that could not be used are discarded (the clients
        submit afresh next round).

        Metrics (numbers only): ``accepted``, ``rejected`` and ``rejected-<reason>`` this round;
        ``baskets``, ``clients`` (contributing this round), ``outliers-removed``,
        ``baskets-clipped``, ``secure-agg`` (0/1: 0 in process, where the server holds the
        basket models), ``secure-agg-simulated`` (0/1), ``noise-sigma`` of Layer 2;
        ``discarded``; the federation's ``version`` and the central ``epsilon``, ``delta``
        spent over all rounds so far (its unit: one basket), ``client-epsilon`` the largest
        Layer 1 epsilon of a client (its unit: a client under ``Layer1Config.dp_fedavg``, else
        one client update); with DP-FedAvg the next ``clip-norm`` of Layer 2 and the mean
        ``client-clip-norm`` of the baskets (``baskets-clipped`` is then 0: that count is
        released only noised).
        """
        fed, layout = self.federation, self.layout
        if fed is None or layout is None:
            raise RuntimeError("call start_round before finish_round")
        metrics: Metrics = {"accepted": self._accepted, "rejected": sum(self._rejected.values())}
        metrics.update({f"rejected-{k}": v for k, v in sorted(self._rejected.items())})
        for p in fed.buffer.all():  # file updates under their clients' baskets after splits
            basket = fed.manager.get_client_basket(p.client_id)
            if basket is not None and basket != p.basket_id:
                fed.buffer.move(p.client_id, basket)
        need = max(1, self.config.layer1.min_inputs())
        ready = [b for b in fed.buffer.baskets() if fed.buffer.count(b) >= need]
        outliers = 0
        result = None
        if len(ready) >= self.config.layer2.min_baskets:
            for b in ready:
                if fed.aggregate_basket(b) is not None:
                    outliers += int(fed.layer1.last_stats.get("outliers_removed", 0))
            result = fed.aggregate_global(force=True)
        metrics["discarded"] = fed.discard_buffered()
        eps, delta = fed.privacy_spent()
        metrics.update(version=fed.version, epsilon=float(eps), delta=float(delta))
        metrics["client-epsilon"] = float(fed.max_client_privacy_spent()[0])
        if fed.layer2.dp_fedavg is not None:
            metrics["clip-norm"] = fed.layer2.dp_fedavg.clip_norm
        clips = fed.layer1.clip_norms
        if clips:
            metrics["client-clip-norm"] = float(np.mean(list(clips.values())))
        if result is None:
            metrics.update(baskets=0, clients=0)
            log.warning(
                "hierfed: no global model this round (%d of %d baskets ready)",
                len(ready),
                self.config.layer2.min_baskets,
            )
            return RoundResult(None, metrics)
        last = fed.layer2.last_stats
        metrics.update(
            baskets=result.n_baskets,
            clients=result.n_clients_total,
            **{"outliers-removed": outliers},
            **{"baskets-clipped": int(last.get("baskets_clipped") or 0)},
            **{"secure-agg": int(bool(last.get("secure_agg_used", False)))},
            **{"secure-agg-simulated": int(bool(last.get("secure_agg_simulated", False)))},
            **{"noise-sigma": float(last.get("noise_sigma", 0.0))},
        )
        assert fed.model is not None
        return RoundResult(layout.restore(fed.model, self._global), metrics)


class HierarchyMixin:
    """What both Flower strategies add to their ``FedAvg`` (their first base, before it): the
    hierarchy's settings (see :class:`~hierfed.integrations.flower.HierarchicalStrategy`),
    the rounds and the federation; ``**fedavg`` goes to ``FedAvg``."""

    def __init__(
        self,
        config: FederationConfig | None = None,
        *,
        domain_key: str = "domain",
        default_domain: str | None = None,
        generator: NoiseGenerator | None = None,
        seed: int | None = None,
        **fedavg: Any,
    ) -> None:
        super().__init__(**fedavg)
        self.domain_key = domain_key
        self.default_domain = default_domain
        self.rounds = FederationRounds(config, generator=generator, seed=seed)

    @property
    def federation(self) -> HierarchicalFederation | None:
        """The federation (created at the first round)."""
        return self.rounds.federation
