"""The numba backend: twins of the compiled C++ kernels, same algorithms and results, no compiler.

Used when the extension :mod:`hierfed._core` is missing. One module per kernel family of the
C++ core, named as its header (see :mod:`hierfed._kernels` for the map and the contract);
:mod:`._shared` holds the jit settings, row addresses and thread splits they share.
"""

from __future__ import annotations

from .. import FAMILIES, gather

globals().update(gather(__name__))
__all__ = [name for names in FAMILIES.values() for name in names]
