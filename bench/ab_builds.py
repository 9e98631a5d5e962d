"""Before/after timing of two (or more) builds of hierfed in the same minutes.

Each DIR holds a copy of a build's package (``cp -r python/hierfed DIR/`` and the built
``_core*.so`` into ``DIR/hierfed/``); the builds run in turn, ROUNDS times, each in a fresh
process with that DIR first on the path (the editable install's finder removed), and the
least time of each call is kept. Float32, n*d = 5e7, ``np.mean`` of the same input in the same
process as the ratio's base::

    NS=100,200,1000 THREADS=2 python bench/ab_builds.py 4 /tmp/before /tmp/after

``WHICH`` picks the rules (trimmed, median, w-trimmed, w-median; weights 0.9**s).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

CHILD = r"""
import os, sys, timeit, json
sys.meta_path = [f for f in sys.meta_path if "skbc" not in type(f).__module__]
import numpy as np, hierfed
hierfed.set_num_threads(int(os.environ.get("THREADS", "2")))
res = {}
for n in NS:
    d = int(5e7 // n)
    x = np.random.default_rng(0).standard_normal((n, d), dtype=np.float32)
    w = 0.9 ** np.random.default_rng(1).integers(0, 5, n).astype(np.float64)
    calls = {"np.mean": lambda: np.mean(x, axis=0),
             "trimmed": lambda: hierfed.trimmed_mean(x, trim_ratio=0.1),
             "median": lambda: hierfed.median(x),
             "w-trimmed": lambda: hierfed.trimmed_mean(x, trim_ratio=0.1, weights=w),
             "w-median": lambda: hierfed.median(x, weights=w)}
    for name, call in calls.items():
        if name in WHICH or name == "np.mean":
            call()
            res[f"{n} {name}"] = min(timeit.repeat(call, number=1, repeat=5)) * 1e3
print(json.dumps(res))
"""


def main() -> None:
    rounds, dirs = int(sys.argv[1]), sys.argv[2:]
    ns = [int(v) for v in os.environ.get("NS", "200").split(",")]
    which = os.environ.get("WHICH", "trimmed,median,w-trimmed,w-median").split(",")
    code = CHILD.replace("NS", repr(ns)).replace("WHICH", repr(which))
    best: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for _ in range(rounds):
        for d in dirs:
            env = {**os.environ, "PYTHONPATH": d}
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                cwd="/",
                check=False,
            )
            if out.returncode:
                sys.exit(out.stderr)
            for k, v in json.loads(out.stdout).items():
                best[d][k] = min(best[d].get(k, float("inf")), v)
    for k in best[dirs[0]]:
        n = k.split()[0]
        cells = (
            f"{best[d][k]:8.2f} ms ({best[d][k] / best[d][n + ' np.mean']:5.2f}x)" for d in dirs
        )
        print(f"{k:14s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
