"""Provisioning of a private deployment: every party's keys and pinned public data, as files.

The operator (who enrols the parties: a consortium's administrator, not the aggregation
server) runs :func:`provision` once, offline, and hands each party its own directory out of
band. Nothing a party needs to trust comes from the server at run time:

- a **member** pins its basket aggregator's X25519 public key (it seals its updates to that
  key only) and holds its Ed25519 identity key (it signs its sealed updates);
- a **basket aggregator** holds its X25519 sealing key, its Ed25519 identity (enrolled in
  the operator-signed registry of basket aggregators), the operator's public key (it checks
  the registry and every session plan the server relays), its members' public identity keys
  (it accepts updates from them only), the public privacy parameters (the distributed
  discrete Gaussian's, so a server cannot ask for less noise) and its Layer 1 rule;
- the **server** gets only public data: the signed registry, one operator-signed session plan
  per round (a fresh session id each, drawn by the operator, used once), the privacy
  parameters and which registry id is which basket.

Layout under ``root``::

    operator/operator.key                      the operator's signing key (keep it offline)
    server/{registry.bin, operator.pub, baskets.json, ddg.json, plans/<round>.plan}
    basket-<id>/{identity.key, seal.key, operator.pub, registry.bin, basket.json,
                 members.json, ddg.json, layer1.json, joined}
    member-<id>/{identity.key, member.json}

``joined`` is the basket aggregator's record of the sessions it took part in (one hex id per
line): a plan relayed twice is refused (:class:`hierfed.secagg.Client`'s ``joined``);
``last_round`` (written by the node, next to it) the last round it released in, so a node
never releases twice in one round (:class:`hierfed.deploy.BasketNode`'s ``last_round``).
Private keys are written with mode 0600.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, MutableSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..aggregator import AggregationMethod
from ..layers import Layer1Config
from ..privacy.distributed import DistributedDiscreteGaussian
from ..secagg import Identity, IdentityRegistry, plan_session

__all__ = [
    "BasketFiles",
    "JoinedFile",
    "MemberFiles",
    "ServerFiles",
    "load_basket",
    "load_member",
    "load_server",
    "provision",
]

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _ID_CHARS or value[0] == ".":
        raise ValueError(
            f"{what} must be a non-empty name of letters, digits, _ - ., got {value!r}"
        )
    return value


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_json(path: Path, value: Any) -> None:
    _write(path, json.dumps(value, indent=1, sort_keys=True).encode())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"provisioning file {path} is missing or unreadable: {exc}") from None


def _read(path: Path, size: int | None = None) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"provisioning file {path} is missing or unreadable: {exc}") from None
    if size is not None and len(data) != size:
        raise ValueError(f"provisioning file {path} must hold {size} bytes, got {len(data)}")
    return data


def _ddg_to_json(ddg: DistributedDiscreteGaussian) -> dict[str, Any]:
    """The public parameters of ``ddg`` (its dataclass fields)."""
    return dataclasses.asdict(ddg)


def _ddg_from_json(value: Mapping[str, Any]) -> DistributedDiscreteGaussian:
    """The :class:`DistributedDiscreteGaussian` of :func:`ddg_to_json`'s fields (checked)."""
    return DistributedDiscreteGaussian(**dict(value))


def _layer1_to_json(layer1: Layer1Config) -> dict[str, Any]:
    """``layer1``'s fields, the rule by its value."""
    out = dataclasses.asdict(layer1)
    out["aggregation_method"] = AggregationMethod(layer1.aggregation_method).value
    return out


@dataclass(frozen=True)
class MemberFiles:
    """What a member holds: its id, its basket's id and pinned X25519 key, its identity."""

    member_id: str
    basket_id: str
    basket_key: bytes
    identity: Identity


@dataclass(frozen=True)
class BasketFiles:
    """What a basket aggregator holds (see the module docstring)."""

    basket_id: str
    registry_id: int
    identity: Identity
    seal_key: X25519PrivateKey
    registry: IdentityRegistry
    members: dict[str, bytes]
    ddg: DistributedDiscreteGaussian
    layer1: Layer1Config
    joined: JoinedFile


