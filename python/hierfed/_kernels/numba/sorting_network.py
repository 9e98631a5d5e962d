"""Batcher's odd-even merge sorting network for any n, pruned to the output ranks needed.

The numba side of ``cpp/include/hierfed/sorting_network.hpp``: the comparators the numba
coordinate-wise kernels (:mod:`.coordinatewise`) apply to their tiles. The numpy references
sort with ``np.sort`` / ``np.argsort`` instead.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .._types import IntArray

__all__ = ["network"]


def _odd_even_merge_sort(n: int, presorted: int = 1) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort of ``n`` wires, as (low, high) comparators in order.

    Built for the next power of two; comparators touching a wire ``>= n`` are dropped, which
    is exact because such a wire would hold +inf padding that no comparator moves. The first
    stages sort aligned groups of ``presorted`` wires (a power of two); their comparators are
    left out for the full groups, which the caller sorts itself.
    """
    size = 1
    while size < n:
        size *= 2
    full = n - n % presorted  # groups of wires below this arrive sorted
    pairs = []
    p = 1
    while p < size:
        step = p
        while step >= 1:
            for j in range(step % p, size - step, 2 * step):
                for i in range(min(step, size - j - step)):
                    a, b = i + j, i + j + step
                    if a // (2 * p) == b // (2 * p) and b < n and (p >= presorted or b >= full):
                        pairs.append((a, b))
            step //= 2
        p *= 2
    return pairs


@lru_cache(maxsize=256)
def network(n: int, first: int, last: int, presorted: int = 1) -> tuple[IntArray, IntArray]:
    """The comparators that sorted positions ``first..last`` of ``n`` wires depend on.

    With ``presorted`` as in :func:`_odd_even_merge_sort`: the rest of the network.
    """
    needed = set(range(first, last + 1))
    kept = []
    for a, b in reversed(_odd_even_merge_sort(n, presorted)):
        if a in needed or b in needed:
            kept.append((a, b))
            needed.update((a, b))
    kept.reverse()
    pa = np.array([a for a, _ in kept], dtype=np.int64)
    pb = np.array([b for _, b in kept], dtype=np.int64)
    return pa, pb
