"""SecAgg+ against a malicious server: the rounds, the threat model, and the state machines.

Rounds (Bonawitz et al. 2017 with its malicious-server additions; Bell et al. 2020's sparse
graphs), client ``u`` with neighbours ``N(u)`` in the graph of the signed session plan:

0. setup, out of band: every client holds an Ed25519 identity key; the operator enrols it in
   an :class:`~.identity.IdentityRegistry` and signs each round's
   :class:`~.session.SessionPlan` (session id, participants, ``k``, ``t``, vector length). A
   client takes part only in a plan signed by the operator that meets its own
   :class:`~.session.SecurityPolicy`, and computes its neighbours itself.
1. advertise: ``u`` sends two fresh X25519 public keys signed with its identity key over the
   plan's digest; the server sends each client its neighbours' signed keys, and the client
   drops any neighbour whose signature fails.
2. share keys: ``u`` Shamir-shares (threshold ``t``) its masking secret key and a 32-byte
   self-mask seed among its verified neighbours and itself, encrypts each share with AES-GCM
   under a key derived from their X25519 secret (bound to the plan, sender and receiver), and
   commits to the seed.
3. masked input: ``u`` adds its self mask and ``+-`` the pair mask of every neighbour whose
   share it accepted, and names those neighbours; a share that fails authentication leaves
   its sender out (no share held, no pair mask).
4. consistency: the server names the survivor set ``S`` (the same to all, else the tags
   below fail); ``u`` checks that ``S`` holds it and at least ``t - 1`` of its neighbours and keeps
   the graph connected, then sends each live neighbour an HMAC of ``S`` under their pair key.
5. unmask: ``u`` reveals anything only after ``t - 1`` neighbours' tags of the *same*
   ``S`` (``t`` holders with itself: the quorum the argument below needs): its own seed
   share, and for each held neighbour the seed share if it is in ``S``,
   else its key share. The server decodes each secret from the revealed shares (Reed-Solomon:
   up to ``(m - t) / 2`` corrupted of ``m`` are corrected and named), checks it against its
   commitment or public key, and removes the masks.

Threat model (who may see what):

- The server may be actively malicious and collude with up to the policy's fraction of the
  clients (``collusion_fraction``, 5 % by default): it sees every message, may drop, delay,
  replay, reorder, alter or forge any of them, and may tell clients different stories. It
  learns the sum of the inputs of one survivor set of at least ``t`` clients, and nothing else
  about an honest client's input: a split view (different survivor sets to different clients)
  fails the consistency tags; a swapped public key fails its identity signature; weak or
  forged parameters fail the operator's signature or the client's policy. Why it holds: an
  honest holder reveals one kind of share per owner, so with ``2t > k + 1 + c`` (``c``
  colluders among a client's ``k + 1`` share holders, bounded by the plan check with failure
  probability ``2^-security_bits``) no client's seed and key both leak; and a client reveals
  only after ``t`` holders (itself and ``t - 1`` neighbours) confirmed its survivor set, so on
  the complete graph two different sets can never both be confirmed (``2t > k + 1 + c``
  again). On a sparse graph the confirmations come from each client's own neighbourhood: there
  the guarantee against split views rests on the tests that play them (max-flow split plans
  at n = 50, 100, 200, every one refused), not on a general proof.
- The consistency round uses pairwise HMACs rather than signatures: each tag is checked only
  by its receiver, who shares its key with the sender alone (from their authenticated X25519
  keys), so it is as unforgeable for the server as a signature, at a fraction of the cost.
- Other clients see only ciphertexts addressed to others, and their own shares.
- A malicious client can send any input (robustness to bad *inputs* is Layer 1's job, not
  this protocol's), refuse to answer, or send malformed messages: it is then dropped, never
  stops honest clients. It can also claim that a neighbour's share failed (the server cannot
  tell which of the two lies), which leaves that neighbour's input out of the sum
  (``Server.excluded``): it can shrink the sum, not read it. A client that deals inconsistent
  but well-formed shares is named (``SecAggError``) and the round aborts with no output: it
  cannot cause a wrong sum.
- Out of scope: the server discarding honest inputs (it may always declare clients dropped:
  the sum is then over fewer clients, never fewer than ``t``), denial of service, traffic
  analysis, and a compromised operator key (it vouches for identities and plans). Each
  session id is used once: a client must not join the same plan twice (the operator picks
  fresh ids; a deployment keeps the ids its clients joined and passes them as ``joined``).
- Provisioning must give every client the operator's public key and the registry through a
  channel the aggregation server does not control (installation, a pinned file, a signed
  roster checked against the pinned operator key).
"""

from __future__ import annotations

from .client import Client
from .errors import SecAggError
from .server import Server

__all__ = ["Client", "SecAggError", "Server"]
