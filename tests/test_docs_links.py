"""The README and the documentation link each other, and every link they hold stays inside the
repository and resolves there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.rst"))
# Markdown [text](target) and reST `text <target>`_ links.
MARKDOWN = re.compile(r"\]\(([^)\s]+)\)")
REST = re.compile(r"`[^`<]*<([^>`]+)>`_")


def _links(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".md":  # code spans and blocks hold no links
        return MARKDOWN.findall(re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S))
    return REST.findall(text)


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    heads = re.findall(r"^#+ (.*)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_link_resolves_inside_the_repository(path: Path) -> None:
    links = _links(path)
    assert links or path.name not in ("README.md", "index.rst")
    for link in links:
        assert not re.match(r"[a-z]+:", link), f"{path.name} links outside the repository: {link}"
        target, _, anchor = link.partition("#")
        resolved = (path.parent / target).resolve() if target else path
        assert resolved.is_relative_to(ROOT), f"{path.name}: {link} leaves the repository"
        assert resolved.exists(), f"{path.name}: {link} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved.read_text()), f"{path.name}: no #{anchor}"


def test_readme_and_docs_link_each_other() -> None:
    readme = set(_links(ROOT / "README.md"))
    assert {f"docs/{p.name}" for p in DOCS} <= readme  # every page is linked from the README
    assert "../README.md" in _links(ROOT / "docs" / "index.rst")
    assert "../shared/DESIGN.md" not in (ROOT / "README.md").read_text()
    assert not re.search(r"(?<![\w/])spec/(basket|layers)\.md", (ROOT / "README.md").read_text())


def test_every_public_module_is_in_the_api_reference() -> None:
    """A module added without its ``.. automodule::`` would fail the ``-W -n`` docs build in CI
    only at the end; this names it at once."""
    package = ROOT / "python" / "hierfed"
    modules = {
        ".".join(("hierfed", *p.relative_to(package).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for p in package.rglob("*.py")
    }
    public = {m for m in modules if not any(part.startswith("_") for part in m.split("."))}
    documented = set(
        re.findall(r"^\.\. automodule:: (\S+)", "".join(p.read_text() for p in DOCS), flags=re.M)
    )
    assert public - documented == set(), "add an automodule for these to a page of docs/"
