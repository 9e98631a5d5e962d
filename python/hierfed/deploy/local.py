"""One deployed round with every party in this process: the reference for a real deployment.

:func:`run_round` does what the deployment does, message for message in kind: the members'
sealed updates go to their :class:`~hierfed.deploy.BasketNode`, each node prepares its
noised words, SecAgg+ sums them (:func:`hierfed.secagg.secure_sum`, every protocol message
serialised and parsed), and the :class:`~hierfed.deploy.GlobalAggregator` releases the
update. It protects nothing (one process holds every key); it is what a deployment's result is
compared with, and what the cost of the private path is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..secagg import SecAggConfig, secure_sum
from .basket_node import BasketNode, PreparedInput
from .global_node import GlobalAggregator

__all__ = ["LocalRound", "run_round"]


@dataclass(frozen=True)
class LocalRound:
    """The outcome of :func:`run_round`: the global update (``None`` if every survivor was
    empty), each node's prepared input, and which baskets survived SecAgg+."""

    update: NDArray[np.float64] | None
    prepared: dict[str, PreparedInput]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...] = field(default=())


def run_round(
    nodes: Sequence[BasketNode],
    sealed: Mapping[str, Mapping[str, bytes]],
    aggregator: GlobalAggregator,
    *,
    session: bytes,
    round_id: int,
    dropouts: Mapping[str, str] | None = None,
    config: SecAggConfig | None = None,
) -> LocalRound:
    """Run one round: ``sealed`` maps basket id -> member id -> sealed update; ``dropouts``
    basket id -> the SecAgg+ stage its node vanishes in (as :func:`~hierfed.secagg.secure_sum`)."""
    seed = aggregator.rotation_seed()
    prepared = {
        node.basket_id: node.prepare(
            sealed.get(node.basket_id, {}), session=session, round_id=round_id, rotation_seed=seed
        )
        for node in nodes
    }
    words: dict[Any, NDArray[Any]] = {b: p.encoded for b, p in prepared.items()}
    drops: dict[Any, str] = dict(dropouts or {})
    result = secure_sum(words, config=config, dropouts=drops)
    survivors = tuple(str(b) for b in result.survivors)
    weight = sum(prepared[b].weight for b in survivors)
    update = aggregator.release(
        result.total, survivors=len(survivors), weight_sum=weight, rotation_seed=seed
    )
    dropped = tuple(str(b) for b in result.dropped)
    return LocalRound(update, prepared, survivors, dropped)
