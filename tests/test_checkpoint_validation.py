"""restore() checks every field before it changes anything; centers and temp files."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
from test_federation import _u
from test_federation_transactions import _full_state

import hierfed._checkpoint as ck
from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config


def _cfg(**layer1) -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=100),
        layer1=Layer1Config(
            min_updates=3, local_noise_multiplier=1.0, local_clip_norm=10.0, **layer1
        ),
        layer2=Layer2Config(
            use_secure_aggregation=False,
            central_dp_noise_multiplier=1.0,
            min_baskets=2,
            clip_norm=10.0,
        ),
    )


def _fed(cfg: FederationConfig | None = None) -> HierarchicalFederation:
    return HierarchicalFederation(
        cfg or _cfg(), clock=lambda: 7.0, generator=NoiseGenerator(seed=1, secure=False), seed=0
    )


def _rich(path) -> HierarchicalFederation:
    """Two rounds done, a stored basket model and two buffered updates, then saved."""
    fed = _fed()
    for i in range(16):
        fed.register_client(f"c{i}", f"d{i % 2}")
    for r in range(2):  # two rounds from version 0: the second one's updates are stale
        for i in range(6 * r, 6 * r + 6):
            fed.submit_update(f"c{i}", _u(i), 0)
    for i in (0, 2, 4):  # d0's model stored, waiting for d1's
        fed.submit_update(f"c{i}", _u(40 + i), fed.version)
    for i in (1, 3):  # two buffered in d1
        fed.submit_update(f"c{i}", _u(50 + i), 1)
    s = fed.get_stats()
    assert fed.version == 2 and s["buffered_updates"] == 2 and s["pending_basket_models"] == 1
    fed.checkpoint(path)
    return fed


def _target() -> tuple[HierarchicalFederation, dict]:
    fed = _fed()
    for i in range(4):
        fed.register_client(f"t{i}", "z")
        fed.submit_update(f"t{i}", _u(90 + i), 0)
    return fed, _full_state(fed)


def _edit(fn):
    def run(state, arrays):
        fn(state, arrays)

    return run


def _first_pending(state):
    return state["pending"][0]


EDITS = {
    "model shape": lambda s, a: a.update(model=np.zeros(33)),
    "model dtype": lambda s, a: a.update(model=a["model"].astype(np.float32)),
    "model nan": lambda s, a: a["model"].__setitem__(3, np.nan),
    "pending inf": lambda s, a: a["pending_0"].__setitem__(0, np.inf),
    "pending shape": lambda s, a: a.update(pending_0=a["pending_0"][:5]),
    "version -7": lambda s, a: s.update(version=-7),
    "version str": lambda s, a: s.update(version="2"),
    "has_model str": lambda s, a: s.update(has_model="yes"),
    "unknown client": lambda s, a: _first_pending(s).update(client_id="ghost"),
    "future base": lambda s, a: _first_pending(s).update(base_version=s["version"] + 1),
    "negative staleness": lambda s, a: _first_pending(s).update(staleness=-1),
    "too stale": lambda s, a: _first_pending(s).update(staleness=s["version"] + 1),
    "pending twice": lambda s, a: (
        s["pending"].append(dict(s["pending"][0])),
        a.update({f"pending_{len(s['pending']) - 1}": a["pending_0"]}),
    ),
    "pending extra key": lambda s, a: _first_pending(s).update(weight=2.0),
    "pending unknown basket": lambda s, a: _first_pending(s).update(basket_id="nowhere"),
    "model of unknown basket": lambda s, a: s["basket_models"][0].update(basket_id="nowhere"),
    "confidence 1.5": lambda s, a: s["basket_models"][0].update(confidence=1.5),
    "no contributors": lambda s, a: s["basket_models"][0].update(n_contributors=0),
    "model from the future": lambda s, a: s["basket_models"][0].update(round_id=99),
    "stats list": lambda s, a: s.update(stats=[]),
    "accepted edited": lambda s, a: s["stats"].update(accepted=s["stats"]["accepted"] + 1),
    "rounds edited": lambda s, a: s["stats"].update(global_rounds=0),
    "central history cleared": lambda s, a: s.update(layer2_history=[]),
    "central noise edited": lambda s, a: s["layer2_history"][0].__setitem__(0, 100.0),
    "local history cleared": lambda s, a: s["layer1_history"].update(
        {b: [] for b in s["layer1_history"]}
    ),
    "local entry malformed": lambda s, a: next(iter(s["layer1_history"].values())).__setitem__(
        0, [1.0]
    ),
    "unknown contributor": lambda s, a: s["contributed"].append("ghost"),
    "pending client not contributed": lambda s, a: s["contributed"].remove(
        s["pending"][0]["client_id"]
    ),
    "layer2 rounds": lambda s, a: s.update(layer2_rounds=s["layer2_rounds"] + 3),
    "basket config": lambda s, a: s["manager"]["config"].update(max_clients=50),
    "manager client in no basket": lambda s, a: s["manager"]["clients"][0].update(
        basket_id="nowhere"
    ),
    "client releases cleared": lambda s, a: s.update(client_releases={}),
    "client release zero": lambda s, a: s["client_releases"].update(c0=0),
    "client releases moved": lambda s, a: s["client_releases"].update(
        c0=s["client_releases"]["c0"] - 1, c1=s["client_releases"]["c1"] + 2
    ),
    "extra key": lambda s, a: s.update(note="hand edited"),
    "format 1": lambda s, a: s.update(format=1),
    "extra array": lambda s, a: a.update(spare=np.zeros(32)),
    "missing array": lambda s, a: a.pop("pending_0"),
    "center renamed": lambda s, a: s["centers"].update(
        {b: "model" for b in list(s["centers"])[:1]}
    ),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "rich.npz"
    fed = _rich(path)
    state, arrays = ck.read(path)
    assert state["pending"] and state["basket_models"] and state["layer2_history"]
    assert state["layer1_history"] and state["centers"]
    return path, fed, state, arrays


def test_the_rich_checkpoint_restores(saved) -> None:
    path, fed, _, _ = saved
    other = _fed()
    other.restore(path)
    assert _full_state(other) == _full_state(fed)
    assert other.privacy_spent() == fed.privacy_spent()


@pytest.mark.parametrize("name", sorted(EDITS))
def test_a_hand_edited_checkpoint_is_refused_before_any_change(saved, tmp_path, name) -> None:
    _, _, state, arrays = saved
    state, arrays = copy.deepcopy(state), {k: v.copy() for k, v in arrays.items()}
    EDITS[name](state, arrays)
    path = tmp_path / "edited.npz"
    ck.write(path, state, arrays)  # a valid checksum: the fields themselves must be checked
    target, before = _target()
    with pytest.raises((ValueError, TypeError), match=r"checkpoint field|unknown checkpoint"):
        target.restore(path)
    assert _full_state(target) == before


def _corrupt_bytes(data: bytes, name: str) -> bytes:
    if name == "truncated":
        return data[: len(data) // 2]
    if name == "flipped byte":
        mid = len(data) // 2
        return data[:mid] + bytes([data[mid] ^ 0x10]) + data[mid + 1 :]
    if name == "empty":
        return b""
    return b"PK\x03\x04" + bytes(range(256)) * 8  # "garbage"


@pytest.mark.parametrize("name", ["truncated", "flipped byte", "empty", "garbage"])
def test_a_damaged_file_is_refused_before_any_change(saved, tmp_path, name) -> None:
    path = tmp_path / "damaged.npz"
    path.write_bytes(_corrupt_bytes(saved[0].read_bytes(), name))
    target, before = _target()
    with pytest.raises(ValueError, match=r"checkpoint|checksum"):
        target.restore(path)
    assert _full_state(target) == before


def test_an_edit_without_the_checksum_is_refused(saved, tmp_path) -> None:
    _, _, state, arrays = saved
    text, checksum = ck.checksum, None
    with np.load(saved[0]) as data:
        checksum = data["__checksum__"]
    edited = dict(state, layer2_history=[])
    buf = io.BytesIO()
    np.savez(
        buf,
        __state_json__=np.frombuffer(json.dumps(edited).encode(), np.uint8),
        __checksum__=checksum,
        **arrays,
    )
    path = tmp_path / "unsummed.npz"
    path.write_bytes(buf.getvalue())
    target, before = _target()
    with pytest.raises(ValueError, match="fails its checksum"):
        target.restore(path)
    assert _full_state(target) == before and text is ck.checksum


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path) -> None:
    path = tmp_path / "fed.npz"
    fed = _fed()
    fed.checkpoint(path)
    for i in range(3):
        (tmp_path / f".fed.npz.killed{i}.tmp").write_bytes(b"x" * 1000)
    (tmp_path / ".other.npz.x.tmp").write_bytes(b"y")  # another file's: kept
    _fed().restore(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.x.tmp", "fed.npz"]
    (tmp_path / ".fed.npz.killed.tmp").write_bytes(b"x")
    fed.checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.x.tmp", "fed.npz"]


def test_centered_clipping_centers_are_saved(tmp_path) -> None:
    cfg = FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=100),
        layer1=Layer1Config(
            aggregation_method="centered_clipping",
            method_params={"tau": 0.5},
            min_updates=3,
            apply_local_noise=False,
        ),
        layer2=Layer2Config(
            use_secure_aggregation=False, central_dp_epsilon=None, min_baskets=1, clip_norm=1e6
        ),
    )

    def run(stop_at: int | None) -> np.ndarray:
        fed = _fed(cfg)
        for i in range(3):
            fed.register_client(f"c{i}", "x")
        for r in range(6):
            if r == stop_at:
                fed.checkpoint(tmp_path / "cc.npz")
                fed = _fed(cfg)
                fed.restore(tmp_path / "cc.npz")
            for i in range(3):
                fed.submit_update(f"c{i}", _u(10 * r + i) + 3.0, fed.version)
        assert fed.model is not None
        return fed.model

    np.testing.assert_array_equal(run(3), run(None))  # diverged by 0.045 without the centers
