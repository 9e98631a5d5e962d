"""Turn ``pytest --benchmark-json`` output of this suite into the markdown tables of the README.

    PYTHONPATH=python python -m bench.report results.json [--stat min|median]

Ratios use one statistic of each entry's rounds (default ``min``: the least disturbed by other
load on a 2-core machine); both min and median are shown in the detail tables.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.peers import ALL_OPS, DISTANCE_OPS, FLOOR, GRAM_FLOOR, OPS, dlabel

HEADLINE = {"n": 50, "d": 10**6, "dtype": "float32"}
SWEEP = {"n": 20, "dtype": "float32", "ds": (10**5, 10**6, 10**7)}
HIERFED = ("hierfed-cpp", "hierfed-numba")
TARGETS = {"trimmed_mean": 2.5, "median": 3.0}  # hierfed-cpp time <= this x np.mean
# hierfed-cpp time <= this x X @ X.T at n=50, d=1e6 (float32), and <= twice it at n=200, d=1e5
DISTANCE_TARGETS = {"pairwise_sq_distances": 1.5, "krum": 1.6, "bulyan": 2.5}
DISTANCE_MEMORY_PCT = 10.0
LIST_SLACK = 1.10  # "as fast as stacked": list input within 10% of the stacked array
LIST_MEMORY_PCT = 10.0
LINEAR_TOL = 0.30

Group = dict[str, dict[str, Any]]  # impl name -> benchmark entry


def load(path: Path) -> tuple[dict[str, Any], dict[tuple[str, int, int, str], Group]]:
    """The run's metadata and its entries by (op, n, d, dtype), then by implementation."""
    raw = json.loads(path.read_text())
    groups: dict[tuple[str, int, int, str], Group] = {}
    for b in raw["benchmarks"]:
        e = b["extra_info"]
        if e.get("op") not in ALL_OPS:  # another suite's entry (bench/test_privacy.py)
            continue
        groups.setdefault((e["op"], e["n"], e["d"], e["dtype"]), {})[e["impl"]] = b
    order = sorted(groups, key=lambda k: (ALL_OPS.index(k[0]), k[3], k[1], k[2]))
    return raw, {k: groups[k] for k in order}


def seconds(group: Group, impl: str, stat: str) -> float | None:
    """Time of ``impl`` in ``group``, or None when it did not run."""
    b = group.get(impl)
    return None if b is None else float(b["stats"][stat])


def ms(t: float | None) -> str:
    """Milliseconds with three significant digits."""
    if t is None:
        return "-"
    v = t * 1e3
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as ``1.23x``."""
    if a is None or b is None:
        return "-"
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x" if r >= 100 else f"{r:.1f}x"


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], right_from: int = 1) -> str:
    """A markdown table; columns from ``right_from`` on are right-aligned."""
    head = list(header)
    align = ["---" if i < right_from else "---:" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def peers_of(group: Group) -> list[str]:
    """The peer implementations of a group, in run order."""
    return [name for name, b in group.items() if b["extra_info"]["kind"] == "peer"]


def memory(b: dict[str, Any] | None) -> tuple[str, str]:
    """Peak extra memory (MB, % of input) recorded on an entry."""
    e = {} if b is None else b["extra_info"]
    if "peak_extra_mb" not in e:
        return "-", "-"
    return f"{e['peak_extra_mb']:.1f}", f"{e['peak_extra_pct']:.1f}%"


def floor_of(group: Group) -> str:
    """The floor entry's name of a group (``np.mean``, or ``X @ X.T`` for distances)."""
    return next((k for k, b in group.items() if b["extra_info"]["kind"] == "floor"), FLOOR)


def detail(key: tuple[str, int, int, str], group: Group, stat: str) -> str:
    """Every entry of one group: times, ratios to the floor and to hierfed, memory."""
    floor_name = floor_of(group)
    floor = seconds(group, floor_name, stat)
    base = [h for h in HIERFED if h in group]
    header = ["implementation", "min ms", "median ms", f"x {floor_name}"]
    header += [f"/ {h}" for h in base] + ["peak extra MB", "% of input"]
    rows = []
    for name in group:
        t = seconds(group, name, stat)
        rows.append(
            [name, ms(seconds(group, name, "min")), ms(seconds(group, name, "median"))]
            + [ratio(t, floor)]
            + [ratio(t, seconds(group, h, stat)) for h in base]
            + list(memory(group[name]))
        )
    op, n, d, dtype = key
    return f"**{op}, n={n}, d={dlabel(d)}, {dtype}**\n\n" + table(header, rows)


