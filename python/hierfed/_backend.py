"""Backend selection: the compiled core, its numba twin, or the numpy reference.

The first importable of ``cpp -> numba -> numpy`` is used; ``HIERFED_BACKEND=cpp|numba|numpy``
forces one, and forcing one that cannot be imported raises ImportError saying how to fix it.
"""

from __future__ import annotations

import contextlib
import importlib
import operator
import os
from collections.abc import Iterator
from types import ModuleType

BACKENDS = ("cpp", "numba", "numpy")
_MODULES = {
    "cpp": "hierfed._core",
    "numba": "hierfed._kernels.numba",
    "numpy": "hierfed._kernels.numpy",
}
_FIXES = {
    "cpp": (
        "the compiled extension hierfed._core is missing: reinstall with a C++17 compiler "
        "(`HIERFED_REQUIRE_EXTENSION=1 pip install --force-reinstall --no-binary hierfed "
        "hierfed` shows why the build failed)"
    ),
    "numba": "numba is not installed: `pip install 'hierfed[numba]'`",
    "numpy": "numpy is not installed: `pip install numpy`",
}


def _load(name: str) -> ModuleType:
    """Import the kernel module of backend ``name`` or raise ImportError with the fix."""
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        raise ImportError(f"hierfed backend {name!r} is unavailable: {_FIXES[name]}") from exc


def available_backends() -> tuple[str, ...]:
    """The backends that import on this machine, fastest first."""
    found = []
    for name in BACKENDS:
        try:
            _load(name)
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def _choose() -> tuple[str, ModuleType]:
    forced = os.environ.get("HIERFED_BACKEND", "").strip().lower()
    if forced:
        if forced not in _MODULES:
            raise ImportError(
                f"HIERFED_BACKEND must be one of {', '.join(BACKENDS)}, got {forced!r}"
            )
        return forced, _load(forced)
    for name in BACKENDS:
        with contextlib.suppress(ImportError):
            return name, _load(name)
    raise ImportError(_FIXES["numpy"])  # pragma: no cover - numpy is a dependency


_active_name, _active = _choose()


def backend() -> str:
    """Name of the active backend: ``"cpp"``, ``"numba"`` or ``"numpy"``."""
    return _active_name


def kernels() -> ModuleType:
    """The kernel module of the active backend."""
    return _active


@contextlib.contextmanager
def using(name: str) -> Iterator[ModuleType]:
    """Make ``name`` the active backend inside a ``with`` block (tests and benchmarks)."""
    global _active_name, _active
    saved = _active_name, _active
    _active_name, _active = name, _load(name)
    try:
        yield _active
    finally:
        _active_name, _active = saved


def _default_threads() -> int:
    env = os.environ.get("HIERFED_NUM_THREADS", "").strip()
    if env:
        message = f"HIERFED_NUM_THREADS must be a positive integer, got {env!r}"
        try:
            value = int(env)
        except ValueError:
            raise ValueError(message) from None
        if value < 1:
            raise ValueError(message)
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_num_threads = _default_threads()


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels use (default: all cores, or HIERFED_NUM_THREADS)."""
    global _num_threads
    if isinstance(n, bool):
        raise TypeError("n must be an int, got bool")
    try:
        value = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an int, got {type(n).__name__}") from None
    if value < 1:
        raise ValueError(f"n must be >= 1, got {value}")
    _num_threads = value


def get_num_threads() -> int:
    """The number of threads the kernels use."""
    return _num_threads
