"""A transcript of everything a ServerApp sends and receives: an audit of what the relay sees
(extra ``flower``).

:class:`TranscriptGrid` wraps the ServerApp's Grid and appends every value of every message's
content (each Array's bytes, each ConfigRecord and MetricRecord value) to a file, as it is
sent and as its reply arrives. :func:`read_transcript` reads them back, e.g. to check that no
payload holds a member's update (``tests/test_flower_private_deployment.py``).

Record form: direction ``b"S"`` (sent) or ``b"R"`` (received) | message type length u16 +
UTF-8 | key length u16 + UTF-8 | value length u32 + bytes (text as UTF-8, numbers as
little-endian int64 / float64, lists one element after the other).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["TranscriptGrid", "read_transcript"]


def _value_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return bytes([value])
    if isinstance(value, int):
        return struct.pack("<q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, list):
        return b"".join(_value_bytes(v) for v in value)
    raise TypeError(f"unexpected record value of type {type(value).__name__}")


def content_values(content: RecordDict) -> Iterator[tuple[str, bytes]]:
    """Every value in ``content`` as ``(record/key, bytes)``."""
    for name, arrays in content.array_records.items():
        for key, array in arrays.items():
            yield f"{name}/{key}", bytes(array.data)
    for name, config in content.config_records.items():
        for key, value in config.items():
            yield f"{name}/{key}", _value_bytes(value)
    for name, metrics in content.metric_records.items():
        for key, value in metrics.items():
            yield f"{name}/{key}", _value_bytes(value)


def _short(text: str) -> bytes:
    raw = text.encode()[:0xFFFF]
    return struct.pack("<H", len(raw)) + raw


class TranscriptGrid(Grid):
    """``grid`` with every message's content appended to ``path`` (see the module docstring)."""

    def __init__(self, grid: Grid, path: str | os.PathLike[str]) -> None:
        self.grid = grid
        self.path = os.fspath(path)

    def _write(self, direction: bytes, messages: Iterable[Message]) -> None:
        with open(self.path, "ab") as f:
            for m in messages:
                if m.has_error():
                    continue
                head = direction + _short(m.metadata.message_type)
                for key, raw in content_values(m.content):
                    f.write(head + _short(key) + struct.pack("<I", len(raw)) + raw)

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        sent = list(messages)
        self._write(b"S", sent)
        return self.grid.push_messages(sent)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self.grid.pull_messages(message_ids))
        self._write(b"R", replies)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        sent = list(messages)
        self._write(b"S", sent)
        replies = list(self.grid.send_and_receive(sent, timeout=timeout))
        self._write(b"R", replies)
        return replies


def read_transcript(path: str | os.PathLike[str]) -> list[tuple[str, str, str, bytes]]:
    """The records of a transcript: ``(direction "S"/"R", message type, key, value)``."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    at = 0

    def short() -> str:
        nonlocal at
        (n,) = struct.unpack_from("<H", data, at)
        text = data[at + 2 : at + 2 + n].decode()
        at += 2 + n
        return text

    while at < len(data):
        direction = chr(data[at])
        at += 1
        kind, key = short(), short()
        (n,) = struct.unpack_from("<I", data, at)
        out.append((direction, kind, key, data[at + 4 : at + 4 + n]))
        at += 4 + n
    return out
