"""Secure aggregation: SecAgg+ with dropout recovery, secure against a malicious server.

``secure_sum`` runs a whole round in process (every role in one process: a simulation).
For real deployments, :class:`Client` and :class:`Server` are the state machines, exchanging
the bytes of :mod:`.messages`; clients hold :class:`Identity` keys enrolled in an operator's
:class:`IdentityRegistry` and take part only in operator-signed :class:`SessionPlan` s that
meet their :class:`SecurityPolicy`. The rounds and the threat model (who may see what, what is
out of scope, what provisioning must guarantee) are in :mod:`hierfed.secagg.protocol`.
"""

from __future__ import annotations

from .aggregator import SecAggConfig, SecAggResult, SecureAggregator, secure_sum
from .client import Client
from .errors import SecAggError
from .graph import GraphParameters, choose_parameters
from .identity import Identity, IdentityRegistry
from .server import Server
from .session import SecurityPolicy, SessionPlan, check_plan, plan_session

__all__ = [
    "Client",
    "GraphParameters",
    "Identity",
    "IdentityRegistry",
    "SecAggConfig",
    "SecAggError",
    "SecAggResult",
    "SecureAggregator",
    "SecurityPolicy",
    "Server",
    "SessionPlan",
    "check_plan",
    "choose_parameters",
    "plan_session",
    "secure_sum",
]
