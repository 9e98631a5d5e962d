"""Static types of the public rules: an array (or tensor) in gives one out, per-layer models in
give a list of layers out.

:data:`ArrayT` stands for the caller's array type: a numpy array, a torch tensor, a JAX array
(anything with ``__dlpack_device__``). A rule decorated with :func:`rule_types` has the
three signatures of :class:`Rule`, its other parameters those of its definition:

- ``(n, d)`` array of type ``ArrayT`` -> ``ArrayT`` (one update);
- a sequence of ``ArrayT`` (one per client) -> ``ArrayT``;
- a sequence of sequences of ``ArrayT`` (per-layer models) -> ``list[ArrayT]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast, overload

__all__ = ["ArrayT", "DLPackArray", "Rule", "rule_types"]


class DLPackArray(Protocol):
    """An array that DLPack can read: numpy arrays, torch tensors, JAX arrays."""

    def __dlpack_device__(self) -> tuple[Any, int]: ...


ArrayT = TypeVar("ArrayT", bound=DLPackArray)

P = ParamSpec("P")


class Rule(Protocol[P]):
    """A rule's static signatures: its updates (positional) as one of three kinds, then ``P``."""

    @overload
    def __call__(self, updates: ArrayT, /, *args: P.args, **kwargs: P.kwargs) -> ArrayT: ...

    @overload
    def __call__(
        self, updates: Sequence[ArrayT], /, *args: P.args, **kwargs: P.kwargs
    ) -> ArrayT: ...

    @overload
    def __call__(
        self, updates: Sequence[Sequence[ArrayT]], /, *args: P.args, **kwargs: P.kwargs
    ) -> list[ArrayT]: ...


def rule_types(func: Callable[Concatenate[Any, P], Any]) -> Rule[P]:
    """Type a rule whose first parameter takes the updates (the function itself, unchanged)."""
    return cast("Rule[P]", func)
