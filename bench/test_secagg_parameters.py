"""Choosing SecAgg+'s (k, t): the search against the exhaustive one it replaced.

Groups ``secagg parameters n=<n> dropout=<rate>``: ``choose_parameters`` (binary search on
``t``, numpy tails over a log-factorial table), one ``parameter_bounds`` call (what a client
pays to check server-proposed ``(k, t)``), and the baseline: the first, exhaustive search
(every ``t`` of every ``k``, tails summed term by term in Python), the regression reference of
``tests/test_secagg_parts.py``, loaded from there. At n=4000, dropout 0.5 the baseline takes
about two minutes: it runs only with ``HIERFED_BENCH_SLOW=1``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hierfed.secagg.graph import choose_parameters, parameter_bounds

CASES = ((1000, 0.1), (1000, 0.5), (4000, 0.5))


def _reference() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tests" / "test_secagg_parts.py"
    spec = importlib.util.spec_from_file_location("secagg_parts_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("n", "dropout"), CASES)
def test_choose_parameters(benchmark: Any, n: int, dropout: float) -> None:
    benchmark.group = f"secagg parameters n={n} dropout={dropout}"
    benchmark.extra_info.update(impl="choose_parameters")
    p = benchmark.pedantic(
        choose_parameters, (n, dropout), rounds=20, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info.update(k=p.k, t=p.t, complete=p.complete)


@pytest.mark.parametrize(("n", "dropout"), CASES)
def test_parameter_bounds(benchmark: Any, n: int, dropout: float) -> None:
    benchmark.group = f"secagg parameters n={n} dropout={dropout}"
    benchmark.extra_info.update(impl="parameter_bounds (one (k, t))")
    p = choose_parameters(n, dropout)
    m = int(0.05 * n + 1e-9)
    benchmark.pedantic(
        lambda: parameter_bounds(n, p.k, p.t, m, dropout, complete=p.complete),
        rounds=50,
        iterations=1,
        warmup_rounds=1,
    )


@pytest.mark.parametrize(("n", "dropout"), CASES)
def test_old_exhaustive_search(benchmark: Any, n: int, dropout: float) -> None:
    if n > 1000 and os.environ.get("HIERFED_BENCH_SLOW") != "1":
        pytest.skip("about two minutes: set HIERFED_BENCH_SLOW=1")
    benchmark.group = f"secagg parameters n={n} dropout={dropout}"
    benchmark.extra_info.update(impl="baseline: old exhaustive search")
    old = _reference()._old_choose
    got = benchmark.pedantic(old, (n, dropout, 0.05), rounds=1 if n > 1000 else 3, iterations=1)
    p = choose_parameters(n, dropout)
    assert got == (p.k, p.t), "the search disagrees with its reference"
