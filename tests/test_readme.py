"""README.md's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hierfed

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if hierfed.backend() != "cpp":
        pytest.skip("documentation examples run once, on the compiled backend")
    for module in re.findall(r"^(?:import|from) (torch|jax|flwr)\b", code, flags=re.M):
        pytest.importorskip(module)  # examples of the optional integrations
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
