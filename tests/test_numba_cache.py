"""numba's on-disk cache: a second process loads the compiled kernels instead of compiling them.

Runs once, in the numba backend's pass of the suite (two fresh processes with their own cache
directory: the first compiles and saves, the second must only load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import hierfed

pytestmark = pytest.mark.skipif(
    hierfed.backend() != "numba", reason="runs once, in the numba backend's pass"
)

# Two kernels: the pointer views and a parallel loop with a NamedTuple argument (mean), and a
# reference function compiled into a kernel (clipping's clip_factor). Compiling more would
# make the test slow without testing more of the cache.
PROBE = """
import json
import numpy as np
from hierfed._kernels.numba import _shared, clipping, coordinatewise

rows = [np.arange(300.0) + i for i in range(5)]
out = [np.empty(300)]
coordinatewise.mean([rows], out, None, 1)
clipping.l2_sq_norms([rows], np.empty(5), 1)
kernels = {
    "mean": coordinatewise._mean_kernel,
    "clip": clipping._clip_kernel,
}
print(json.dumps({
    "cache": _shared.CACHE,
    "stats": {name: [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
              for name, k in kernels.items()},
}))
"""


def _run(cache_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), HIERFED_BACKEND="numba")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path: Path) -> None:
    """The first process compiles (cache misses, no hits); the second only loads (no misses)."""
    first = _run(tmp_path)
    assert first["cache"] is True
    assert all(hits == 0 and misses > 0 for hits, misses in first["stats"].values()), first
    assert any(tmp_path.rglob("*.nbi")), "no cache index was written"
    second = _run(tmp_path)
    assert all(hits > 0 and misses == 0 for hits, misses in second["stats"].values()), second
