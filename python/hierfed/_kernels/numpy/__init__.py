"""The numpy backend: plain references of every kernel, slow and obvious, the definition in code.

One module per kernel family of the C++ core, named as its header (see :mod:`hierfed._kernels`
for the map and the contract every backend follows).
"""

from __future__ import annotations

from .. import FAMILIES, gather

globals().update(gather(__name__))
__all__ = [name for names in FAMILIES.values() for name in names]
