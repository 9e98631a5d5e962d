"""The argument checks of the keystream kernels, shared by the numba and numpy twins.

The C++ core makes the same checks in ``cpp/src/bind_privacy.cpp`` (``make_key``,
``check_counter``, ``noise``): a key of 8 words, a nonce of 3, a request inside the 2^32
blocks of one keystream (a wrapped counter would repeat keystream, i.e. reuse noise or a mask),
a noise kind of 0, 1 or 2, and discrete-Gaussian parameters in range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_blocks", "check_dg_params", "check_kind", "check_out", "check_words"]


def check_words(arr: Any, count: int, what: str) -> None:
    """``arr`` must be a uint32 array of ``count`` words (a key, nonce or set of keys)."""
    if not (isinstance(arr, np.ndarray) and arr.dtype == np.uint32 and arr.shape == (count,)):
        raise ValueError(f"{what} must be a uint32 array of {count} words")


def check_out(out: Any, dtypes: tuple[Any, ...]) -> None:
    """``out`` must be a writeable 1-D C-contiguous array of one of ``dtypes``."""
    if not (
        isinstance(out, np.ndarray)
        and out.dtype in dtypes
        and out.ndim == 1
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise ValueError(f"out must be a writeable 1-D contiguous array of {dtypes}")


def check_blocks(counter: int, blocks: int) -> None:
    """Blocks ``counter .. counter + blocks - 1`` must lie in the keystream's 2^32 blocks."""
    if not 0 <= counter < 1 << 32:
        raise ValueError("counter must be in [0, 2^32)")
    if counter + blocks > 1 << 32:
        raise ValueError("the request runs past block 2^32 - 1 of the keystream")


def check_kind(kind: int) -> None:
    """A noise kind: 0 (uniform), 1 (normal) or 2 (Laplace)."""
    if kind not in (0, 1, 2):
        raise ValueError("kind must be 0 (uniform), 1 (normal) or 2 (Laplace)")


def check_dg_params(t: int, alpha: int, beta: int, denom: int, ymax: int, chunk: int) -> None:
    """The discrete Gaussian's integers in the ranges its kernels compute with exactly."""
    limit = 1 << 62
    if not (
        1 <= t <= 1 << 32
        and 1 <= alpha <= limit
        and 0 <= beta <= limit
        and 1 <= denom <= limit
        and 0 <= ymax <= limit
        and chunk >= 1
    ):
        raise ValueError("discrete_gaussian parameters out of range")