def summary(groups: dict[tuple[str, int, int, str], Group], stat: str) -> str:
    """One row per group: floor, hierfed's backends, the fastest peer and the speed-ups."""
    rows = []
    for (op, n, d, dtype), group in groups.items():
        floor = seconds(group, floor_of(group), stat)
        peer_times = {p: seconds(group, p, stat) for p in peers_of(group)}
        best = min(peer_times, key=lambda p: peer_times[p] or math.inf, default=None)
        tb = peer_times.get(best) if best else None
        row: list[Any] = [op, n, dlabel(d), dtype, ms(floor)]
        for h in HIERFED:
            th = seconds(group, h, stat)
            row += [f"{ms(th)} ({ratio(th, floor)})", ratio(tb, th)]
        row.append(f"{best} {ms(tb)}" if best else "-")
        rows.append(row)
    header = ["op", "n", "d", "dtype", "floor ms"]
    for h in HIERFED:
        header += [f"{h} ms (x floor)", f"fastest peer / {h}"]
    header.append("fastest peer ms")
    return table(header, rows, right_from=1)


def _find(groups: dict[tuple[str, int, int, str], Group], op: str, **size: Any) -> Group:
    key = (op, size["n"], size["d"], size["dtype"])
    return groups.get(key, {})


def targets(groups: dict[tuple[str, int, int, str], Group], stat: str) -> str:
    """The project's performance targets, each with its measured figure and verdict."""

    rows = []
    for op, limit in TARGETS.items():
        g = _find(groups, op, **HEADLINE)
        th, tf = seconds(g, "hierfed-cpp", stat), seconds(g, FLOOR, stat)
        ok = None if th is None or tf is None else th <= limit * tf
        rows.append([f"hierfed-cpp {op} <= {limit}x np.mean", ratio(th, tf), verdict(ok)])
    for op in OPS:
        g = _find(groups, op, **HEADLINE)
        tn = seconds(g, "hierfed-numba", stat)
        pt = {p: seconds(g, p, stat) for p in peers_of(g)}
        pt = {p: t for p, t in pt.items() if t is not None}
        if tn is None or not pt:
            rows.append([f"hierfed-numba {op} faster than every peer", "-", verdict(None)])
            continue
        best = min(pt, key=lambda p: pt[p])
        rows.append(
            [
                f"hierfed-numba {op} faster than every peer",
                f"fastest peer {best}: {ratio(pt[best], tn)} slower",
                verdict(tn < pt[best]),
            ]
        )
    for op in OPS:
        g = _find(groups, op, **HEADLINE)
        tl, ta = seconds(g, "hierfed-cpp-list", stat), seconds(g, "hierfed-cpp", stat)
        mb, pct = memory(g.get("hierfed-cpp-list"))
        e = g["hierfed-cpp-list"]["extra_info"] if "hierfed-cpp-list" in g else {}
        ok = None
        if tl is not None and ta is not None and "peak_extra_pct" in e:
            ok = tl <= LIST_SLACK * ta and e["peak_extra_pct"] <= LIST_MEMORY_PCT
        rows.append(
            [
                f"hierfed-cpp {op}: list of 1-D arrays as fast as stacked (<= {LIST_SLACK}x), "
                f"peak extra <= {LIST_MEMORY_PCT:.0f}% of input",
                f"{ratio(tl, ta)} of stacked; {mb} MB = {pct}",
                verdict(ok),
            ]
        )
    for h in HIERFED:
        for op in ("trimmed_mean", "median"):
            per = _per_coordinate(groups, op, h, stat)
            ok = None
            if len(per) == len(SWEEP["ds"]):
                mid = sorted(per.values())[len(per) // 2]
                ok = all(abs(v / mid - 1) <= LINEAR_TOL for v in per.values())
            shown = ", ".join(f"{v:.2f}" for v in per.values()) or "-"
            rows.append(
                [
                    f"{h} {op} linear in d (1e5..1e7, within ±{LINEAR_TOL:.0%})",
                    f"ns/coordinate: {shown}",
                    verdict(ok),
                ]
            )
    size = f"n={HEADLINE['n']}, d={dlabel(HEADLINE['d'])}, {HEADLINE['dtype']}"
    return f"Targets ({size}; d sweep at n={SWEEP['n']}):\n\n" + table(
        ["target", "measured", "verdict"], rows, right_from=3
    )


def distance_targets(groups: dict[tuple[str, int, int, str], Group], stat: str) -> str:
    """The distance rules' targets: time and peak memory against ``X @ X.T``."""
    rows = []
    for (n, d), slack in (((50, 10**6), 1.0), ((200, 10**5), 2.0)):
        for op, limit in DISTANCE_TARGETS.items():
            g = _find(groups, op, n=n, d=d, dtype="float32")
            th, tf = seconds(g, "hierfed-cpp", stat), seconds(g, GRAM_FLOOR, stat)
            ok = None if th is None or tf is None else th <= slack * limit * tf
            mb, pct = memory(g.get("hierfed-cpp"))
            e = g["hierfed-cpp"]["extra_info"] if "hierfed-cpp" in g else {}
            if ok is not None and "peak_extra_pct" in e:
                ok = ok and e["peak_extra_pct"] <= slack * DISTANCE_MEMORY_PCT
            speedups = ", ".join(
                f"{p} {ratio(seconds(g, p, stat), th)}" for p in peers_of(g) if p in g
            )
            rows.append(
                [
                    f"hierfed-cpp {op} n={n} d={dlabel(d)} <= {slack * limit:g}x {GRAM_FLOOR}, "
                    f"peak extra <= {slack * DISTANCE_MEMORY_PCT:g}% of input",
                    f"{ratio(th, tf)}; {mb} MB = {pct}; peers slower by: {speedups or '-'}",
                    verdict(ok),
                ]
            )
    return "Distance targets (float32, 2 threads):\n\n" + table(
        ["target", "measured", "verdict"], rows, right_from=3
    )


def verdict(ok: bool | None) -> str:
    """A target's verdict."""
    return "n/a" if ok is None else "**holds**" if ok else "**fails**"


def _per_coordinate(
    groups: dict[tuple[str, int, int, str], Group], op: str, impl: str, stat: str
) -> dict[int, float]:
    out = {}
    for d in SWEEP["ds"]:
        t = seconds(_find(groups, op, n=SWEEP["n"], d=d, dtype=SWEEP["dtype"]), impl, stat)
        if t is not None:
            out[d] = t / d * 1e9
    return out


def linearity(groups: dict[tuple[str, int, int, str], Group], stat: str) -> str:
    """Time per coordinate along the d sweep (and its ratio to the floor at the same d)."""
    rows = []
    for op in ("trimmed_mean", "median"):
        floor = _per_coordinate(groups, op, FLOOR, stat)
        for impl in (FLOOR, *HIERFED):
            per = _per_coordinate(groups, op, impl, stat)
            if not per:
                continue
            cells = [
                f"{per[d]:.2f} ({per[d] / floor[d]:.2f}x)" if d in per and d in floor else "-"
                for d in SWEEP["ds"]
            ]
            spread = max(per.values()) / min(per.values())
            rows.append([op, impl, *cells, f"{spread:.2f}"])
    header = ["op", "implementation"] + [f"ns/coord (x floor) d={dlabel(d)}" for d in SWEEP["ds"]]
    return table([*header, "max/min ns/coord"], rows, right_from=2)


def render(path: Path, stat: str = "min") -> str:
    """The full markdown report of one results file."""
    raw, groups = load(path)
    mi = raw["machine_info"]
    hf = mi.get("hierfed", {})
    commit = raw.get("commit_info", {})
    loads = [b["extra_info"]["load1"] for b in raw["benchmarks"] if "load1" in b["extra_info"]]
    load_range = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
    parts = [
        f"Run {raw['datetime']}; {mi.get('cpu', {}).get('brand_raw', '?')}; "
        f"Python {mi.get('python_version')}; numpy {hf.get('numpy', '?')}; "
        f"hierfed backends available: {', '.join(hf.get('available_backends', []))}; "
        f"threads {hf.get('threads')}; commit {commit.get('id', '?')[:10]}"
        f"{' (dirty tree)' if commit.get('dirty') else ''}; 1-minute load average during the "
        f"run {load_range} on {mi.get('cpu', {}).get('count', '?')} cores; "
        f"statistic for ratios: {stat}.",
        targets(groups, stat),
    ]
    if any(k[0] in DISTANCE_OPS for k in groups):
        parts.append(distance_targets(groups, stat))
    for key, group in groups.items():
        if any("peak_extra_mb" in b["extra_info"] for b in group.values()):
            parts.append(detail(key, group, stat))
    parts.append(
        "All groups (x floor = time / the group's floor, np.mean or X @ X.T; "
        "fastest peer / hierfed = speed-up):"
    )
    parts.append(summary(groups, stat))
    parts.append(f"Linearity (n={SWEEP['n']}, {SWEEP['dtype']}):")
    parts.append(linearity(groups, stat))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the report of a ``--benchmark-json`` file."""
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    p.add_argument("results", type=Path, help="file written by pytest --benchmark-json")
    p.add_argument("--stat", default="min", choices=("min", "median", "mean"))
    args = p.parse_args(argv)
    sys.stdout.write(render(args.results, args.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
