"""Run a function in a child made by ``os.fork()`` and bring back its result."""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable


def in_forked_child(work: Callable[[], object]) -> object:
    """``work()`` run in a child made by ``os.fork()``; its pickled result comes back by pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            signal.alarm(20)  # a child stuck on a lock dies (and the test fails) rather than hangs
            os.close(read)
            with os.fdopen(write, "wb") as out:
                pickle.dump(work(), out)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the child failed"
    return pickle.loads(data)
