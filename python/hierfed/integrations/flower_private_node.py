"""The node side of private rounds on Flower: a member's sealed reply, a basket aggregator's
SecAgg+ stages (extra ``flower``).

- :func:`member_reply`: a member's trained model as its update (``trained - received``),
  sealed to its basket aggregator's pinned key (:func:`hierfed.deploy.seal_update`) and signed
  with its identity key: the reply holds that ciphertext, its signature and two names, nothing
  in the clear (no metrics either).
- :class:`BasketAggregatorNode`: answers the ``train.hierfed_secagg`` messages of
  :class:`hierfed.integrations.flower_private.PrivateRounds`, one SecAgg+ stage each, running
  a :class:`hierfed.secagg.Client` whose state lives in ``context.state`` between messages
  (:meth:`~hierfed.secagg.client.Client.export_state`: Flower's SuperNode may run each message in a
  fresh ClientApp process; the state never leaves the node). At the masked-input stage it
  checks each relayed update's member signature, then its :class:`hierfed.deploy.BasketNode`
  opens them, runs Layer 1, clips, weights and adds its noise share; only the masked words
  leave. A stage it refuses (a bad plan, a replayed session, a message out of order) is
  answered with the reason and leaves its state as it was.

Everything a node trusts comes from its provisioned files
(:mod:`hierfed.integrations.private_provision`), never from the server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flwr.app import ConfigRecord, Context, Message, RecordDict

from ..deploy import BasketNode, SealContext, seal_update
from ..secagg import Client, SecAggError, SessionPlan
from ..secagg.identity import verify_signature
from ._layout import ArrayLayout
from ._private_wire import SEALED, SECAGG, STATE, sealed_payload
from .private_provision import BasketFiles, MemberFiles

__all__ = ["BasketAggregatorNode", "member_reply"]


def _arrays(content: RecordDict, key: str = "arrays") -> dict[str, np.ndarray[Any, Any]]:
    return {name: a.numpy() for name, a in content.array_records[key].items()}


def member_reply(
    msg: Message, files: MemberFiles, trained: Mapping[str, np.ndarray[Any, Any]]
) -> Message:
    """The reply of a member that trained ``trained`` from the model ``msg`` carried.

    Raises
    ------
    ValueError
        When ``msg`` lacks the round's session and number, or ``trained`` does not have the
        received model's layout.
    """
    cfg = msg.content.config_records.get(SECAGG)
    session = None if cfg is None else cfg.get("session")
    round_id = None if cfg is None else cfg.get("round")
    if (
        not isinstance(session, bytes)
        or isinstance(round_id, bool)
        or not isinstance(round_id, int)
    ):
        raise ValueError(f"the train message carries no {SECAGG!r} session and round")
    received = _arrays(msg.content)
    layout = ArrayLayout.of(received)
    update = layout.flatten(trained, "the trained model") - layout.flatten(received)
    context = SealContext(session, round_id, files.member_id, files.basket_id)
    blob = seal_update(update, files.basket_key, context)
    signature = files.identity.sign(
        sealed_payload(session, round_id, files.member_id, files.basket_id, blob)
    )
    record = ConfigRecord(
        {
            "blob": blob,
            "signature": signature,
            "member-id": files.member_id,
            "basket": files.basket_id,
        }
    )
    return Message(content=RecordDict({SEALED: record}), reply_to=msg)


class _RefusedError(Exception):
    """A stage this node will not answer (the reason goes back to the server)."""


class BasketAggregatorNode:
    """A basket aggregator's answers to the SecAgg+ stages (see the module docstring).

    Parameters
    ----------
    files
        The node's provisioned files (:func:`~.private_provision.load_basket`).
    generator
        Noise source of Layer 1's local DP and the noise share (default: secure, from the OS).
    """

    def __init__(self, files: BasketFiles, generator: Any = None) -> None:
        if not isinstance(files, BasketFiles):
            raise TypeError(f"files must be BasketFiles, got {type(files).__name__}")
        self.files = files
        self.generator = generator

    def handle(self, msg: Message, context: Context) -> Message:
        """Answer one stage message; the reply's SECAGG record holds ``payload`` or
        ``refused``."""
        cfg = msg.content.config_records.get(SECAGG)
        stage = "" if cfg is None else str(cfg.get("stage", ""))
        try:
            if cfg is None:
                raise _RefusedError(f"the message carries no {SECAGG!r} record")
            out: dict[str, Any] = {"stage": stage}
            out.update(self._stage(stage, cfg, msg.content, context))
        except (_RefusedError, SecAggError, ValueError, TypeError) as exc:
            out = {"stage": stage, "refused": f"basket {self.files.basket_id}: {exc}"}
        return Message(content=RecordDict({SECAGG: ConfigRecord(out)}), reply_to=msg)

    def _stage(
        self, stage: str, cfg: ConfigRecord, content: RecordDict, context: Context
    ) -> dict[str, Any]:
        f = self.files
        round_id = cfg.get("round")
        if isinstance(round_id, bool) or not isinstance(round_id, int):
            raise _RefusedError("the stage message has no integer 'round'")
        payload = cfg.get("payload", b"")
        if not isinstance(payload, bytes):
            raise _RefusedError("the stage's payload must be bytes")
        if stage == "advertise":
            plan = cfg.get("plan")
            if not isinstance(plan, bytes):
                raise _RefusedError("the advertise stage carries no signed 'plan'")
            p = SessionPlan.from_signed(plan, f.registry)
            self._node().check_plan(p)
            client = Client(f.identity, f.registry_id, f.registry, plan, joined=f.joined)
            words = client.advertise()
            extra: dict[str, Any] = {}
        else:
            state = context.state.config_records.get(STATE)
            if state is None or state.get("round") != round_id:
                raise _RefusedError(f"no SecAgg+ session of round {round_id} on this node")
            client = Client.from_state(bytes(state["client"]), f.identity, f.registry)  # type: ignore[arg-type]
            words, extra = self._answer(stage, client, payload, cfg, content, round_id)
        context.state.config_records[STATE] = ConfigRecord(
            {"client": client.export_state(), "round": round_id}
        )
        return {"payload": words, **extra}

    def _answer(
        self,
        stage: str,
        client: Client,
        payload: bytes,
        cfg: ConfigRecord,
        content: RecordDict,
        round_id: int,
    ) -> tuple[bytes, dict[str, Any]]:
        if stage == "share_keys":
            return client.share_keys(payload), {}
        if stage == "masked_input":
            seed = cfg.get("rotation-seed")
            if seed is not None and not isinstance(seed, bytes):
                raise _RefusedError("rotation-seed must be bytes")
            sealed, rejected = self._verified(content.config_records.get(SEALED), client, round_id)
            node = self._node()
            prepared = node.prepare(
                sealed, session=client.plan.session, round_id=round_id, rotation_seed=seed
            )
            rejected.update(prepared.rejected)
            words = client.masked_input(payload, prepared.encoded)
            self._save_last_round(round_id)  # before the words leave: one release a round
            reasons = [f"{m}: {why}" for m, why in sorted(rejected.items())]
            return words, {
                "weight": float(prepared.weight),
                "n-contributors": int(prepared.n_contributors),
                "rejected": reasons,
            }
        if stage == "consistency":
            return client.consistency(payload), {}
        if stage == "unmask":
            return client.unmask(payload), {}
        raise _RefusedError(f"unknown stage {stage!r}")

    def _verified(
        self, record: ConfigRecord | None, client: Client, round_id: int
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        """The relayed updates whose member signature checks against the pinned keys."""
        f = self.files
        sealed: dict[str, bytes] = {}
        rejected: dict[str, str] = {}
        for key, blob in ({} if record is None else record).items():
            if key.endswith(":sig"):
                continue
            signature = record.get(f"{key}:sig") if record is not None else None
            pinned = f.members.get(key)
            if pinned is None:
                rejected[key] = "not a member of this basket"
            elif not isinstance(blob, bytes) or not isinstance(signature, bytes):
                rejected[key] = "update or signature missing"
            elif not _signed_by(
                pinned,
                signature,
                sealed_payload(client.plan.session, round_id, key, f.basket_id, blob),
            ):
                rejected[key] = "signature is not the member's"
            else:
                sealed[key] = blob
        return sealed, rejected

    def _node(self) -> BasketNode:
        f = self.files
        return BasketNode(
            f.basket_id,
            f.seal_key,
            f.ddg,
            f.layer1,
            members=tuple(f.members),
            generator=self.generator,
            last_round=self._last_round(),
        )

    def _last_round_path(self) -> Path:
        return self.files.joined.path.with_name("last_round")

    def _last_round(self) -> int:
        try:
            return int(self._last_round_path().read_text())
        except FileNotFoundError:
            return -1
        except ValueError:
            raise _RefusedError(f"{self._last_round_path()} is corrupted") from None

    def _save_last_round(self, round_id: int) -> None:
        path = self._last_round_path()
        tmp = path.with_name("last_round.tmp")
        tmp.write_text(str(round_id))
        os.replace(tmp, path)


def _signed_by(pinned: bytes, signature: bytes, payload: bytes) -> bool:
    """Whether ``signature`` is the pinned Ed25519 key's signature of ``payload``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(pinned)
    except ValueError:
        return False
    return verify_signature(key, signature, payload)
