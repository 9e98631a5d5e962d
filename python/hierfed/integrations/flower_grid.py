"""One stage's round trip over a Flower Grid, pulled more often than Flower's own loop.

``Grid.send_and_receive`` of Flower's deployment runtime sleeps 3 s between pulls; a
multi-stage protocol (the private path runs five stages a round) then waits up to 3 s per
stage for replies that are already in. :func:`send_and_receive` is the same loop with a
short pause: push, pull until every message has its reply or ``timeout`` has passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

PULL_INTERVAL = 0.1
"""Seconds between two pulls of the replies."""


def send_and_receive(
    grid: Grid, messages: Iterable[Message], timeout: float, interval: float = PULL_INTERVAL
) -> list[Message]:
    """Push ``messages``, then pull their replies every ``interval`` s until each has one
    or ``timeout`` s have passed; the replies received, in arrival order."""
    waiting = set(grid.push_messages(messages))
    deadline = time.monotonic() + timeout
    replies: list[Message] = []
    while waiting:
        got = list(grid.pull_messages(waiting))
        replies.extend(got)
        waiting.difference_update(m.metadata.reply_to_message_id for m in got)
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return replies
