"""Parameter paragraphs shared by the rules' docstrings, filled in at import.

A line ``%(name)s`` in a docstring, alone on its line, becomes the paragraph ``name`` of
:data:`PARAMETERS`, indented as that line (the style of scipy's ``doccer`` and matplotlib's
``_docstring.interpd``). Apply :func:`fill_doc` below the other decorators, so that their
wrappers copy the filled text.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

__all__ = ["PARAMETERS", "fill_doc"]

F = TypeVar("F", bound=Callable[..., object])

PARAMETERS: dict[str, str] = {
    "updates": """\
updates
    An ``(n, d)`` array, a sequence of ``n`` arrays, or a sequence of ``n`` per-layer models.""",
    "weights": """\
weights
    Optional non-negative weight per update (not all zero).""",
    "f": """\
f
    Number of Byzantine updates tolerated, ``0 <= f < n``.""",
    "check_finite": """\
check_finite
    Raise ValueError naming the first update that holds NaN or infinity.""",
}

_PLACEHOLDER = re.compile(r"^([ \t]*)%\((\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(func: F) -> F:
    """Replace every ``%(name)s`` line of ``func``'s docstring by its paragraph (KeyError if
    ``name`` is unknown); a function without a docstring (``python -OO``) is left as it is."""
    if func.__doc__:
        func.__doc__ = _PLACEHOLDER.sub(
            lambda m: textwrap.indent(PARAMETERS[m.group(2)], m.group(1)), func.__doc__
        )
    return func
