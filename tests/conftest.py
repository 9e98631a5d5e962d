"""Shared fixtures: one run per available backend, a seeded generator, thread-count restore."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

import hierfed
from hierfed import _backend

# HIERFED_BACKEND=name runs the suite on that backend alone (CI runs it once per backend);
# unset, every available backend is covered.
_FORCED = os.environ.get("HIERFED_BACKEND", "").strip().lower()
BACKENDS = (_FORCED,) if _FORCED else _backend.available_backends()


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
