"""Backend choice, forcing, threads, and the aggregate() result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hierfed
from hierfed import _backend

BACKENDS = _backend.available_backends()
PACKAGE_ROOT = str(Path(hierfed.__file__).resolve().parent.parent)


def run_python(code: str, **env_overrides: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports this hierfed, with env overrides.

    An override of ``None`` removes the variable.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    for name in ("HIERFED_BACKEND", "HIERFED_NUM_THREADS"):
        env.pop(name, None)
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


# Fakes a missing module before hierfed is imported, then reports what `import hierfed` does.
IMPORT_PROBE = """
import sys
for name in {missing!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
try:
    import hierfed
except Exception as exc:
    print("RAISED", type(exc).__name__, exc)
else:
    print("BACKEND", hierfed.backend())
"""


def probe(missing: tuple[str, ...] = (), **env: str | None) -> str:
    """stdout of IMPORT_PROBE; the subprocess itself must exit cleanly."""
    done = run_python(IMPORT_PROBE.format(missing=missing), **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# ----------------------------------------------------------------------------- choice


def test_backend_is_known_and_honours_the_environment():
    """backend() is one of cpp/numba/numpy: HIERFED_BACKEND when set, else the fastest."""
    assert hierfed.backend() in ("cpp", "numba", "numpy")
    forced = os.environ.get("HIERFED_BACKEND", "").strip().lower()
    if forced:
        assert hierfed.backend() == forced
    else:
        assert hierfed.backend() == BACKENDS[0]
    assert _backend.kernels() is _backend._load(hierfed.backend())


def test_available_backends_are_ordered_fastest_first():
    """available_backends() lists a subsequence of cpp, numba, numpy and always has numpy."""
    assert BACKENDS[-1] == "numpy"
    assert list(BACKENDS) == [b for b in ("cpp", "numba", "numpy") if b in BACKENDS]


@pytest.mark.parametrize("name", BACKENDS)
def test_forcing_an_available_backend(name):
    """HIERFED_BACKEND=name (any case, padded) makes it the active backend."""
    assert probe(HIERFED_BACKEND=name) == f"BACKEND {name}"
    assert probe(HIERFED_BACKEND=f" {name.upper()} ") == f"BACKEND {name}"


def test_default_is_the_fastest_available():
    """Without HIERFED_BACKEND the first available of cpp, numba, numpy is used."""
    assert probe() == f"BACKEND {BACKENDS[0]}"


def test_fallback_chain_without_extension_and_numba():
    """With the extension and numba missing, the default falls back to numpy."""
    assert probe(("hierfed._core", "numba")) == "BACKEND numpy"
    without_cpp = "numba" if "numba" in BACKENDS else "numpy"
    assert probe(("hierfed._core",)) == f"BACKEND {without_cpp}"


def test_forcing_an_unknown_backend_raises():
    """An unknown name is an ImportError listing the valid ones."""
    out = probe(HIERFED_BACKEND="fortran")
    assert out.startswith("RAISED ImportError")
    assert "HIERFED_BACKEND must be one of cpp, numba, numpy, got 'fortran'" in out


def test_forcing_numba_without_numba_raises_with_the_fix():
    """HIERFED_BACKEND=numba with numba missing says how to install it."""
    out = probe(("numba",), HIERFED_BACKEND="numba")
    assert out.startswith("RAISED ImportError")
    assert "hierfed backend 'numba' is unavailable" in out
    assert "pip install 'hierfed[numba]'" in out


def test_forcing_cpp_without_the_extension_raises_with_the_fix():
    """HIERFED_BACKEND=cpp with the extension missing says how to rebuild it."""
    out = probe(("hierfed._core",), HIERFED_BACKEND="cpp")
    assert out.startswith("RAISED ImportError")
    assert "hierfed backend 'cpp' is unavailable" in out
    assert "HIERFED_REQUIRE_EXTENSION=1 pip install" in out


def test_using_an_unknown_backend_raises():
    """using() refuses names that are not backends."""
    with pytest.raises(ValueError, match=r"backend must be one of"), _backend.using("fortran"):
        pass  # pragma: no cover


def test_using_restores_the_previous_backend():
    """using() switches inside the block and restores afterwards, even on error."""
    before = hierfed.backend()
    for name in BACKENDS:
        with pytest.raises(RuntimeError), _backend.using(name) as module:
            assert hierfed.backend() == name
            assert _backend.kernels() is module
            raise RuntimeError
        assert hierfed.backend() == before


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("bad", [2.0, "2", None, True, np.float64(2)])
def test_set_num_threads_rejects_non_ints(bad, restore_threads):
    """Threads must be an int (bool refused)."""
    with pytest.raises(TypeError, match=r"n must be an int"):
        hierfed.set_num_threads(bad)


@pytest.mark.parametrize("bad", [0, -1, -100])
def test_set_num_threads_rejects_values_below_one(bad, restore_threads):
    """Threads must be >= 1."""
    before = hierfed.get_num_threads()
    with pytest.raises(ValueError, match=r"n must be >= 1"):
        hierfed.set_num_threads(bad)
    assert hierfed.get_num_threads() == before


def test_set_num_threads_round_trips(restore_threads):
    """get_num_threads() returns what was set."""
    for n in (1, 2, 7):
        hierfed.set_num_threads(n)
        assert hierfed.get_num_threads() == n


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mean", {}),
        ("mean", {"weighted": True}),
        ("trimmed_mean", {"n_trim": 3}),
        ("trimmed_mean", {"n_trim": 11}),
        ("trimmed_mean", {"n_trim": 3, "weighted": True}),
        ("median", {}),
        ("median", {"weighted": True}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "-",
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_results_do_not_depend_on_thread_count(backend, name, kwargs, dtype, restore_threads):
    """1, 2 and more threads than cores give bit-identical results."""
    rng = np.random.default_rng(7)
    kwargs = dict(kwargs)
    x = rng.standard_normal((24, 20_011)).astype(dtype)
    if kwargs.pop("weighted", False):
        kwargs["weights"] = rng.uniform(0.5, 2.0, 24)
    fn = getattr(hierfed, name)
    results = []
    for threads in (1, 2, (os.cpu_count() or 1) + 3):
        hierfed.set_num_threads(threads)
        results.append(fn(x, **kwargs))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0], strict=True)
    with _backend.using("numpy"):
        reference = fn(x, **kwargs)
    if name == "median":
        np.testing.assert_array_equal(results[0], reference, strict=True)
    else:
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(results[0], reference, rtol=tol, atol=tol * 5)


def test_num_threads_environment_variable():
    """HIERFED_NUM_THREADS sets the default thread count; without it, all usable cores."""
    code = "import hierfed; print(hierfed.get_num_threads())"
    done = run_python(code, HIERFED_NUM_THREADS="3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_num_threads_environment_variable_is_reported(bad):
    """An invalid HIERFED_NUM_THREADS is a ValueError naming the variable."""
    done = run_python("import hierfed", HIERFED_NUM_THREADS=bad)
    assert done.returncode != 0
    assert "ValueError: HIERFED_NUM_THREADS must be a positive integer" in done.stderr


# ----------------------------------------------------------------------------- aggregate()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("mean", {}),
        ("mean", {"weights": [1.0, 2.0, 0.0, 1.0, 3.0, 1.0, 1.0]}),
        ("trimmed_mean", {"trim_ratio": 0.3}),
        ("trimmed_mean", {"n_trim": 2, "weights": [1, 2, 3, 4, 5, 6, 7]}),
        ("median", {}),
        ("median", {"weights": [1, 1, 1, 1, 0, 0, 5]}),
    ],
)
def test_aggregate_returns_a_result(backend, method, params, rng):
    """aggregate() returns AggregationResult matching the rule function, by name or enum."""
    x = rng.standard_normal((7, 12))
    direct = getattr(hierfed, method)(x, **params)
    for how in (method, hierfed.AggregationMethod(method)):
        result = hierfed.aggregate(x, how, **params)
        assert isinstance(result, hierfed.AggregationResult)
        assert result.method is hierfed.AggregationMethod(method)
        assert result.method == method
        assert result.n_inputs == 7
        assert result.selected is None
        assert result.outliers_removed == ()
        np.testing.assert_array_equal(result.aggregate, direct, strict=True)


def test_aggregate_default_is_mean_and_handles_models(rng):
    """The default method is the mean; models give a list of layers and n_inputs = n."""
    models = [[rng.standard_normal((2, 3)), rng.standard_normal(4)] for _ in range(5)]
    result = hierfed.aggregate(models)
    assert result.method is hierfed.AggregationMethod.MEAN
    assert result.n_inputs == 5
    expected = hierfed.mean(models)
    assert len(result.aggregate) == 2
    for got, want in zip(result.aggregate, expected, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


def test_aggregation_method_values():
    """The enum's values are the public function names, each exported."""
    values = [m.value for m in hierfed.AggregationMethod]
    assert values == [
        "mean",
        "trimmed_mean",
        "median",
        "krum",
        "multi_krum",
        "bulyan",
        "geometric_median",
        "centered_clipping",
        "mda",
        "meamed",
        "monna",
    ]
    assert all(callable(getattr(hierfed, v)) for v in values)
