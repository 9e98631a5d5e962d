"""Shared fixtures: one run per available backend, a seeded generator, thread-count restore.

Tests whose outcome cannot depend on the run's backend (``ONCE``) run in the cpp run only (in
every run where the compiled core is absent); the sanitizer run leaves the backend-free ones
out (``-m "not backend_free"``). tests/backend_probe.py measures that they qualify.
"""

from __future__ import annotations

import gc
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import backend_probe
import numpy as np
import pytest

import hierfed
from hierfed import _backend

# HIERFED_BACKEND=name runs the suite on that backend alone (CI runs it once per backend);
# unset, every available backend is covered.
_FORCED = os.environ.get("HIERFED_BACKEND", "").strip().lower()
BACKENDS = (_FORCED,) if _FORCED else _backend.available_backends()
pytest_plugins = ["pytester"]  # tests/test_backend_probe.py runs this conftest on its tests


def pytest_report_header(config: pytest.Config) -> str:
    """Show which backends the run covers and which one is the default."""
    return f"hierfed backends: available {', '.join(BACKENDS)}; default {hierfed.backend()}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each available backend, active for the duration of the test."""
    with _backend.using(request.param):
        yield request.param


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed, so failures reproduce."""
    return np.random.default_rng(20240611)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """Put the kernel thread count back after a test that changes it."""
    saved = hierfed.get_num_threads()
    yield
    hierfed.set_num_threads(saved)


# Test modules whose outcome cannot depend on the run's backend, by measurement (see
# tests/backend_probe.py; a test may carry either mark itself instead): backend_free ones reach
# no kernel, own_backends ones choose the backends they test. The probe fails any of their
# tests that reaches what its kind may not.
ONCE = {
    "backend_free": frozenset(
        {
            "test_basket.py",
            "test_docs_links.py",
            "test_gossip.py",
            "test_integrations_layout.py",
            "test_privacy_accountant.py",
            "test_privacy_calibration.py",
            "test_simulation_data.py",
        }
    ),
    "own_backends": frozenset(
        {
            "test_distance_kernels.py",  # the fast backends' kernel modules against numpy's
            "test_import_graph.py",  # names the kernel modules, imports none
            "test_kernel_layout.py",
            "test_privacy_simd_builds.py",  # children that import _core by name
            "test_simd_builds.py",
            "test_tile_merge.py",  # children that import _core by name
        }
    ),
}
# Where they run: the cpp run, or every run on a machine without the compiled core.
_RUN_ONCE = _FORCED in ("", "cpp") or importlib.util.find_spec("hierfed._core") is None
if _RUN_ONCE:
    backend_probe.install()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``backend_free`` and ``own_backends`` marks."""
    config.addinivalue_line("markers", "backend_free: reaches no kernel; runs in the cpp run only")
    config.addinivalue_line(
        "markers", "own_backends: chooses the backends it tests; runs in the cpp run only"
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the imports and the collection built (numba, Flower, torch, the items):
    Python's full collections then walk only what the tests make, not those millions."""
    gc.collect()
    gc.freeze()


def _kind(item: pytest.Item) -> str | None:
    for kind, names in ONCE.items():
        if item.path.name in names or item.get_closest_marker(kind) is not None:
            return kind
    return None


@pytest.hookimpl(tryfirst=True)  # before -m reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of ``ONCE``; leave them out of the numba and numpy runs."""
    once = [item for item in items if _kind(item)]
    for item in once:
        item.add_marker(getattr(pytest.mark, str(_kind(item))))
    if not _RUN_ONCE:
        config.hook.pytest_deselected(items=once)
        items[:] = [item for item in items if not _kind(item)]


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Count afresh before a module is imported."""
    if isinstance(collector, pytest.Module):
        backend_probe.take()


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Fail the collection of a module of ``ONCE`` whose import reached what it may not."""
    if not report.nodeid.endswith(".py") or not report.passed:
        return
    name = Path(report.nodeid).name
    seen = backend_probe.take()
    for kind, names in ONCE.items():
        if name in names and (bad := backend_probe.violations(kind, seen)):
            report.outcome = "failed"
            report.longrepr = f"{kind} {name} reached {bad} on import"


def _uses_backend_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get("backend", ()) if info is not None else ()
    return any(getattr(d.func, "__module__", None) == __name__ for d in defs)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Count afresh; refuse a test of ``ONCE`` whose module names what its kind may not."""
    backend_probe.take()
    if kind := _kind(item):
        names = list(backend_probe.source_names(kind, item.path))
        if _uses_backend_fixture(item):
            names.append("the backend fixture")
        if names:
            pytest.fail(f"{kind} {item.path.name} names {', '.join(names)}", pytrace=False)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Fail a test of ``ONCE`` that reached what its kind may not (set-up to teardown)."""
    seen = backend_probe.take()
    if (kind := _kind(item)) and (bad := backend_probe.violations(kind, seen)):
        pytest.fail(
            f"{kind} test reached {bad}: its outcome may depend on the run's backend (drop "
            f"{item.path.name} from ONCE[{kind!r}] or its mark)",
            pytrace=False,
        )
