"""A torch model's parameters or state_dict as one vector, and back (extra ``torch``).

hierfed's rules take torch tensors directly (a list of 1-D tensors, an ``(n, d)`` tensor, or a
list of per-layer parameter lists) and answer in torch; these helpers give the one-vector
form that the federation and the Flower strategy use, and write an aggregate back::

    deltas = [parameters_to_vector(c) - parameters_to_vector(model) for c in clients]
    step = hierfed.trimmed_mean(deltas, trim_ratio=0.1)          # a torch tensor
    vector_to_parameters(parameters_to_vector(model) + step, model)

The vector's dtype is float64 when any tensor is float64, else float32 (half precision is
widened). A state_dict's entries that are not floating point (e.g. batch-norm step counters)
are not in its vector; :func:`vector_to_state_dict` copies them from a reference. Any device
works; hierfed's rules read CPU memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = [
    "parameters_to_vector",
    "state_dict_to_vector",
    "vector_to_parameters",
    "vector_to_state_dict",
]


def _tensors(source: Any) -> list[torch.Tensor]:
    """The parameters of a module, or the tensors of an iterable; all floating point."""
    tensors: list[torch.Tensor]
    if isinstance(source, torch.nn.Module):
        tensors = list(source.parameters())
    elif isinstance(source, Mapping):
        raise TypeError("got a mapping: use state_dict_to_vector / vector_to_state_dict")
    else:
        tensors = list(source)
    if not tensors:
        raise ValueError("no parameters to flatten")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"parameters[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"parameters[{i}] has dtype {t.dtype}; parameters are floating point")
    return tensors


def _vector_dtype(tensors: Iterable[torch.Tensor]) -> torch.dtype:
    wide = any(t.dtype == torch.float64 for t in tensors)
    return torch.float64 if wide else torch.float32


def _concat(tensors: list[torch.Tensor]) -> torch.Tensor:
    dtype = _vector_dtype(tensors)
    return torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])


def _as_vector(vector: Any, size: int, like: torch.Tensor) -> torch.Tensor:
    vec = vector if isinstance(vector, torch.Tensor) else torch.as_tensor(vector)
    if vec.dim() != 1 or vec.numel() != size:
        raise ValueError(f"vector has shape {tuple(vec.shape)}; the model needs ({size},)")
    return vec.to(like.device)


def parameters_to_vector(source: torch.nn.Module | Iterable[torch.Tensor]) -> torch.Tensor:
    """The parameters of a module (or the tensors given) concatenated into a new 1-D tensor,
    detached from autograd.

    Parameters
    ----------
    source
        An ``nn.Module`` (its ``parameters()``, in order) or an iterable of float tensors.
    """
    return _concat(_tensors(source))


def vector_to_parameters(vector: Any, source: torch.nn.Module | Iterable[torch.Tensor]) -> None:
    """Write ``vector`` into the parameters of ``source`` in place (outside autograd).

    Parameters
    ----------
    vector
        A 1-D tensor or array of the parameters' total size (e.g. an aggregate).
    source
        The module, or the tensors, that :func:`parameters_to_vector` flattened.
    """
    tensors = _tensors(source)
    vec = _as_vector(vector, sum(t.numel() for t in tensors), tensors[0])
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel()
            t.copy_(vec[offset : offset + n].view_as(t))
            offset += n


def state_dict_to_vector(state_dict: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The floating-point entries of ``state_dict`` (parameters and float buffers) concatenated
    into a new 1-D tensor, in the state_dict's order."""
    floats = [t for t in state_dict.values() if t.is_floating_point()]
    if not floats:
        raise ValueError("the state_dict has no floating-point entries")
    return _concat(floats)


def vector_to_state_dict(vector: Any, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A new state_dict from ``vector``, shaped and typed like ``like``.

    Floating-point entries come from ``vector`` (in ``like``'s order, as
    :func:`state_dict_to_vector` wrote them); the others are copied from ``like``. The
    result loads with ``model.load_state_dict``.
    """
    floats = [t for t in like.values() if t.is_floating_point()]
    if not floats:
        raise ValueError("the state_dict has no floating-point entries")
    vec = _as_vector(vector, sum(t.numel() for t in floats), floats[0])
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, t in like.items():
        if t.is_floating_point():
            n = t.numel()
            out[name] = vec[offset : offset + n].view(t.shape).to(t.dtype, copy=True)
            offset += n
        else:
            out[name] = t.detach().clone()
    return out
