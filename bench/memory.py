"""Peak extra memory of one call, each (implementation, size) in a fresh subprocess.

The child builds the input, resets the kernel's resident-set high-water mark
(``/proc/self/clear_refs`` = 5), reads VmRSS, runs the call once and reads VmHWM:
extra = VmHWM - VmRSS before the call (output included). Linux only.

Run from the repository root::

    PYTHONPATH=python python -m bench.memory                 # n=50, d=1e6, float32, all ops
    PYTHONPATH=python python -m bench.memory --n 200 --dtype float64 --ops median

The timing suite also stores these figures in ``extra_info`` of its n=50, d=1e6 groups.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import peers

ROOT = Path(__file__).resolve().parent.parent
MB = 1e6


def enabled() -> bool:
    """Memory probes run unless ``HIERFED_BENCH_MEMORY=0``."""
    return os.environ.get("HIERFED_BENCH_MEMORY", "1").strip() != "0"


def _status_kb(*keys: str) -> dict[str, int]:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) for k in keys}


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one call in this process (run in a fresh subprocess)."""
    import hierfed

    hierfed.set_num_threads(peers.threads())
    cfg = peers.Config(
        spec["n"], spec["d"], spec["dtype"], ops=(spec["op"],), list_input=True, weighted_rules=True
    )
    impl = peers.find(spec["op"], cfg, spec["impl"])
    reason = impl.unavailable()
    if reason:
        return {"skipped": reason}
    peers.warm_up(spec["op"], impl, cfg)
    data = peers.Data(cfg)
    with impl.active():
        call = impl.make(data)
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kb("VmRSS")["VmRSS"]
        out = call()
        peak = _status_kb("VmHWM")["VmHWM"]
    del out
    extra = max(0, peak - before) * 1024
    return {
        "peak_extra_bytes": extra,
        "peak_extra_mb": round(extra / MB, 1),
        "peak_extra_pct": round(100 * extra / cfg.input_bytes, 1),
    }


def measure(cfg: peers.Config, op: str, impl: str, timeout: float = 900) -> dict[str, Any]:
    """Peak extra memory of ``impl`` computing ``op`` on ``cfg``'s input, in a subprocess."""
    import hierfed

    spec = {"n": cfg.n, "d": cfg.d, "dtype": cfg.dtype, "op": op, "impl": impl}
    hierfed_root = str(Path(hierfed.__file__).resolve().parent.parent)
    path = [str(ROOT), hierfed_root, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    """Print a markdown table of peak extra memory for every implementation of each op."""
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--d", type=float, default=1e6)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--ops", nargs="+", default=list(peers.OPS), choices=peers.ALL_OPS)
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    cfg = peers.Config(args.n, int(args.d), args.dtype, list_input=True)
    print(
        f"peak extra memory, {cfg.label}, input {cfg.input_bytes / MB:.0f} MB, "
        f"{peers.threads()} threads\n"
    )
    print("| op | implementation | peak extra MB | % of input |")
    print("|---|---|---:|---:|")
    rows = []
    for op in args.ops:
        for impl in peers.implementations(op, cfg):
            r = measure(cfg, op, impl.name)
            rows.append({"op": op, "impl": impl.name, **cfg.info(), **r})
            if "peak_extra_mb" in r:
                print(
                    f"| {op} | {impl.name} | {r['peak_extra_mb']:.1f} | "
                    f"{r['peak_extra_pct']:.1f} |",
                    flush=True,
                )
            else:
                print(
                    f"| {op} | {impl.name} | {r.get('skipped') or r.get('error')} | |", flush=True
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
