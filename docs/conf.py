"""Sphinx configuration of hierfed's documentation (``sphinx-build -W -n docs build/docs``)."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

import hierfed

HERE = Path(__file__).resolve().parent

project = "hierfed"
author = "the hierfed authors"
release = version = hierfed.__version__
copyright = "the hierfed authors, Apache-2.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "_inventories"]
html_theme = "furo"
html_title = f"hierfed {release}"
nitpicky = True

# autodoc: numpy-style docstrings (napoleon), hints in the signatures, members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# The integrations document without their framework installed (the docs extra has neither).
autodoc_mock_imports = [m for m in ("torch", "flwr") if importlib.util.find_spec(m) is None]

# Intersphinx to Python, numpy, torch and Flower, from the entries of docs/inventories.py (an
# offline build resolves them too, so -W -n passes without network).
sys.path.insert(0, str(HERE))
import inventories  # noqa: E402

intersphinx_mapping = inventories.write(Path(tempfile.mkdtemp(prefix="hierfed-inv-")))

# Names type hints carry that no inventory documents: numpy's private typing helpers and this
# package's type variables.
nitpick_ignore_regex = [
    ("py:class", r"numpy\._typing\..*"),
    ("py:class", r"hierfed\._inputs\..*"),
    ("py:.*", r"hierfed(\.[a-z]\w*)*\._\w+.*"),  # private helpers a docstring names
    ("py:class", r"dict\[str"),  # autodoc splits a few dict[str, ...] hints at the comma
    ("py:class", r"(hierfed\._types\.)?ArrayT"),
    ("py:class", r"hierfed\.privacy\.noise\.X"),
    ("py:class", r"flwr\.supercore\..*"),  # Flower's internal types (Grid.set_run's Run)
]

# doctest: every page's examples run with ``sphinx-build -b doctest docs build/doctest``.
doctest_global_setup = """
import numpy as np
import hierfed
"""


# Names re-exported by a package (``hierfed.trimmed_mean``, ``hierfed.privacy.NoiseGenerator``)
# are documented once, in their module's section; a reference to the re-export, or a short
# name in a module's docstring (``:meth:`poll```), resolves to the one documented object
# of that name within the module.
def _documented(env: Any) -> dict[str, list[str]]:
    by_last: dict[str, list[str]] = {}
    for name, entry in env.domains["py"].objects.items():
        if not entry.aliased:  # a class's canonical alias is the same object
            by_last.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    return by_last


def _resolve(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module = node.get("py:module") or ""
    absolute = target.startswith("hierfed.")
    if absolute:
        head, _, attr = target.rpartition(".")
        try:
            obj = getattr(importlib.import_module(head), attr)
        except (ImportError, AttributeError, ValueError):
            return None
        names = [n for n in _documented(env).get(attr, []) if _same(n, obj)]
        if not names and head in env.domains["py"].modules:  # undocumented data: its module
            return _xref(app, env, node, contnode, "mod", head)
    elif module.startswith("hierfed"):
        last = target.rsplit(".", 1)[-1]
        names = []
        for scope in (module, module.rpartition(".")[0]):  # the module, then its package
            names = names or [
                n
                for n in _documented(env).get(last, [])
                if n.startswith(f"{scope}.") and n.endswith(f".{target}")
            ]
        if not names:  # an undocumented attribute: link its class, or its module
            owner = target.rpartition(".")[0]
            candidates = [f"{module}.{owner}"] if owner else [module]
            names = [n for n in candidates if n in env.domains["py"].objects]
            if not owner and module in env.domains["py"].modules:
                return _xref(app, env, node, contnode, "mod", module)
    else:
        return None
    if len(names) != 1:
        return None
    return _xref(app, env, node, contnode, node["reftype"], names[0])


def _xref(app: Any, env: Any, node: Any, contnode: Any, kind: str, name: str) -> Any:
    return env.domains["py"].resolve_xref(
        env, node["refdoc"], app.builder, kind, name, node, contnode
    )


def _same(name: str, obj: Any) -> bool:
    head, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(head), attr) is obj
    except (ImportError, AttributeError, ValueError):
        return False


def setup(app: Any) -> None:
    app.connect("missing-reference", _resolve)
