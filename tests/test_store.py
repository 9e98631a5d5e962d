"""The durable update log: resume = snapshot + replay, kill -9 at random moments, bad files."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import time

import numpy as np
import pytest
from conftest import BACKENDS
from test_federation_transactions import _full_state

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config

D, N, ROUNDS = 16, 6, 6


def _cfg(store=None, noise: bool = False) -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=100),
        layer1=Layer1Config(min_updates=3, apply_local_noise=noise, local_noise_multiplier=1.0),
        layer2=Layer2Config(
            use_secure_aggregation=False,
            central_dp_epsilon=None,
            central_dp_noise_multiplier=1.0 if noise else None,
            min_baskets=2,
            clip_norm=1e6,
        ),
        store=store,
    )


def _fed(store=None, noise: bool = False) -> HierarchicalFederation:
    return HierarchicalFederation(
        _cfg(store, noise), clock=lambda: 2.0, generator=NoiseGenerator(seed=5, secure=False)
    )


def _update(r: int, i: int) -> np.ndarray:
    return np.random.default_rng(1000 * r + i).normal(size=D)


def _register(fed: HierarchicalFederation) -> None:
    for i in range(N):
        fed.register_client(f"c{i}", f"d{i % 2}")


def _run(fed: HierarchicalFederation, start: int = 0, done: set[str] = frozenset()) -> None:
    for r in range(start, ROUNDS):
        for i in range(N):
            if r == start and f"c{i}" in done:
                continue
            assert fed.version == r
            fed.submit_update(f"c{i}", _update(r, i), r)


def test_a_store_resumes_to_the_same_state(tmp_path) -> None:
    fed = _fed(tmp_path / "s.db", noise=True)
    _register(fed)
    for r in range(2):
        for i in range(N):
            fed.submit_update(f"c{i}", _update(r, i), fed.version)
    for i in range(4):  # one basket model stored, one update buffered: events after the snapshot
        fed.submit_update(f"c{i}", _update(9, i), fed.version)
    fed.remove_client("c5")
    fed.register_client("c9", "d1")
    again = _fed(tmp_path / "s.db", noise=True)
    assert _full_state(again) == _full_state(fed)
    assert again.privacy_spent() == fed.privacy_spent()
    assert again.client_privacy_spent("c0") == fed.client_privacy_spent("c0")
    assert again._log is not None and again._log.integrity() == "ok"
    with pytest.raises(ValueError, match="exclude each other"):
        FederationConfig(store=tmp_path / "x.db", checkpoint_path=tmp_path / "x.npz")


def _child(store, ack_fd: int) -> None:
    fed = _fed(store)
    _register(fed)
    os.write(ack_fd, b"ready\n")
    for r in range(ROUNDS):
        for i in range(N):
            fed.submit_update(f"c{i}", _update(r, i), r)
            os.write(ack_fd, f"{r} {i}\n".encode())
    os.write(ack_fd, b"done\n")


def _acks(fd: int) -> list[str]:
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    return data.decode().split()


# A fault test: run once, on the default backend, not again under ASan (it tests no kernel).
ONCE = (len(BACKENDS) > 1 or BACKENDS == ("cpp",)) and "ASAN_OPTIONS" not in os.environ


@pytest.mark.skipif(not ONCE, reason="a fault test: runs once, on the default backend")
def test_kill_9_at_random_moments_loses_and_doubles_nothing(tmp_path) -> None:
    reference = _fed()
    _register(reference)
    _run(reference)
    rng = np.random.default_rng(18)
    finished = 0
    for k in range(100):
        store = tmp_path / f"k{k}" / "s.db"
        store.parent.mkdir()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_fd)
            try:
                _child(store, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        while os.read(read_fd, 6) != b"ready\n":
            pass
        time.sleep(float(rng.uniform(0, 0.04)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        acks = _acks(read_fd)
        os.close(read_fd)
        finished += "done" in acks
        acked = {(int(r), int(i)) for r, i in zip(acks[::2], acks[1::2], strict=False)}
        fed = _fed(store)
        assert fed._log is not None and fed._log.integrity() == "ok"
        v, contributed = fed.version, set(fed._contributed)
        for r, i in acked:  # every acknowledged update is in the restored state...
            assert r < v or (r == v and f"c{i}" in contributed), (k, r, i, v)
        accepted = fed.get_stats()["accepted"]
        assert accepted == v * N + len(contributed)  # ... once
        assert len(acked) <= accepted <= len(acked) + 1  # at most the one in flight besides
        fed.checkpoint(tmp_path / "c.npz")  # go on without fsyncs: the same state
        plain = _fed()
        plain.restore(tmp_path / "c.npz")
        _run(plain, v, contributed)
        np.testing.assert_array_equal(plain.model, reference.model)
        fed._log.close()
    assert finished < 100  # the kills did interrupt runs


def _store_with_events(path) -> None:
    fed = _fed(path)
    _register(fed)
    for i in range(N):
        fed.submit_update(f"c{i}", _update(0, i), 0)
    for i in range(5):  # after the snapshot: five updates, d0's basket model
        fed.submit_update(f"c{i}", _update(1, i), 1)
    assert fed._log is not None
    fed._log.close()


def _sql(path, statement: str, *args) -> None:
    conn = sqlite3.connect(path)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


DB_EDITS = {
    "flipped blob": (
        "UPDATE events SET blob = zeroblob(length(blob)) WHERE kind = 'update' AND "
        "seq = (SELECT MAX(seq) FROM events WHERE kind = 'update')",
        "fails its checksum",
    ),
    "missing event": (
        "DELETE FROM events WHERE seq = (SELECT MIN(seq) + 1 FROM events)",
        "is missing",
    ),
    "unknown kind": (
        "UPDATE events SET kind = 'magic' WHERE seq = (SELECT MAX(seq) FROM events)",
        "unknown event kind",
    ),
    "malformed doc": (
        "UPDATE events SET doc = '[1, 2]' WHERE seq = (SELECT MAX(seq) FROM events)",
        "malformed document",
    ),
    "unknown client": (
        "UPDATE events SET doc = json_set(doc, '$.client_id', 'ghost') WHERE kind = 'update' "
        "AND seq = (SELECT MAX(seq) FROM events WHERE kind = 'update')",
        "does not follow from the state",
    ),
    "wrong basket clients": (
        "UPDATE events SET doc = json_set(doc, '$.clients[0]', 'c5') WHERE kind = 'basket' "
        "AND seq = (SELECT MAX(seq) FROM events WHERE kind = 'basket')",
        "holds",
    ),
    "array without blob": (
        "UPDATE events SET blob = NULL WHERE kind = 'update' AND "
        "seq = (SELECT MAX(seq) FROM events WHERE kind = 'update')",
        "names an array it does not hold",
    ),
    "format": ("UPDATE meta SET value = '9' WHERE key = 'format'", "has format '9'"),
}


@pytest.mark.parametrize("name", sorted(DB_EDITS))
def test_a_damaged_or_edited_store_is_refused(tmp_path, name) -> None:
    path = tmp_path / "s.db"
    _store_with_events(path)
    statement, match = DB_EDITS[name]
    _sql(path, statement)
    with pytest.raises(ValueError, match=match):
        _fed(path)


def test_a_file_that_is_not_a_store_is_refused(tmp_path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ValueError, match="not a hierfed update log"):
        _fed(path)
    other = tmp_path / "t.db"
    _store_with_events(other)
    snap = other.with_name("t.db.snapshot.npz")
    snap.write_bytes(snap.read_bytes()[:100])
    with pytest.raises(ValueError, match="checkpoint"):
        _fed(other)


def test_restore_into_a_store_is_durable(tmp_path) -> None:
    plain = _fed()
    _register(plain)
    for i in range(4):
        plain.submit_update(f"c{i}", _update(0, i), 0)
    plain.checkpoint(tmp_path / "c.npz")
    durable = _fed(tmp_path / "s.db")
    durable.restore(tmp_path / "c.npz")  # no event since the store's first snapshot
    assert durable._log is not None
    durable._log.close()
    assert _full_state(_fed(tmp_path / "s.db")) == _full_state(plain)


def test_splits_disbands_and_rehomed_updates_replay(tmp_path) -> None:
    clock = [2.0]

    def fed_on_clock() -> HierarchicalFederation:
        cfg = dataclasses.replace(_cfg(tmp_path / "s.db"), basket_timeout=1.0)
        gen = NoiseGenerator(seed=5, secure=False)
        return HierarchicalFederation(cfg, clock=lambda: clock[0], generator=gen)

    fed = fed_on_clock()
    _register(fed)
    for i in (0, 2):
        fed.submit_update(f"c{i}", _update(0, i), 0)  # two buffered in d0's basket
    _, right = fed.split_basket(fed.manager.get_client_basket("c0"))
    fed.disband_basket(right)
    clock[0] += 5
    fed.poll()  # re-files the two updates under their new basket, aggregates it on timeout
    assert fed.get_stats()["pending_basket_models"] == 1 and fed.version == 0
    again = fed_on_clock()  # no round completed: all of it is replayed from the log
    assert _full_state(again) == _full_state(fed)
