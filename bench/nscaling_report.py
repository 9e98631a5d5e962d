"""The n-scaling table of the distance rules from ``pytest --benchmark-json`` output.

    PYTHONPATH=python python -m bench.nscaling_report nscaling.json [--stat min|median]

One row per (n, d, dtype) of ``bench/test_nscaling_distances.py``: the floor ``X @ X.T`` in
ms, each rule's time on each backend as a ratio to that floor (same group, same run), the
numba twin's time over the C++ one, and the largest peak extra memory of the C++ entries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.peers import DISTANCE_OPS, GRAM_FLOOR, dlabel
from bench.report import ms, table

PREFIX = "nscaling "


def rows(raw: dict[str, Any], stat: str) -> list[list[str]]:
    """The table's rows, float32 first, by n."""
    found: dict[tuple[str, int, int], dict[tuple[str, str], dict[str, Any]]] = {}
    for b in raw["benchmarks"]:
        if not (b.get("group") or "").startswith(PREFIX):
            continue
        e = b["extra_info"]
        found.setdefault((e["dtype"], e["n"], e["d"]), {})[(e["op"], e["impl"])] = b
    out = []
    for dtype, n, d in sorted(found):
        g = found[(dtype, n, d)]

        def t(op: str, impl: str, g: dict[tuple[str, str], dict[str, Any]] = g) -> float | None:
            b = g.get((op, impl))
            return None if b is None else float(b["stats"][stat])

        row = [str(n), dlabel(d), dtype]
        floor = t("pairwise_sq_distances", GRAM_FLOOR)
        row.append(ms(floor))
        pct = []
        for op in DISTANCE_OPS:
            cpp, numba = t(op, "hierfed-cpp"), t(op, "hierfed-numba")
            ref = t(op, GRAM_FLOOR)
            row.append(f"{cpp / ref:.2f}x" if cpp and ref else "-")
            row.append(f"{numba / cpp:.2f}x" if cpp and numba else "-")
            b = g.get((op, "hierfed-cpp"))
            if b and "peak_extra_pct" in b["extra_info"]:
                pct.append(float(b["extra_info"]["peak_extra_pct"]))
        row.append(f"{max(pct):.1f}%" if pct else "-")
        loads = [float(b["extra_info"].get("load1", 0.0)) for b in g.values()]
        row.append(f"{min(loads):.1f}-{max(loads):.1f}")
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the markdown table."""
    p = argparse.ArgumentParser(prog="python -m bench.nscaling_report")
    p.add_argument("results", type=Path)
    p.add_argument("--stat", default="min", choices=("min", "median"))
    args = p.parse_args(argv)
    raw = json.loads(args.results.read_text())
    header = ["n", "d", "dtype", f"{GRAM_FLOOR} ms"]
    for op in ("distances", "krum", "bulyan"):
        header += [f"{op} cpp / {GRAM_FLOOR}", f"{op} numba / cpp"]
    header += ["peak extra (cpp, % of input)", "load1"]
    print(table(header, rows(raw, args.stat), right_from=3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
