"""Atomic checkpoint files: arrays and a JSON document in one ``.npz``, never pickle.

The file is written to a temporary name in the same directory, flushed and fsynced, then
renamed over the target (atomic on POSIX) and the directory fsynced: a reader sees the old
checkpoint or the new one, never a torn one, whenever the writer dies.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_STATE = "__state_json__"


def write(path: str | os.PathLike[str], state: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Atomically write ``state`` (JSON-serialisable) and ``arrays`` to ``path``."""
    target = Path(path)
    if _STATE in arrays:
        raise ValueError(f"array name {_STATE!r} is reserved")
    payload: dict[str, Any] = dict(arrays)
    payload[_STATE] = np.frombuffer(json.dumps(state, allow_nan=True).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
    """The state and arrays of a checkpoint written by :func:`write`."""
    with np.load(path, allow_pickle=False) as data:
        if _STATE not in data.files:
            raise ValueError(f"{os.fspath(path)!r} is not a hierfed checkpoint")
        state = json.loads(data[_STATE].tobytes().decode())
        arrays = {k: data[k] for k in data.files if k != _STATE}
    if not isinstance(state, dict):
        raise ValueError(f"{os.fspath(path)!r} holds a malformed checkpoint state")
    return state, arrays
