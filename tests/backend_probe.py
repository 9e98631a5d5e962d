"""Which tests depend on the run's backend: the probe behind the suite's once-only tests.

CI runs the suite once per backend (``HIERFED_BACKEND``). A test whose outcome cannot depend on
that choice gives the same result in every run, so it runs in the cpp run only. Two kinds:

- ``backend_free``: reaches no kernel at all (the sanitizer run, which only watches the
  compiled core, leaves these out too);
- ``own_backends``: picks the backends it tests itself (a kernel module by name,
  ``_backend.using(name)`` over ``available_backends()``, a child process told
  ``HIERFED_BACKEND``), never the run's.

Which kind a test is, is measured, not assumed: while a marked test sets up, runs and tears
down, the probe counts every way the backend can enter it, and a count its kind forbids fails
the test, naming what was reached. The ways are ``_backend.kernels()`` (every public function
reaches its kernels through it; "the run's" outside any ``using`` block), ``_backend.using()``
(the ``backend`` fixture, explicit loops), ``backend()`` (the name, which the CLI prints) and
child processes ("inheriting" when their ``HIERFED_BACKEND`` is the run's). A marked module's
source is read too: what it must not name is in ``FORBIDDEN``.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing.util
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import hierfed
from hierfed import _backend

RUNS = "_backend.kernels() of the run's backend"
USING = "_backend.using()"
NAME = "backend()"
INHERITS = "a child process inheriting HIERFED_BACKEND"
CHILD = "a child process"

# What each kind of test may not reach, and what its source may not name.
FORBIDDEN = {
    "backend_free": (
        {RUNS, USING, NAME, INHERITS, CHILD},
        ("_core", "_kernels", "_backend", "HIERFED_BACKEND", "conftest", "backend()"),
    ),
    "own_backends": (
        {RUNS, NAME, INHERITS},
        ('environ.get("HIERFED_BACKEND"', 'environ["HIERFED_BACKEND"]', "conftest", "_active"),
    ),
}

reached: Counter[str] = Counter()
_depth = [0]  # open using() blocks


def _count(func: Callable[..., Any], what: Callable[..., str]) -> Callable[..., Any]:
    @functools.wraps(func)
    def probe(*args: Any, **kwargs: Any) -> Any:
        reached[what(*args, **kwargs)] += 1
        return func(*args, **kwargs)

    return probe


def _child(env: Any) -> str:
    # A child given an environment without HIERFED_BACKEND picks the default backend whatever
    # the run forced; it inherits the run's choice only when it is handed the run's value.
    run = os.environ.get("HIERFED_BACKEND")
    given = None if env is None else env.get("HIERFED_BACKEND", env.get(b"HIERFED_BACKEND"))
    inherited = env is None or (given is not None and given == run)
    return INHERITS if inherited else CHILD


def install() -> None:
    """Count the backend's entry points and child processes from now on (idempotent)."""
    if getattr(_backend.kernels, "__wrapped__", None) is not None:
        return
    using = _backend.using

    @functools.wraps(using)
    @contextlib.contextmanager
    def counted_using(name: str) -> Iterator[ModuleType]:
        reached[USING] += 1
        with using(name) as module:
            _depth[0] += 1
            try:
                yield module
            finally:
                _depth[0] -= 1

    kernels = _backend.kernels
    _backend.kernels = _count(kernels, lambda: RUNS if _depth[0] == 0 else "kernels in using()")
    _backend.using = counted_using
    _backend.backend = _count(_backend.backend, lambda: NAME)
    hierfed.backend = _backend.backend
    popen = subprocess.Popen
    popen._execute_child = _count(  # type: ignore[attr-defined]
        popen._execute_child,  # type: ignore[attr-defined]
        lambda self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, *_: _child(env),
    )
    multiprocessing.util.spawnv_passfds = _count(
        multiprocessing.util.spawnv_passfds, lambda *_: INHERITS
    )
    os.fork = _count(os.fork, lambda: INHERITS)


def take() -> Counter[str]:
    """What was reached since the last call, and start counting afresh."""
    seen = reached.copy()
    reached.clear()
    return seen


def violations(kind: str, seen: Counter[str]) -> str:
    """What of ``seen`` a test of ``kind`` may not reach ("" for nothing)."""
    forbidden = FORBIDDEN[kind][0]
    return ", ".join(f"{what} x{n}" for what, n in sorted(seen.items()) if what in forbidden)


@functools.cache
def source_names(kind: str, path: Path) -> tuple[str, ...]:
    """The names a test module of ``kind`` holds but must not."""
    text = path.read_text(encoding="utf-8")
    return tuple(name for name in FORBIDDEN[kind][1] if name in text)
