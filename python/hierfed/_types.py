"""Static types of the public rules: an array (or tensor) in gives one out, per-layer models in
give a list of layers out.

:data:`ArrayT` stands for the caller's array type: a numpy array, a torch tensor, a JAX array
(anything with ``__dlpack_device__``). The rules' ``@overload`` signatures read:

- ``(n, d)`` array of type ``ArrayT`` -> ``ArrayT`` (one update);
- a sequence of ``ArrayT`` (one per client) -> ``ArrayT``;
- a sequence of sequences of ``ArrayT`` (per-layer models) -> ``list[ArrayT]``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

__all__ = ["ArrayT", "DLPackArray"]


class DLPackArray(Protocol):
    """An array that DLPack can read: numpy arrays, torch tensors, JAX arrays."""

    def __dlpack_device__(self) -> tuple[Any, int]: ...


ArrayT = TypeVar("ArrayT", bound=DLPackArray)
