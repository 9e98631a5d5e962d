"""The rules' docstrings: shared parameter paragraphs filled in at import (hierfed._docstrings)."""

from __future__ import annotations

import pydoc

import pytest

import hierfed
from hierfed._docstrings import PARAMETERS, fill_doc

RULES = [
    hierfed.aggregate,
    hierfed.bulyan,
    hierfed.centered_clipping,
    hierfed.geometric_median,
    hierfed.krum_select,
    hierfed.mda,
    hierfed.mean,
    hierfed.monna,
    hierfed.nearest_neighbor_mixing,
    hierfed.meamed,
    hierfed.median,
    hierfed.multi_krum,
    hierfed.pairwise_sq_distances,
    hierfed.trimmed_mean,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_rule_docstrings_are_filled(rule: object) -> None:
    doc = rule.__doc__
    assert doc is not None and "%(" not in doc
    text = pydoc.render_doc(rule, renderer=pydoc.plaintext)
    assert "%(" not in text
    assert "sequence of ``n`` per-layer models" in text


def test_fill_doc_indents_each_paragraph_as_its_placeholder() -> None:
    def rule() -> None:
        """Doc.

        Parameters
        ----------
        %(f)s
            %(check_finite)s
        """

    fill_doc(rule)
    assert rule.__doc__ is not None
    lines = rule.__doc__.splitlines()
    at = lines.index("        f")
    assert lines[at + 1] == "            Number of Byzantine updates tolerated, ``0 <= f < n``."
    assert lines[at + 2] == "            check_finite"
    assert lines[at + 3].strip() == PARAMETERS["check_finite"].splitlines()[1].strip()


def test_fill_doc_refuses_an_unknown_name() -> None:
    def rule() -> None:
        """%(no_such_parameter)s"""

    with pytest.raises(KeyError, match="no_such_parameter"):
        fill_doc(rule)
