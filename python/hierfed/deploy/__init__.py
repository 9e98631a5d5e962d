"""hierfed deployed as separate parties: members, basket aggregators, a global aggregator.

The seed design is a trust hierarchy; this package gives each role its own object, so that
each runs where it is trusted (Flower's runtime carries the messages between them: see the
Flower integration, :mod:`hierfed.integrations`).

==================  ==========================================  ===============================
party               may see                                     never sees
==================  ==========================================  ===============================
member              its own data and update; the global model   other members' updates
basket aggregator   its members' updates (it runs Layer 1 for   other baskets' models; the
                    them, as the seed design's basket does);    sum before noise
                    its own basket model; the global model
global aggregator   ciphertexts (their sizes, who sent them);   any member update, any basket
                    the public weights and counts; SecAgg+      model, the un-noised sum
                    messages; the noised sum; the global model
==================  ==========================================  ===============================

- :func:`seal_update` / :func:`open_update` (:mod:`.envelope`): a member's update encrypted to
  its basket aggregator's key (HPKE), bound to the session, round, member and basket.
- :class:`BasketNode` (:mod:`.basket_node`): opens and validates its members' updates, runs
  Layer 1, clips, weights and encodes its model with its share of discrete Gaussian noise into
  SecAgg+ words (:class:`hierfed.privacy.DistributedDiscreteGaussian`).
- :class:`GlobalAggregator` (:mod:`.global_node`): decodes the unmasked sum (refusing one of
  fewer survivors than the noise was sized for) and accounts each release.
- :func:`run_round` (:mod:`.local`): one round with every party in this process, the
  reference a deployment is compared with.

Assumptions: a basket aggregator is honest for its own members (it sees their updates) and
follows the protocol (a malicious one can skew its basket's model within the clip norm, or
omit its noise share: ``colluders`` counts the baskets that may collude with the server);
SecAgg+'s own threat model (:mod:`hierfed.secagg.protocol`) covers the global aggregator
acting maliciously in the protocol. Keys are provisioned out of band: members pin their basket
aggregator's public key, basket aggregators the operator's key and plans.
"""

from __future__ import annotations

from .basket_node import BasketNode, PreparedInput
from .envelope import SealContext, open_update, seal_update
from .global_node import GlobalAggregator
from .local import LocalRound, run_round

__all__ = [
    "BasketNode",
    "GlobalAggregator",
    "LocalRound",
    "PreparedInput",
    "SealContext",
    "open_update",
    "run_round",
    "seal_update",
]
