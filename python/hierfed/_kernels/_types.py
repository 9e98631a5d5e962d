"""The types of the kernel contract (see :mod:`hierfed._kernels`), shared by every twin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["FloatArray", "IntArray", "Outs", "Rows", "Segments", "Weights", "Words"]

FloatArray = NDArray[np.floating[Any]]
IntArray = NDArray[np.int64]
Rows = Sequence[FloatArray]  # one segment: part s of every update, a 1-D array each
Segments = Sequence[Rows]
Outs = Sequence[FloatArray]  # one output per segment
Weights = NDArray[np.float64] | None  # validated: finite, >= 0, positive sum
Words = NDArray[np.uint32]  # keys (8 words), nonces (3 words), keystreams
