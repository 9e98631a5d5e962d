"""The durable update log: SQLite (standard library) in WAL mode with ``synchronous=FULL``.

Every change of a durable federation (a client registered or removed, an update accepted, a
basket model or a global round made, buffered updates discarded) is an *event*: a kind, a
JSON document and at most one array, stored as a BLOB with its CRC-32. A submit is
acknowledged once the transaction holding its event has committed. Commits are grouped:
events wait in memory and one writer at a time commits every event queued so far in one
transaction (one fsync), so submits from many threads share commits.

At round boundaries the federation writes a snapshot (the ``.npz`` checkpoint, with the
sequence number of the last event it holds) beside the database and the events it covers are
deleted: recovery is the snapshot plus the replay of the events after it.

Why SQLite: its WAL commit is atomic and durable under power loss and ``kill -9`` with
``synchronous=FULL`` (the WAL is fsynced at each commit), it checks itself
(``PRAGMA integrity_check``), and it ships with Python.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import _checkpoint

__all__ = ["Event", "UpdateLog"]

Event = tuple[str, dict[str, Any], "np.ndarray[Any, Any] | None"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL,
    dtype TEXT,
    shape TEXT,
    blob BLOB,
    crc INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
FORMAT = "1"


class UpdateLog:
    """The event log of one durable federation at ``path`` (created when missing).

    :meth:`append` queues events (called under the federation's lock, in the order the
    changes were made) and returns the last one's sequence number; :meth:`sync` returns
    once that number is committed. A failed commit poisons the log: every later
    :meth:`sync` raises, as the federation's memory then holds changes the disk does not.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.snapshot_path = self.path.with_name(self.path.name + ".snapshot.npz")
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            # 64 KB pages (a new database only): an update of 0.4 MB spans 7 pages, not 100
            # (a third of the time per commit, measured in bench/test_store.py)
            self._conn.execute("PRAGMA page_size=65536")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
            row = self._conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            elif row[0] != FORMAT:
                raise ValueError(f"store {os.fspath(path)!r} has format {row[0]!r}, need {FORMAT}")
            last = self._conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            name = os.fspath(path)
            raise ValueError(f"store {name!r} is not a hierfed update log: {exc}") from None
        except BaseException:
            self._conn.close()
            raise
        self._db = threading.Lock()  # the connection: one writer or snapshotter at a time
        self._cv = threading.Condition()
        self._queue: list[tuple[int, Event]] = []
        self._next = self._durable = int(last or 0)
        self._committing = False
        self._failed: BaseException | None = None
        self._snapshot_seq = -1

    # ---- writing -------------------------------------------------------------------------

    def append(self, events: list[Event]) -> int:
        """Queue ``events``; the sequence number of the last one (or of the last queued)."""
        with self._cv:
            for e in events:
                self._next += 1
                self._queue.append((self._next, e))
            return self._next

    def sync(self, seq: int) -> None:
        """Return once every event up to ``seq`` is committed (committing them if no other
        thread is)."""
        with self._cv:
            while self._durable < seq:
                if self._failed is not None:
                    raise RuntimeError(
                        f"the update log {os.fspath(self.path)!r} failed to commit; the "
                        "federation must be rebuilt from it"
                    ) from self._failed
                if self._committing:
                    self._cv.wait()
                    continue
                self._committing = True
                batch, self._queue = self._queue, []
                self._cv.release()
                try:
                    self._write(batch)
                except BaseException as exc:
                    self._cv.acquire()
                    self._failed, self._committing = exc, False
                    self._cv.notify_all()
                    raise
                self._cv.acquire()
                if batch:
                    self._durable = batch[-1][0]
                self._committing = False
                self._cv.notify_all()

    def _write(self, batch: list[tuple[int, Event]]) -> None:
        rows: list[tuple[Any, ...]] = []
        for seq, (kind, doc, array) in batch:
            if array is None:
                rows.append((seq, kind, json.dumps(doc), None, None, None, None))
            else:
                a = np.ascontiguousarray(array)
                data = a.data.cast("B")
                shape = json.dumps(list(a.shape))
                crc = zlib.crc32(data)
                rows.append((seq, kind, json.dumps(doc), a.dtype.str, shape, data, crc))
        with self._db:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def snapshot(self, seq: int, state: dict[str, Any], arrays: dict[str, Any]) -> None:
        """Write the snapshot of the state after event ``seq`` (committed) and delete the
        events it covers; a snapshot older than the one on disk is skipped."""
        with self._db:
            if seq < self._snapshot_seq:
                return
            _checkpoint.write(self.snapshot_path, {"log_seq": seq, "federation": state}, arrays)
            self._snapshot_seq = seq
            self._conn.execute("DELETE FROM events WHERE seq <= ?", (seq,))

    # ---- reading -------------------------------------------------------------------------

    def read_snapshot(self) -> tuple[int, dict[str, Any], dict[str, np.ndarray[Any, Any]]] | None:
        """(sequence number, federation state, arrays) of the snapshot, or ``None``."""
        if not self.snapshot_path.exists():
            _checkpoint.remove_stale_temps(self.snapshot_path)
            return None
        doc, arrays = _checkpoint.read(self.snapshot_path)
        seq, state = doc.get("log_seq"), doc.get("federation")
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(state, dict):
            raise ValueError(f"{os.fspath(self.snapshot_path)!r} is not a store snapshot")
        self._snapshot_seq = seq
        return seq, state, arrays

    def events(self, after: int) -> Iterator[tuple[int, str, dict[str, Any], Any]]:
        """The committed events after ``after``, in order, their arrays checked."""
        with self._db:
            rows = self._conn.execute(
                "SELECT seq, kind, doc, dtype, shape, blob, crc FROM events WHERE seq > ? "
                "ORDER BY seq",
                (after,),
            ).fetchall()
        expected = after + 1 if rows and after >= 0 else None
        for seq, kind, doc, dtype, shape, blob, crc in rows:
            if expected is not None and seq != expected:
                raise ValueError(f"update log: event {expected} is missing (next is {seq})")
            expected = seq + 1
            yield seq, kind, _doc(doc, seq), _array(dtype, shape, blob, crc, seq)

    def integrity(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` of the database ("ok" when sound)."""
        with self._db:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        """Close the database (queued events not yet synced are dropped)."""
        with self._db:
            self._conn.close()


def _doc(text: Any, seq: int) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except (TypeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise ValueError(f"update log: event {seq} has a malformed document")
    return doc


def _array(dtype: Any, shape: Any, blob: Any, crc: Any, seq: int) -> Any:
    if blob is None:
        if dtype is not None or shape is not None or crc is not None:
            raise ValueError(f"update log: event {seq} names an array it does not hold")
        return None
    if not isinstance(blob, bytes) or zlib.crc32(blob) != crc:
        raise ValueError(f"update log: event {seq} fails its checksum")
    try:
        dt, dims = np.dtype(dtype), json.loads(shape)
        array = np.frombuffer(blob, dtype=dt).reshape(dims).copy()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"update log: event {seq} has a malformed array: {exc}") from None
    if dt not in (np.float32, np.float64):
        raise ValueError(f"update log: event {seq} has dtype {dt}")
    return array
