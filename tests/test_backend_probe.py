"""The backend probe (tests/backend_probe.py) fails a once-only test that reaches the run's backend.

The suite's conftest runs on tests of its own here (pytester), in a cpp run and a numpy run;
this module runs in the cpp run only (its outcome does not depend on the run's backend).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hierfed._core") is None
    or os.environ.get("HIERFED_BACKEND", "cpp") != "cpp",
    reason="checks the cpp run's probe; runs in the cpp run",
)

_CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")
_FREE = """
import subprocess
import sys

import numpy as np
import pytest

import hierfed

pytestmark = pytest.mark.backend_free


def test_pure():
    assert sorted([3, 1, 2]) == [1, 2, 3]


def test_kernel():
    hierfed.median(np.ones((3, 4), np.float32))


def test_child_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_fixture(backend):
    pass
"""
_NAMES = """
import pytest


@pytest.mark.backend_free
def test_names():
    import hierfed._core
"""
_OWN = """
import os
import subprocess
import sys

import numpy as np
import pytest

import hierfed
from hierfed import _backend

pytestmark = pytest.mark.own_backends


def test_explicit_backend():
    with _backend.using("numpy"):
        hierfed.median(np.ones((3, 4), np.float32))


def test_told_child():
    env = dict(os.environ, HIERFED_BACKEND="numpy")
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)


def test_child_without_backend():
    env = {k: v for k, v in os.environ.items() if k != "HIERFED_BACKEND"}
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)


def test_runs_backend():
    hierfed.median(np.ones((3, 4), np.float32))


def test_inheriting_child():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, backend: str):
    if backend:
        monkeypatch.setenv("HIERFED_BACKEND", backend)
    else:
        monkeypatch.delenv("HIERFED_BACKEND", raising=False)
    pytester.makeconftest(_CONFTEST)
    pytester.makepyfile(test_free=_FREE, test_names=_NAMES, test_own=_OWN)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider")


def test_probe_fails_each_way_of_reaching_the_backend(pytester, monkeypatch):
    """In the cpp run a backend-free test passes only if it reaches nothing of the backend."""
    result = _run(pytester, monkeypatch, "cpp")
    # A test that reaches what it may not passes, then fails at teardown (a pass, an error).
    result.assert_outcomes(passed=8, errors=6)
    result.stdout.re_match_lines_random(
        [
            r"_+ ERROR at teardown of test_kernel _+",
            r"backend_free test reached _backend.kernels\(\) of the run's backend x1: .*",
            r"_+ ERROR at teardown of test_child_process _+",
            r"backend_free test reached a child process inheriting HIERFED_BACKEND x1: .*",
            r"_+ ERROR at setup of test_fixture\[cpp\] _+",
            r"backend_free test_free.py names the backend fixture",
            r"_+ ERROR at setup of test_names _+",
            r"backend_free test_names.py names _core",
            r"_+ ERROR at teardown of test_runs_backend _+",
            r"own_backends test reached _backend.kernels\(\) of the run's backend x1: .*",
            r"_+ ERROR at teardown of test_inheriting_child _+",
            r"own_backends test reached a child process inheriting HIERFED_BACKEND x1: .*",
        ]
    )
    errors = result.stdout.str().split("short test summary")[-1]
    for fine in ("test_pure", "test_explicit_backend", "test_told_child", "test_child_without"):
        assert fine not in errors


def test_probe_without_a_forced_backend(pytester, monkeypatch):
    """With HIERFED_BACKEND unset a child given none picks the default, as the run did: fine;
    a child handed the whole environment still counts as inheriting."""
    result = _run(pytester, monkeypatch, "")
    result.assert_outcomes(passed=8, errors=8)  # test_fixture errs once per backend here
    errors = result.stdout.str().split("short test summary")[-1]
    assert "test_inheriting_child" in errors and "test_child_without_backend" not in errors


def test_backend_free_tests_leave_the_numpy_run(pytester, monkeypatch):
    """With the compiled core built, the numba and numpy runs leave backend-free tests out."""
    _run(pytester, monkeypatch, "numpy").assert_outcomes(deselected=10)