@dataclass(frozen=True)
class ServerFiles:
    """What the server holds: public data only."""

    registry: bytes
    operator: bytes
    baskets: dict[int, str]
    ddg: DistributedDiscreteGaussian
    plans: tuple[bytes, ...]

    def plan(self, server_round: int) -> bytes:
        """The signed plan of round ``server_round`` (1-based); ValueError past the last."""
        if not 1 <= server_round <= len(self.plans):
            raise ValueError(
                f"no session plan for round {server_round}: the operator provisioned "
                f"{len(self.plans)} rounds; provision more"
            )
        return self.plans[server_round - 1]


class JoinedFile(MutableSet[bytes]):
    """A set of session ids kept in a file (one hex id a line); :meth:`add` appends and
    flushes to disk before it returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            lines = path.read_text().split()
        except FileNotFoundError:
            lines = []
        self._ids = {bytes.fromhex(line) for line in lines}

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, value: bytes) -> None:
        if value in self._ids:
            return
        with self.path.open("a") as f:
            f.write(value.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._ids.add(value)

    def discard(self, value: bytes) -> None:
        raise TypeError("a session once joined stays joined")


def provision(
    root: str | os.PathLike[str],
    members: Mapping[str, str],
    *,
    ddg: DistributedDiscreteGaussian,
    layer1: Layer1Config,
    rounds: int,
    dropout_rate: float = 0.1,
) -> None:
    """Write every party's directory under ``root`` (see the module docstring).

    Parameters
    ----------
    root
        An empty or new directory.
    members
        Member id -> its basket's id; every basket named gets one aggregator.
    ddg
        The distributed discrete Gaussian every basket aggregator encodes with (its
        ``n_min`` at most the number of baskets).
    layer1
        The rule every basket aggregator runs.
    rounds
        Session plans to sign (one per round).
    dropout_rate
        The basket aggregators' dropout rate the plans are made for.
    """
    base = Path(root)
    if base.exists() and any(base.iterdir()):
        raise ValueError(f"root {base} must be empty or new: provisioning never overwrites keys")
    if not isinstance(members, Mapping) or not members:
        raise ValueError("members must be a non-empty mapping of member id -> basket id")
    for m, b in members.items():
        _check_id(m, "a member id")
        _check_id(b, f"the basket id of member {m!r}")
    if not isinstance(ddg, DistributedDiscreteGaussian):
        raise TypeError(f"ddg must be a DistributedDiscreteGaussian, got {type(ddg).__name__}")
    if not isinstance(layer1, Layer1Config):
        raise TypeError(f"layer1 must be a Layer1Config, got {type(layer1).__name__}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    baskets = sorted(set(members.values()))
    if len(baskets) < 2 or ddg.n_min > len(baskets):
        raise ValueError(
            f"need at least 2 baskets and ddg.n_min <= the {len(baskets)} baskets, got "
            f"n_min={ddg.n_min}"
        )
    operator = Identity()
    ids = {b: Identity() for b in baskets}
    seals = {b: X25519PrivateKey.generate() for b in baskets}
    member_ids = {m: Identity() for m in members}
    registry = IdentityRegistry(
        operator.public_bytes, {i: ids[b].public_bytes for i, b in enumerate(baskets)}
    )
    _write(base / "operator" / "operator.key", operator.private_bytes(), secret=True)
    server = base / "server"
    _write(server / "registry.bin", registry.signed(operator))
    _write(server / "operator.pub", operator.public_bytes)
    _write_json(server / "baskets.json", {str(i): b for i, b in enumerate(baskets)})
    _write_json(server / "ddg.json", _ddg_to_json(ddg))
    for r in range(1, rounds + 1):
        plan = plan_session(registry.ids, ddg.encoded_dim, dropout_rate=dropout_rate, complete=True)
        # the threshold is at least n_min: SecAgg+ itself cannot unmask an under-noised sum
        plan = dataclasses.replace(plan, t=max(plan.t, ddg.n_min))
        _write(server / "plans" / f"{r}.plan", plan.signed(operator))
    for i, b in enumerate(baskets):
        d = base / f"basket-{b}"
        _write(d / "identity.key", ids[b].private_bytes(), secret=True)
        _write(d / "seal.key", seals[b].private_bytes_raw(), secret=True)
        _write(d / "operator.pub", operator.public_bytes)
        _write(d / "registry.bin", registry.signed(operator))
        _write_json(d / "basket.json", {"basket_id": b, "registry_id": i})
        own = {m: member_ids[m].public_bytes.hex() for m, mb in members.items() if mb == b}
        _write_json(d / "members.json", own)
        _write_json(d / "ddg.json", _ddg_to_json(ddg))
        _write_json(d / "layer1.json", _layer1_to_json(layer1))
        _write(d / "joined", b"")
    for m, b in members.items():
        d = base / f"member-{m}"
        _write(d / "identity.key", member_ids[m].private_bytes(), secret=True)
        key = seals[b].public_key().public_bytes_raw().hex()
        _write_json(d / "member.json", {"member_id": m, "basket_id": b, "basket_key": key})


def load_member(directory: str | os.PathLike[str]) -> MemberFiles:
    """A member's files (ValueError naming the file when one is missing or malformed)."""
    d = Path(directory)
    info = _read_json(d / "member.json")
    try:
        key = bytes.fromhex(info["basket_key"])
        member_id, basket_id = str(info["member_id"]), str(info["basket_id"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{d / 'member.json'} is malformed: {exc}") from None
    if len(key) != 32:
        raise ValueError(f"{d / 'member.json'}: basket_key must be 32 bytes")
    return MemberFiles(member_id, basket_id, key, Identity(_read(d / "identity.key", 32)))


def load_basket(directory: str | os.PathLike[str]) -> BasketFiles:
    """A basket aggregator's files (its signed registry checked against its pinned operator
    key; ValueError naming the file when one is missing or malformed)."""
    d = Path(directory)
    info = _read_json(d / "basket.json")
    operator = _read(d / "operator.pub", 32)
    try:
        registry = IdentityRegistry.from_signed(_read(d / "registry.bin"), operator)
    except ValueError as exc:
        raise ValueError(f"{d / 'registry.bin'}: {exc}") from None
    try:
        members = {str(m): bytes.fromhex(k) for m, k in _read_json(d / "members.json").items()}
        basket_id, registry_id = str(info["basket_id"]), int(info["registry_id"])
        layer1_fields = dict(_read_json(d / "layer1.json"))
        layer1 = Layer1Config(**layer1_fields)
        ddg = _ddg_from_json(_read_json(d / "ddg.json"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"the basket files in {d} are malformed: {exc}") from None
    return BasketFiles(
        basket_id,
        registry_id,
        Identity(_read(d / "identity.key", 32)),
        X25519PrivateKey.from_private_bytes(_read(d / "seal.key", 32)),
        registry,
        members,
        ddg,
        layer1,
        JoinedFile(d / "joined"),
    )


def load_server(directory: str | os.PathLike[str]) -> ServerFiles:
    """The server's files (public data)."""
    d = Path(directory)
    plans_dir = d / "plans"
    count = len(list(plans_dir.glob("*.plan"))) if plans_dir.is_dir() else 0
    plans = tuple(_read(plans_dir / f"{r}.plan") for r in range(1, count + 1))
    try:
        baskets = {int(i): str(b) for i, b in _read_json(d / "baskets.json").items()}
        ddg = _ddg_from_json(_read_json(d / "ddg.json"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"the server files in {d} are malformed: {exc}") from None
    return ServerFiles(
        _read(d / "registry.bin"), _read(d / "operator.pub", 32), baskets, ddg, plans
    )
