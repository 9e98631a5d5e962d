"""ArrayLayout: a model's named arrays to one vector and back."""

from __future__ import annotations

import numpy as np
import pytest

from hierfed.integrations import ArrayLayout


def _model(scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3) * scale,
        "steps": np.array(7, dtype=np.int64),
        "b": np.ones(2, np.float32) * scale,
    }


def test_round_trip_keeps_order_shapes_dtypes_and_counters() -> None:
    layout = ArrayLayout.of(_model())
    assert layout.size == 8 and layout.dtype == np.float32
    assert layout.offsets == (0, -1, 6)
    vec = layout.flatten(_model(2.0))
    np.testing.assert_array_equal(vec, [0, 2, 4, 6, 8, 10, 2, 2])
    back = layout.restore(vec, reference=_model())
    assert list(back) == ["w", "steps", "b"]
    assert back["steps"].dtype == np.int64 and int(back["steps"]) == 7
    np.testing.assert_array_equal(back["w"], _model(2.0)["w"])
    back["w"][0, 0] = 99.0  # restored arrays are new, not views of the vector
    assert vec[0] == 0.0


def test_float64_anywhere_widens_the_vector_and_restore_narrows_back() -> None:
    arrays = {"a": np.ones(2, np.float32), "b": np.full(1, 1 / 3)}
    layout = ArrayLayout.of(arrays)
    assert layout.dtype == np.float64
    back = layout.restore(layout.flatten(arrays), arrays)
    assert back["a"].dtype == np.float32 and back["b"][0] == 1 / 3


def test_mismatches_are_named() -> None:
    layout = ArrayLayout.of(_model())
    with pytest.raises(ValueError, match="missing"):
        layout.flatten({"w": _model()["w"]})
    bad = _model()
    bad["b"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"client\['b'\] is \(3,\) float32; expected \(2,\)"):
        layout.flatten(bad, where="client")
    with pytest.raises(ValueError, match=r"vector has shape \(7,\)"):
        layout.parts(np.zeros(7))
    with pytest.raises(ValueError, match="no arrays"):
        ArrayLayout.of({})
    with pytest.raises(ValueError, match="no floating-point"):
        ArrayLayout.of({"n": np.ones(2, np.int32)})
