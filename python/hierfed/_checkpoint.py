"""Atomic checkpoint files: arrays and a JSON document in one ``.npz``, never pickle.

The file is written to a temporary name in the same directory, flushed and fsynced, then
renamed over the target (atomic on POSIX) and the directory fsynced: a reader sees the old
checkpoint or the new one, never a torn one, whenever the writer dies. Temporary files a
killed writer left behind are removed by the next write or read of the same path.

A SHA-256 checksum over the JSON document and every array (name, dtype, shape, bytes) is
stored beside them and checked on reading: a flipped bit, a truncated file or an edit made
without recomputing it is refused. (A plain hash: it detects corruption and careless edits,
not a forger who recomputes it; protect the file itself against those.)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

_STATE = "__state_json__"
_CHECKSUM = "__checksum__"


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def remove_stale_temps(path: str | os.PathLike[str]) -> int:
    """Remove temporary files a killed writer of ``path`` left behind; how many."""
    target = Path(path)
    removed = 0
    for tmp in target.parent.glob(f"{_temp_prefix(target)}*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def checksum(state_json: bytes, arrays: dict[str, Any]) -> str:
    """SHA-256 of the JSON document and of every array, in name order."""
    h = hashlib.sha256()
    h.update(len(state_json).to_bytes(8, "little") + state_json)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        head = json.dumps([name, a.dtype.str, list(a.shape)]).encode()
        h.update(len(head).to_bytes(8, "little") + head + a.tobytes())
    return h.hexdigest()


def write(path: str | os.PathLike[str], state: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Atomically write ``state`` (JSON-serialisable) and ``arrays`` to ``path``."""
    target = Path(path)
    if _STATE in arrays or _CHECKSUM in arrays:
        raise ValueError(f"array names {_STATE!r} and {_CHECKSUM!r} are reserved")
    remove_stale_temps(target)
    text = json.dumps(state, allow_nan=False).encode()
    payload: dict[str, Any] = dict(arrays)
    payload[_STATE] = np.frombuffer(text, dtype=np.uint8)
    payload[_CHECKSUM] = np.frombuffer(checksum(text, arrays).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
    """The state and arrays of a checkpoint written by :func:`write`, checksum checked.

    Raises ``ValueError`` for a file that is not one, is damaged, or fails its checksum.
    """
    name = os.fspath(path)
    remove_stale_temps(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if _STATE not in data.files or _CHECKSUM not in data.files:
                raise ValueError(f"{name!r} is not a hierfed checkpoint")
            text = data[_STATE].tobytes()
            stored = data[_CHECKSUM].tobytes().decode("ascii")
            arrays = {k: data[k] for k in data.files if k not in (_STATE, _CHECKSUM)}
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ValueError(f"{name!r} is not a readable checkpoint: {exc}") from None
    if checksum(text, arrays) != stored:
        raise ValueError(f"{name!r} fails its checksum: damaged or edited")
    try:
        state = json.loads(text.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{name!r} holds a malformed checkpoint state: {exc}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{name!r} holds a malformed checkpoint state")
    return state, arrays
