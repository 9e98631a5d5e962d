"""CPU time per call of the issue-20 rules against ByzFL's, one thread: for a busy machine.

The same inputs, parameters and entries as ``bench/test_rules_byzfl.py`` (which times wall
clock with pytest-benchmark); here each entry is timed by ``time.process_time`` over a few
calls after a warm-up, hierfed on one thread, so that other processes' load does not enter
the figure (cache and memory-bandwidth contention still do). Prints one markdown row per
group as it completes::

    PYTHONPATH=. python bench/rules_byzfl_cpu.py [--d 1000 100000] [--n 10 50 200] [--ops clip]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import hierfed
from bench.test_rules_byzfl import BYZFL_MDA_MAX_N, OPS, byzfl_call, data, f_of, hierfed_call

TARGET_S = 0.5  # CPU seconds per entry, at least one call


def cpu_per_call(call: Callable[[], Any]) -> float:
    """Least CPU time of one call over about ``TARGET_S`` seconds (a warm-up first)."""
    start = time.process_time()
    call()
    first = time.process_time() - start
    best = first
    for _ in range(max(1, min(20, int(TARGET_S / max(first, 1e-6))))):
        start = time.process_time()
        call()
        best = min(best, time.process_time() - start)
    return best


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--d", type=int, nargs="+", default=[10**3, 10**5])
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    args = parser.parse_args()
    hierfed.set_num_threads(1)
    print("| op | n | d | np.mean | hierfed cpp | ByzFL | ByzFL / hierfed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for d in args.d:
        for n in args.n:
            for op in args.ops:
                x, f = data(n, d), f_of(op, n)
                floor = cpu_per_call(lambda x=x: np.mean(x, axis=0))
                ours = cpu_per_call(hierfed_call(op, x, f))
                if op == "mda" and n > BYZFL_MDA_MAX_N:  # as the pytest-benchmark suite
                    theirs_s, ratio = "skipped", ""
                else:
                    theirs = cpu_per_call(byzfl_call(op, x, f))
                    theirs_s, ratio = fmt(theirs), f"{theirs / ours:.2f}x"
                print(
                    f"| {op} | {n} | {d:.0e} | {fmt(floor)} | {fmt(ours)} | {theirs_s} | {ratio} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
