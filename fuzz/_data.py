"""Turn fuzzer bytes into structured choices (the harnesses' only source of randomness).

Every harness reads its input through :class:`Data`, so the same harness runs under atheris
(coverage-guided mutation of the bytes) or the plain random driver of ``run.py``; when the bytes
run out every read returns its smallest value, so any byte string is a valid input.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class Data:
    """A cursor over fuzzer bytes.

    Parameters
    ----------
    raw
        The fuzzer's input.
    """

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._at = 0

    def take(self, k: int) -> bytes:
        """The next ``k`` bytes, zero-padded past the end."""
        out = self._raw[self._at : self._at + k]
        self._at += k
        return out + bytes(k - len(out))

    def remaining(self) -> bytes:
        """All bytes not read yet."""
        out = self._raw[self._at :]
        self._at = len(self._raw)
        return out

    def int(self, lo: int, hi: int) -> int:
        """An int in ``[lo, hi]``."""
        span = hi - lo + 1
        width = max(1, (span.bit_length() + 7) // 8)
        return lo + int.from_bytes(self.take(width), "little") % span

    def chance(self, one_in: int) -> bool:
        """True with probability about ``1 / one_in``."""
        return self.int(0, one_in - 1) == 0

    def pick(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        return options[self.int(0, len(options) - 1)]

    def float64(self) -> float:
        """Any float64 bit pattern (NaN, infinities, denormals included)."""
        return float(struct.unpack("<d", self.take(8))[0])

    def seed(self) -> int:
        """A 32-bit seed for a numpy generator (bulk values cost 4 bytes of input)."""
        return self.int(0, 2**32 - 1)

    def rng(self) -> np.random.Generator:
        """A numpy generator seeded from the input."""
        return np.random.default_rng(self.seed())
