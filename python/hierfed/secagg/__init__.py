"""Secure aggregation: SecAgg+ with dropout recovery, hardened (see DESIGN.md).

``secure_sum`` runs a whole round in process; :class:`protocol.Client` and
:class:`protocol.Server` are the state machines for real deployments, exchanging the bytes of
:mod:`.messages`.
"""

from __future__ import annotations

from .aggregator import SecAggConfig, SecAggResult, SecureAggregator, secure_sum
from .graph import GraphParameters, choose_parameters
from .protocol import Client, SecAggError, Server

__all__ = [
    "Client",
    "GraphParameters",
    "SecAggConfig",
    "SecAggError",
    "SecAggResult",
    "SecureAggregator",
    "Server",
    "choose_parameters",
    "secure_sum",
]
