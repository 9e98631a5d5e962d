"""Run a check in a child process whose compiled core is capped at one instruction set.

The tests of every instruction-set build (``test_simd_builds.py``, ``test_privacy_simd_builds.py``,
``test_tile_merge.py``) share this: ``HIERFED_SIMD`` caps the core's dispatch in the child,
which imports ``hierfed._core`` by name whatever the run's backend.
"""

from __future__ import annotations

import os
import subprocess
import sys

ISAS = ["avx512", "avx2", "baseline"]
ORDER = ["baseline", "avx2", "avx512"]


def run_capped(code: str, isa: str) -> list[str]:
    """The words the child printed, its first the build it used (at most ``isa``)."""
    env = {**os.environ, "HIERFED_SIMD": isa}
    env.pop("HIERFED_BACKEND", None)  # the child reads _core itself, whatever the run
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert ORDER.index(words[0]) <= ORDER.index(isa), words[0]
    return words
