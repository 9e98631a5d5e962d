"""Torch tensors and JAX arrays at the public boundary: DLPack views in, the caller's type out.

Every public aggregation, clipping and noise function is decorated with :func:`tensor_io`.
When its main argument (``updates`` or ``x``) is a torch tensor or a JAX array -- alone, in a
list of updates, or in a list of per-layer models -- the decorator

- views every tensor among the named arguments as a numpy array through DLPack
  (``np.from_dlpack``: the same memory, no copy; torch tensors that require grad are
  detached first, which shares their memory too);
- runs the function on those views (its kernels read the tensors' memory in place);
- converts every numpy array in the answer back to the caller's type (``torch.from_dlpack``,
  ``jax.numpy.from_dlpack``; a torch answer shares the output's memory) and returns an
  argument the function wrote in place (``out=``, in-place noise) as the caller's own object.

Numpy input takes a fast path that only looks at the argument's type. A function whose plain
``(n, d)`` ndarray case is one kernel call answers that case before any wrapper and hands
everything else to its decorated general way, which :func:`tensors_via` records. Torch and JAX are
never imported here: a tensor can only exist if its framework is already in ``sys.modules``.
Only CPU memory is read; a GPU tensor raises ``TypeError`` asking for ``.cpu()``.

JAX arrays are immutable: functions that add noise in place return a noised copy for them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np

__all__ = ["Framework", "dlpack_view", "framework_of", "tensor_io", "tensors_via"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_DL_CPU = 1  # DLDeviceType kDLCPU
_DL_CPU_PINNED = 3  # kDLCUDAHost: host memory, readable by the CPU


@dataclass(frozen=True)
class Framework:
    """A tensor library whose arrays hierfed accepts and returns.

    Attributes
    ----------
    name
        ``"torch"`` or ``"jax"``.
    mutable
        Whether its arrays may be written in place (torch) or not (JAX).
    """

    name: str
    mutable: bool

    def from_numpy(self, arr: np.ndarray[Any, Any]) -> Any:
        """``arr`` as this framework's array (torch shares its memory; JAX may copy)."""
        module = sys.modules[self.name]
        if self.name == "torch":
            return module.from_dlpack(arr)
        return sys.modules["jax.numpy"].from_dlpack(arr)


TORCH = Framework("torch", mutable=True)
JAX = Framework("jax", mutable=False)


def _tensor_framework(x: Any) -> Framework | None:
    """The framework of ``x`` if it is a torch tensor or a JAX array."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return TORCH
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return JAX
    return None


def framework_of(x: Any) -> Framework | None:
    """The framework of ``x``: a tensor, or the first of a list of updates or of models."""
    for _ in range(3):  # a tensor, a list of tensors, a list of lists of tensors
        if isinstance(x, np.ndarray):
            return None
        if isinstance(x, (list, tuple)):
            if not x:
                return None
            x = x[0]
            continue
        return _tensor_framework(x)
    return None


def dlpack_view(x: Any, where: str) -> np.ndarray[Any, Any]:
    """A numpy view of the DLPack-capable ``x`` (same memory); ``TypeError`` if it is not on
    the CPU or its dtype has no numpy equivalent (e.g. bfloat16)."""
    device = getattr(x, "__dlpack_device__", None)
    if device is not None:
        kind = int(device()[0])
        if kind not in (_DL_CPU, _DL_CPU_PINNED):
            raise TypeError(
                f"{where} is not in CPU memory (DLPack device type {kind}); hierfed reads CPU "
                "memory: move it first, e.g. x.cpu()"
            )
    if getattr(x, "requires_grad", False):
        x = x.detach()  # torch: the same memory, outside autograd
    try:
        view = np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError) as exc:
        raise TypeError(
            f"{where} (dtype {x.dtype}) cannot be viewed as a numpy array: {str(exc).rstrip('.')}; "
            f"use float32 or float64, e.g. {_cast_hint(x)}"
        ) from None
    if view.dtype.kind == "f" and view.dtype.itemsize < 4:
        hint = _cast_hint(x)
        raise TypeError(f"{where} has dtype {x.dtype}; use float32 or float64, e.g. {hint}")
    return view


def _cast_hint(x: Any) -> str:
    """How ``x``'s own framework casts it to float32."""
    if _tensor_framework(x) is TORCH:
        return "x.float() or x.to(torch.float32)"
    return "x.astype(jnp.float32)"


def _to_numpy(x: Any, where: str) -> Any:
    """``x`` with every torch/JAX array replaced by its numpy view (lists become lists)."""
    if isinstance(x, (list, tuple)):
        return [_to_numpy(item, f"{where}[{i}]") for i, item in enumerate(x)]
    if _tensor_framework(x) is not None:
        return dlpack_view(x, where)
    return x


def _writable(x: Any) -> Any:
    """Read-only views (of immutable JAX arrays) replaced by writable copies."""
    if isinstance(x, list):
        return [_writable(item) for item in x]
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        return x.copy()
    return x


def _from_numpy(result: Any, framework: Framework) -> Any:
    """Every numpy array in ``result`` (nested in lists, tuples, dataclasses) converted."""
    if isinstance(result, np.ndarray):
        return framework.from_numpy(result)
    if isinstance(result, list):
        return [_from_numpy(item, framework) for item in result]
    if isinstance(result, tuple):
        return tuple(_from_numpy(item, framework) for item in result)
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        changes = {
            f.name: _from_numpy(getattr(result, f.name), framework)
            for f in dataclasses.fields(result)
        }
        return dataclasses.replace(result, **changes)
    return result


def tensor_io(*names: str, writes: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a public function to take torch/JAX arrays and answer in the caller's type.

    Parameters
    ----------
    names
        The parameters viewed through DLPack; the first is the main one, whose type decides
        the answer's.
    writes
        The parameter the function always writes in place (in-place noise): for immutable
        JAX arrays it gets a writable copy, which is returned.
    """
    if not names:
        raise ValueError("tensor_io needs at least one parameter name")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        params = list(inspect.signature(func).parameters)
        positions = {name: params.index(name) for name in names}
        main, main_pos = names[0], positions[names[0]]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            first = args[main_pos] if len(args) > main_pos else kwargs.get(main)
            framework = framework_of(first)
            if framework is None:
                return func(*args, **kwargs)
            new_args = list(args)
            originals: list[tuple[Any, Any]] = []  # (view, the caller's object)
            for name, pos in positions.items():
                if pos < len(new_args):
                    value = new_args[pos]
                elif name in kwargs:
                    value = kwargs[name]
                else:
                    continue
                view = _to_numpy(value, name)
                if name == writes and not framework.mutable:
                    view = _writable(view)
                elif view is not value:
                    originals.append((view, value))
                if pos < len(new_args):
                    new_args[pos] = view
                else:
                    kwargs[name] = view
            result = func(*new_args, **kwargs)  # type: ignore[arg-type]
            for view, value in originals:
                if result is view:  # written in place: the caller's own object back
                    return value  # type: ignore[no-any-return]
            return _from_numpy(result, framework)  # type: ignore[no-any-return]

        return wrapper

    return decorate


def tensors_via(general: Callable[..., Any]) -> Callable[[F], F]:
    """Record that the decorated function takes tensors through ``general``, its
    :func:`tensor_io` way (attribute ``tensors_via``): it answers plain ndarrays itself
    first, so numpy callers skip the wrapper's cost, and calls ``general`` for the rest."""

    def mark(func: F) -> F:
        func.tensors_via = general  # type: ignore[attr-defined]
        return func

    return mark
