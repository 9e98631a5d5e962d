"""The public functions the tensor tests run, and a spy on the memory the kernels read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

import hierfed
from hierfed import _backend
from hierfed.privacy import clip_by_l2_norm, l2_norms

# name -> call on updates (n >= 7 for Bulyan with f=1)
CASES: dict[str, Callable[[Any], Any]] = {
    "mean": lambda u: hierfed.mean(u, weights=list(range(1, 10))),
    "trimmed_mean": lambda u: hierfed.trimmed_mean(u, trim_ratio=0.2),
    "median": lambda u: hierfed.median(u),
    "krum": lambda u: hierfed.krum(u, f=2),
    "multi_krum": lambda u: hierfed.multi_krum(u, f=2),
    "bulyan": lambda u: hierfed.bulyan(u, f=1),
    "geometric_median": lambda u: hierfed.geometric_median(u),
    "centered_clipping": lambda u: hierfed.centered_clipping(u, center=_zeros_like(u), tau=0.5),
    "nearest_neighbor_mixing": lambda u: hierfed.nearest_neighbor_mixing(u, f=2),
    "aggregate": lambda u: hierfed.aggregate(u, "bulyan", pre="nnm", f=1).aggregate,
    "pairwise_sq_distances": lambda u: hierfed.pairwise_sq_distances(u),
    "l2_norms": lambda u: l2_norms(u),
    "clip_by_l2_norm": lambda u: clip_by_l2_norm(u, 1.0),
}
N = 9


def _zeros_like(u: Any) -> Any:
    """A centre shaped like one update of ``u``, of ``u``'s own type."""
    if isinstance(u, (list, tuple)):
        first = u[0]
        if isinstance(first, (list, tuple)):
            return [layer * 0 for layer in first]
        return first * 0
    return u[0] * 0


def leaves(x: Any) -> list[Any]:
    """The arrays in ``x`` (nested lists and tuples flattened)."""
    if isinstance(x, (list, tuple)):
        return [leaf for item in x for leaf in leaves(item)]
    return [x]


class _Spy:
    """A kernel module whose functions record the addresses of the update rows they get."""

    def __init__(self, real: Any, seen: set[int]) -> None:
        self._real, self._seen = real, seen

    def __getattr__(self, name: str) -> Any:
        kernel = getattr(self._real, name)

        def spied(*args: Any) -> Any:
            if args and isinstance(args[0], list):
                for rows in args[0]:
                    for row in rows if isinstance(rows, list) else []:
                        if isinstance(row, np.ndarray):
                            self._seen.add(row.ctypes.data)
            return kernel(*args)

        return spied


@contextmanager
def rows_read() -> Iterator[set[int]]:
    """The start addresses of every update row any kernel reads inside the block."""
    seen: set[int] = set()
    real = _backend.kernels
    _backend.kernels = lambda: _Spy(real(), seen)  # type: ignore[assignment]
    try:
        yield seen
    finally:
        _backend.kernels = real  # type: ignore[assignment]
