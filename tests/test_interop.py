"""The tensor boundary without torch or JAX: coverage of the public API, errors, numpy path."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest

import hierfed
from hierfed import _interop, privacy


def _public_callables() -> list[tuple[str, Any]]:
    found = []
    for module in (hierfed, privacy):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                found.append((f"{module.__name__}.{name}", obj))
            elif inspect.isclass(obj) and hasattr(obj, "add_noise"):
                found.append((f"{module.__name__}.{name}.add_noise", obj.add_noise))
    return found


def test_every_function_taking_updates_or_x_goes_through_the_boundary() -> None:
    checked, missing = [], []
    for name, func in _public_callables():
        params = list(inspect.signature(func).parameters)
        takes = [p for p in params if p in ("updates", "x")]
        if takes and params.index(takes[0]) <= 1:  # the main argument (after self)
            checked.append(name)
            via = getattr(func, "tensors_via", func)  # a numpy fast way first, then this
            if not hasattr(via, "__wrapped__"):
                missing.append(name)
    assert not missing, f"without @tensor_io: {missing}"
    # 13 rules and kernels, 2 clipping, 2 noise functions, 3 mechanisms
    assert len(checked) >= 19, checked


def test_numpy_input_takes_the_fast_path_and_stays_numpy() -> None:
    x = np.ones((5, 3), np.float32)
    assert _interop.framework_of(x) is None
    assert _interop.framework_of([x[0], x[1]]) is None
    assert _interop.framework_of([[x[0]], [x[1]]]) is None
    assert _interop.framework_of([]) is None
    out = hierfed.mean(x)
    assert type(out) is np.ndarray


class _DeviceTensor:
    """A DLPack producer in GPU memory (device type 2, kDLCUDA)."""

    def __dlpack__(self, **kwargs: Any) -> Any:  # pragma: no cover - never reached
        raise AssertionError("must not be exported")

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


def test_gpu_memory_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"updates\[0\] is not in CPU memory.*\.cpu\(\)"):
        hierfed.mean([_DeviceTensor(), _DeviceTensor()])


class _HostDLPack:
    """Any other DLPack producer on the CPU (here: a numpy array behind the protocol)."""

    def __init__(self, a: np.ndarray[Any, Any]) -> None:
        self.a = a

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.a.__dlpack_device__()


def test_other_dlpack_producers_are_read_in_place_and_answered_in_numpy() -> None:
    rows = [np.full(4, float(i), np.float64) for i in range(5)]
    out = hierfed.median([_HostDLPack(r) for r in rows])
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, np.full(4, 2.0))


def test_tensor_io_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one"):
        _interop.tensor_io()
