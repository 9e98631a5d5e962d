"""Each kernel family's three twins are found by its name: header, numba module, numpy module.

The C++ header ``cpp/include/hierfed/<family>.hpp`` names its binding and both twins, each
twin's docstring names the header, and each backend exposes exactly the kernels that
``hierfed._kernels.FAMILIES`` lists, defined in its ``<family>`` module.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from hierfed import _backend
from hierfed._kernels import FAMILIES

REPO = Path(__file__).resolve().parents[1]
HEADERS = REPO / "cpp" / "include" / "hierfed"
KERNELS = sorted(name for names in FAMILIES.values() for name in names)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_header_and_the_twins_name_each_other(family: str) -> None:
    header = HEADERS / f"{family}.hpp"
    if not header.exists():
        pytest.skip("no C++ sources next to the tests")
    text = " ".join(line.lstrip("/ ") for line in header.read_text().splitlines()[:40])
    assert "cpp/src/bind_" in text, f"{header.name} does not name its binding"
    for backend in ("numba", "numpy"):
        assert f"python/hierfed/_kernels/{backend}/{family}.py" in text, (header.name, backend)
        path = REPO / "python" / "hierfed" / "_kernels" / backend / f"{family}.py"
        assert f"cpp/include/hierfed/{family}.hpp" in path.read_text().split('"""')[1], path


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_each_backend_holds_every_kernel_in_its_family_module(backend: str) -> None:
    try:
        module = _backend._load(backend)
    except ImportError:
        pytest.skip(f"{backend} is not installed")
    assert sorted(module.__all__) == KERNELS
    for family, names in FAMILIES.items():
        for name in names:
            kernel = getattr(module, name)
            assert kernel.__module__ == f"hierfed._kernels.{backend}.{family}", name


def test_the_compiled_core_has_the_same_kernels() -> None:
    try:
        core = importlib.import_module("hierfed._core")
    except ImportError:
        pytest.skip("the compiled core is not built")
    assert [name for name in KERNELS if not callable(getattr(core, name, None))] == []
