"""Run the fuzz harnesses: every target in its own process, with atheris or random bytes.

Examples
--------
``python fuzz/run.py --seconds 2``                  every target for about 2 s (CI's short run)
``python fuzz/run.py --runs 100000 --jobs 2``       the long run (fuzz/README.md)
``python fuzz/run.py --list``                       the target names
``python fuzz/run.py --replay crash-file aggregator:median``

``--engine atheris`` (the default when atheris imports) mutates the bytes with libFuzzer,
guided by the coverage of hierfed's Python code; ``--engine random`` feeds random bytes from a
seeded generator. A target fails on any exception other than an accepted ValueError/TypeError
and on any result that disagrees with the numpy reference; its input is then saved under
``--artifacts`` (default ``fuzz/artifacts``) and the run exits non-zero.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import faulthandler
import hashlib
import importlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIMEOUT = 120  # seconds one input may take before it counts as a hang
MODULES = ("aggregator", "privacy", "secagg")


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def targets(instrument: bool = False) -> dict[str, Callable[[Any], None]]:
    """Every target as ``module:name``."""
    sys.path.insert(0, str(HERE))
    found: dict[str, Callable[[Any], None]] = {}
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["hierfed"]):
            import hierfed  # noqa: F401
    for module in MODULES:
        mod = importlib.import_module(f"{module}_targets")
        found.update({f"{module}:{k}": v for k, v in mod.TARGETS.items()})
    return found


def _save(artifacts: Path, name: str, raw: bytes) -> Path:
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{name.replace(':', '-')}-{hashlib.sha1(raw).hexdigest()[:12]}.bin"
    path.write_bytes(raw)
    return path


def _random_input(rnd: random.Random) -> bytes:
    """Random bytes of one of a few lengths: the random engine's inputs, atheris's seeds."""
    return rnd.randbytes(rnd.choice((16, 64, 256, 1024, 4096)))


def _print_summary(name: str, done: int, start: float) -> None:
    """The child's last line: inputs run and the oracle's counts (``_compare.STATS``)."""
    from _compare import STATS

    checked = " ".join(f"{k}={v}" for k, v in STATS.items())
    elapsed = time.monotonic() - start
    print(f"RESULT {name} runs={done} failures=0 {checked} seconds={elapsed:.1f}", flush=True)


def child_random(name: str, runs: int, seconds: float, seed: int, artifacts: Path) -> int:
    """The random engine in this process: prints one summary line, returns the exit code."""
    from _data import Data

    target = targets()[name]
    rnd = random.Random(f"{seed}:{name}")
    start = time.monotonic()
    done = 0
    # The input in flight, for a post-mortem when the process dies (a sanitizer abort or a
    # hang: faulthandler then prints every thread's stack and exits).
    current = artifacts / f"{name.replace(':', '-')}.current"
    artifacts.mkdir(parents=True, exist_ok=True)
    while (runs <= 0 or done < runs) and (seconds <= 0 or time.monotonic() - start < seconds):
        raw = _random_input(rnd)
        done += 1
        current.write_bytes(raw)
        faulthandler.dump_traceback_later(TIMEOUT, exit=True)
        try:
            target(Data(raw))
        except Exception:
            traceback.print_exc()
            path = _save(artifacts, name, raw)
            print(f"RESULT {name} runs={done} failures=1 input={path}", flush=True)
            return 1
        finally:
            faulthandler.cancel_dump_traceback_later()
    current.unlink()
    _print_summary(name, done, start)
    return 0


def child_atheris(
    name: str, runs: int, seconds: float, seed: int, artifacts: Path, seeds: Path
) -> int:
    """libFuzzer through atheris (never returns: libFuzzer exits the process), starting from
    inputs written into ``seeds`` (a directory the parent removes, whatever the child's end)."""
    import atheris
    from _data import Data

    target = targets(instrument=True)[name]
    stem = name.replace(":", "-")
    current = artifacts / f"{stem}.current"
    # Seeds: libFuzzer grows its inputs from nothing, and in a short run most of them stay too
    # short to reach a kernel; the random engine's inputs give it whole calls from the start.
    rnd = random.Random(f"{seed}:{name}")
    for i in range(16):
        (seeds / f"seed{i}").write_bytes(_random_input(rnd))
    start = time.monotonic()
    done = 0

    # libFuzzer ends the process with exit(), past Python's reach: the run stops itself at its
    # limit instead, so that its summary line (inputs run, results checked) is printed.
    def one_input(raw: bytes) -> None:
        nonlocal done
        current.write_bytes(raw)  # for a post-mortem of a sanitizer abort
        target(Data(raw))
        done += 1
        if (runs > 0 and done >= runs) or (seconds > 0 and time.monotonic() - start >= seconds):
            current.unlink()
            _print_summary(name, done, start)
            sys.stderr.flush()
            os._exit(0)

    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        str(seeds),
        f"-seed={seed}",
        "-max_len=4096",
        f"-artifact_prefix={artifacts}/{stem}-",
        "-print_final_stats=1",
        f"-timeout={TIMEOUT}",
        "-rss_limit_mb=8192",
    ]
    if runs > 0:  # libFuzzer's own limits only as a backstop: one_input stops first
        args.append(f"-runs={runs + 1}")
    if seconds > 0:
        args.append(f"-max_total_time={round(seconds) + 60}")
    atheris.Setup(args, one_input)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz exits


