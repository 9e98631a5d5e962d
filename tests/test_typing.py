"""The README's and the documentation's examples type-check under ``mypy --strict``, as a
user's code would be, and the rules answer in the caller's type (an array for arrays, a list
for per-layer models)."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path

import pytest

import hierfed

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
# The docs' ``.. testcode::`` blocks, with the imports of conf.py's doctest_global_setup.
DOCS = sorted((README.parent / "docs").glob("*.rst"))
DOC_BLOCKS = [
    "import numpy as np\nimport hierfed\n" + textwrap.dedent(block)
    for page in DOCS
    for block in re.findall(r"^\.\. testcode::\n\n((?:   .*\n|\n)+)", page.read_text(), flags=re.M)
]
# A block that imports an optional package (torch, jax, flwr) is checked where it is installed:
# without it mypy sees the package as Any and --strict reports its decorators as untyped.
_OPTIONAL = re.compile(r"^\s*(?:import|from) (torch|jax|flwr)\b", flags=re.M)


def _checkable(code: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in _OPTIONAL.findall(code))


CHECKED = [
    *((f"readme_block{i}", c) for i, c in enumerate(BLOCKS) if _checkable(c)),
    *((f"docs_block{i}", c) for i, c in enumerate(DOC_BLOCKS) if _checkable(c)),
]
KINDS = """\
import numpy as np
import hierfed
x = np.zeros((5, 3), np.float32)
reveal_type(hierfed.trimmed_mean(x))
reveal_type(hierfed.krum(list(x), f=1))
layers = [[np.zeros((3, 4), np.float32), np.zeros(5, np.float32)] for _ in range(3)]
reveal_type(hierfed.median(layers))
"""


@pytest.fixture(scope="module")
def mypy_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """One ``mypy --strict`` run over every README block and :data:`KINDS` (mypy is slow to
    start: it reads numpy's and torch's stubs once)."""
    api = pytest.importorskip("mypy.api")
    if hierfed.backend() != "cpp":
        pytest.skip("type-checked once, on the compiled backend's run")
    where = tmp_path_factory.mktemp("typing")
    files = []
    for name, code in [*CHECKED, ("kinds", KINDS)]:
        path = where / f"{name}.py"
        path.write_text(code)
        files.append(str(path))
    # torch's own Tensor.backward is untyped: a user's strict run excludes it the same way
    flags = ["--strict", "--untyped-calls-exclude=torch", "--cache-dir", str(where / "cache")]
    out, err, _ = api.run([*flags, *files])
    return out + err, len(files)


def test_readme_and_docs_examples_type_check(mypy_report: tuple[str, int]) -> None:
    text, n_files = mypy_report
    assert n_files == len(CHECKED) + 1
    assert len(BLOCKS) >= 5 and len(DOC_BLOCKS) >= 4 and len(CHECKED) >= 8
    errors = [line for line in text.splitlines() if ": error:" in line]
    assert errors == [], text


def test_a_rule_answers_in_the_callers_type(mypy_report: tuple[str, int]) -> None:
    revealed = re.findall(r'kinds\.py:\d+: note: Revealed type is "(.*)"', mypy_report[0])
    assert len(revealed) == 3, mypy_report[0]
    assert revealed[0].startswith("numpy.ndarray[") and revealed[1].startswith("numpy.ndarray[")
    assert re.match(r"(builtins\.)?list\[numpy\.ndarray\[", revealed[2]), revealed
    assert all("float32" in r or "_32Bit" in r for r in revealed), revealed
