"""hierfed.integrations.flower_grid.send_and_receive against a scripted Grid."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("flwr")

from hierfed.integrations import flower_grid

pytestmark = pytest.mark.backend_free  # reaches no kernel: runs in the cpp run only


class ScriptedGrid:
    """Replies to message i become pullable ``delays[i]`` seconds after the push, once each."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.pulls = 0
        self.pushed_at = 0.0
        self.delivered: set[str] = set()

    def push_messages(self, messages: Any) -> list[str]:
        self.pushed_at = time.monotonic()
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, ids: Any) -> list[Any]:
        self.pulls += 1
        now = time.monotonic() - self.pushed_at
        ready = [
            f"m{i}"
            for i, d in enumerate(self.delays)
            if f"m{i}" in set(ids) and f"m{i}" not in self.delivered and now >= d
        ]
        self.delivered.update(ready)
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=m)) for m in ready]


def _ids(replies: list[Any]) -> list[str]:
    return [r.metadata.reply_to_message_id for r in replies]


def test_every_reply_arrives_once_and_soon_after_the_last_is_in() -> None:
    grid = ScriptedGrid([0.0, 0.3, 0.15])
    started = time.monotonic()
    replies = flower_grid.send_and_receive(grid, ["a", "b", "c"], timeout=30.0)  # type: ignore[arg-type]
    assert sorted(_ids(replies)) == ["m0", "m1", "m2"]
    assert _ids(replies)[0] == "m0"  # arrival order
    assert time.monotonic() - started >= 0.3
    # pulled again and again while waiting (Flower's own loop sleeps 3 s after each pull)
    assert grid.pulls >= 3


def test_a_missing_reply_ends_at_the_timeout_with_the_others() -> None:
    grid = ScriptedGrid([0.0, 1e9])
    started = time.monotonic()
    replies = flower_grid.send_and_receive(grid, ["a", "b"], timeout=0.5, interval=0.05)  # type: ignore[arg-type]
    assert _ids(replies) == ["m0"]
    assert time.monotonic() - started >= 0.5
    assert grid.pulls >= 5


def test_nothing_to_send_returns_at_once() -> None:
    grid = ScriptedGrid([])
    assert flower_grid.send_and_receive(grid, [], timeout=10.0) == []  # type: ignore[arg-type]
    assert grid.pulls == 0