def replay(path: str, name: str) -> int:
    """Run one saved input (a traceback on failure)."""
    from _data import Data

    targets()[name](Data(Path(path).read_bytes()))
    print(f"{name}: {path} passes")
    return 0


def _one(name: str, ns: argparse.Namespace) -> tuple[str, int, int, float, str]:
    """Run a child for ``name``: (name, runs, failures, seconds, its output on failure, or
    else how many results and errors were checked against the reference)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    cmd += ["--engine", ns.engine, "--runs", str(ns.runs), "--seconds", str(ns.seconds)]
    cmd += ["--seed", str(ns.seed), "--artifacts", str(ns.artifacts)]
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{name.replace(':', '-')}-seeds-") as seeds:
        cmd += ["--seeds", seeds]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    out = proc.stdout + proc.stderr
    runs = 0
    m = re.search(r"RESULT \S+ runs=(\d+)", out) or re.search(r"Done (\d+) runs", out)
    if m:
        runs = int(m.group(1))
    else:  # a crash: libFuzzer's last status line tells how far it got
        execs = re.findall(r"#(\d+)\s", out)
        runs = int(execs[-1]) if execs else 0
    failed = proc.returncode != 0
    if failed:
        ns.artifacts.mkdir(parents=True, exist_ok=True)
        (ns.artifacts / f"{name.replace(':', '-')}.log").write_text(out)
    counts = {k: int(v) for k, v in re.findall(r"(results|errors)=(\d+)", out)}
    note = (
        out
        if failed
        else (f"{counts.get('results', 0):6d} results, {counts.get('errors', 0):6d} errors checked")
    )
    return name, runs, int(failed), elapsed, note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help="names or prefixes (default: all)")
    parser.add_argument("--engine", choices=("atheris", "random"), default=None)
    parser.add_argument("--runs", type=int, default=0, help="inputs per target (0: no limit)")
    parser.add_argument("--seconds", type=float, default=0.0, help="time per target")
    parser.add_argument("--jobs", type=int, default=1, help="targets run at once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--replay", metavar="FILE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=Path, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.engine is None:
        ns.engine = "atheris" if _has_atheris() else "random"
    if ns.child:
        if ns.engine == "atheris":
            return child_atheris(ns.child, ns.runs, ns.seconds, ns.seed, ns.artifacts, ns.seeds)
        return child_random(ns.child, ns.runs, ns.seconds, ns.seed, ns.artifacts)
    if ns.replay:
        return replay(ns.replay, ns.targets[0])
    names = [t for t in targets() if not ns.targets or any(t.startswith(p) for p in ns.targets)]
    if ns.list:
        print("\n".join(names))
        return 0
    if ns.runs <= 0 and ns.seconds <= 0:
        parser.error("give --runs or --seconds")
    import hierfed

    print(f"engine {ns.engine}, backend {hierfed.backend()}, {len(names)} targets", flush=True)
    failures = 0
    total = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, ns.jobs)) as pool:
        for name, runs, failed, elapsed, out in pool.map(lambda t: _one(t, ns), names):
            total += runs
            failures += failed
            status = "FAIL" if failed else "ok"
            print(f"{name:45s} {runs:9d} inputs {elapsed:7.1f} s  {status}  {out[-6000:]}")
            sys.stdout.flush()
    print(f"{len(names)} targets, {total} inputs, {failures} failing targets")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
