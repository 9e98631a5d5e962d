"""HierarchicalFederation: triggers, staleness, rejections, join/leave, threads, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threads import run_in_threads

from hierfed import NoiseGenerator, trimmed_mean
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config
from hierfed.staleness import staleness_function

D = 32


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _config(min_updates: int = 3, min_baskets: int = 2, **kw) -> FederationConfig:
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=kw.pop("max_clients", 100)),
        layer1=Layer1Config(min_updates=min_updates, apply_local_noise=False),
        layer2=Layer2Config(
            use_secure_aggregation=False,
            central_dp_epsilon=None,
            min_baskets=min_baskets,
            clip_norm=1e6,
        ),
        **kw,
    )


def _fed(
    config: FederationConfig | None = None, clock: Clock | None = None, **kw
) -> HierarchicalFederation:
    return HierarchicalFederation(
        config or _config(),
        clock=clock or Clock(),
        generator=NoiseGenerator(seed=0, secure=False),
        seed=0,
        **kw,
    )


def _u(seed: int, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=D).astype(dtype)


def test_one_synchronous_round_is_the_mean_of_basket_trimmed_means() -> None:
    fed = _fed(_config(min_updates=4))
    ups = {}
    for dom in ("health", "bank"):
        for i in range(4):
            cid = f"{dom}{i}"
            fed.register_client(cid, dom)
            ups[cid] = _u(len(ups))
    for cid, u in ups.items():
        assert fed.submit_update(cid, u, base_version=0)
    assert fed.version == 1 and fed.latest is not None
    means = [trimmed_mean([ups[f"{d}{i}"] for i in range(4)], 0.1) for d in ("health", "bank")]
    np.testing.assert_allclose(fed.model, (means[0] + means[1]) / 2, rtol=1e-12)
    stats = fed.get_stats()
    assert (
        stats["accepted"] == 8 and stats["aggregated_updates"] == 8 and stats["global_rounds"] == 1
    )
    assert fed.latest.n_clients_total == 8 and fed.latest.round_id == 0


def test_the_model_moves_by_the_server_learning_rate() -> None:
    fed = _fed(
        _config(min_updates=1, min_baskets=1, server_learning_rate=0.5), initial_model=np.ones(D)
    )
    fed.register_client("a", "x")
    u = _u(0)
    fed.submit_update("a", u, 0)
    np.testing.assert_allclose(fed.model, 1 + 0.5 * u)


@pytest.mark.parametrize(
    ("kind", "params", "want"),
    [
        ("exponential", {}, [1, 0.9, 0.81, 0.9**10]),
        ("constant", {}, [1, 1, 1, 1]),
        ("polynomial", {"a": 0.5}, [1, 2**-0.5, 3**-0.5, 11**-0.5]),
        ("sqrt", {}, [1, 1 / math.sqrt(2), 1 / math.sqrt(3), 1 / math.sqrt(11)]),
        ("hinge", {"a": 10, "b": 1}, [1, 1, 1 / 11, 1 / 91]),
    ],
)
def test_staleness_presets(kind: str, params: dict, want: list[float]) -> None:
    fn = staleness_function(kind, **params)
    assert [fn(s) for s in (0, 1, 2, 10)] == pytest.approx(want)


def test_staleness_errors() -> None:
    with pytest.raises(ValueError, match="one of"):
        staleness_function("linear")
    with pytest.raises(TypeError):
        staleness_function("constant", base=0.5)
    with pytest.raises(ValueError, match="base"):
        staleness_function("exponential", base=2)


def test_stale_updates_are_weighted_and_too_stale_ones_dropped() -> None:
    cfg = _config(min_updates=2, min_baskets=1, max_staleness=2)
    cfg.layer1.aggregation_method = "mean"
    fed = _fed(cfg)
    for c in "abcd":
        fed.register_client(c, "x")
    fed.submit_update("a", _u(0), 0)
    fed.submit_update("b", _u(1), 0)  # round 0 -> version 1
    fed.submit_update("a", _u(2), 1)
    fed.submit_update("b", _u(3), 1)  # version 2
    fed.submit_update("c", _u(4), 0)  # staleness 2: weight 0.81
    before = fed.model.copy()
    fed.submit_update("d", _u(5), 2)  # staleness 0
    want = (0.81 * _u(4) + _u(5)) / 1.81
    np.testing.assert_allclose(fed.model - before, want, rtol=1e-10)
    fed.register_client("e", "x")
    assert fed.submit_update("e", _u(6), 0) is False  # staleness 3 > 2
    assert fed.get_stats()["dropped_stale"] == 1


def test_bad_updates_are_rejected_counted_and_never_aggregated() -> None:
    fed = _fed(_config(min_updates=2, min_baskets=1))
    fed.register_client("a", "x")
    fed.register_client("b", "x")
    fed.submit_update("a", _u(0), 0)
    bad_nan = _u(1)
    bad_nan[3] = np.nan
    cases = [
        ("ghost", _u(1), 0, ValueError, "unknown_client"),
        ("b", np.zeros(D + 1), 0, ValueError, "shape"),
        ("b", _u(1, np.float32), 0, ValueError, "shape"),
        ("b", np.zeros(D, np.int64), 0, TypeError, "dtype"),
        ("b", [0.0] * D, 0, TypeError, "type"),
        ("b", bad_nan, 0, ValueError, "non_finite"),
        ("b", _u(1), 5, ValueError, "base_version"),
        ("b", _u(1), -1, ValueError, "base_version"),
        ("a", _u(1), 0, ValueError, "duplicate"),
    ]
    for cid, upd, base, err, reason in cases:
        with pytest.raises(err):
            fed.submit_update(cid, upd, base)
        assert fed.get_stats()["rejected"][reason] >= 1
    assert fed.version == 0 and len(fed.buffer) == 1
    fed.submit_update("b", _u(1), 0)
    np.testing.assert_allclose(fed.model, trimmed_mean([_u(0), _u(1)], 0.1))
    assert sum(fed.get_stats()["rejected"].values()) == len(cases)


def test_one_update_per_client_per_round() -> None:
    fed = _fed(_config(min_updates=3, min_baskets=1))
    for c in "abc":
        fed.register_client(c, "x")
    fed.submit_update("a", _u(0), 0)
    fed.submit_update("b", _u(1), 0)
    with pytest.raises(ValueError, match="already submitted"):
        fed.submit_update("a", _u(2), 0)
    fed.submit_update("c", _u(2), 0)
    assert fed.version == 1
    assert fed.submit_update("a", _u(3), 1)  # a new round: a may submit again
    np.testing.assert_allclose(fed.model, trimmed_mean([_u(0), _u(1), _u(2)], 0.1))


def test_leave_drops_the_pending_update_and_join_takes_part() -> None:
    fed = _fed(_config(min_updates=2, min_baskets=1))
    fed.register_client("a", "x")
    fed.register_client("b", "x")
    fed.submit_update("a", _u(0), 0)
    assert fed.remove_client("a") is True
    assert fed.remove_client("a") is False
    assert len(fed.buffer) == 0 and fed.get_stats()["dropped_on_leave"] == 1
    fed.register_client("c", "x")
    fed.submit_update("b", _u(1), 0)
    fed.submit_update("c", _u(2), 0)
    np.testing.assert_allclose(fed.model, trimmed_mean([_u(1), _u(2)], 0.1))


def test_basket_timeout_trigger() -> None:
    clock = Clock()
    fed = _fed(_config(min_updates=5, min_baskets=1, basket_timeout=30.0), clock)
    fed.register_client("a", "x")
    fed.submit_update("a", _u(0), 0)
    assert fed.poll() is None and fed.version == 0
    clock.t += 31
    assert fed.poll() is not None and fed.version == 1
    np.testing.assert_allclose(fed.model, _u(0))


def test_global_trigger_waits_for_min_baskets_and_flush_forces() -> None:
    fed = _fed(_config(min_updates=1, min_baskets=3))
    for i, dom in enumerate(("x", "y")):
        fed.register_client(f"c{i}", dom)
        fed.submit_update(f"c{i}", _u(i), 0)
    assert fed.version == 0 and fed.get_stats()["pending_basket_models"] == 2
    assert fed.flush() is not None and fed.version == 1
    np.testing.assert_allclose(fed.model, (_u(0) + _u(1)) / 2)


def test_two_models_of_one_basket_both_count() -> None:
    fed = _fed(_config(min_updates=1, min_baskets=2))
    fed.register_client("a", "x")
    fed.register_client("b", "x")
    fed.submit_update("a", _u(0), 0)
    fed.submit_update("b", _u(1), 0)
    assert fed.version == 0  # one basket, two models: still one basket
    fed.flush()
    np.testing.assert_allclose(fed.model, (_u(0) + _u(1)) / 2)


def test_split_rehomes_buffered_updates() -> None:
    fed = _fed(_config(min_updates=3, min_baskets=1, max_clients=4))
    for c in "abcd":
        fed.register_client(c, "x")
    fed.submit_update("a", _u(0), 0)
    fed.submit_update("b", _u(1), 0)
    old = fed.manager.get_client_basket("a")
    fed.manager.split_basket(old)
    fed.flush()
    assert fed.version == 1 and fed.get_stats()["aggregated_updates"] == 2


def test_secure_and_private_round() -> None:
    cfg = FederationConfig(
        layer1=Layer1Config(min_updates=3, apply_local_noise=False),
        layer2=Layer2Config(min_baskets=3, central_dp_epsilon=1.0, clip_norm=10.0),
    )
    fed = _fed(cfg)
    for dom in "xyz":
        for i in range(3):
            fed.register_client(f"{dom}{i}", dom)
            fed.submit_update(f"{dom}{i}", _u(i) * 0.01, 0)
    stats = fed.get_stats()["last_layer2"]
    assert stats["secure_agg_simulated"] is True and stats["secure_agg_used"] is False
    assert stats["n_baskets"] == 3
    assert fed.privacy_spent() == (pytest.approx(1.0), 1e-5)


def test_concurrent_clients_lose_and_double_count_nothing() -> None:
    """8 threads register, submit over several rounds, poll and leave; every accepted update
    ends up aggregated exactly once or dropped with its leaving client."""
    fed = _fed(_config(min_updates=4, min_baskets=2, max_clients=10))
    n_threads, per_thread, rounds = 8, 12, 3
    accepted = [0] * n_threads

    def work(t: int) -> None:
        ids = [f"t{t}c{i}" for i in range(per_thread)]
        for cid in ids:
            fed.register_client(cid, f"d{t % 3}")
        for _ in range(rounds):
            for cid in ids:
                try:
                    accepted[t] += fed.submit_update(cid, _u(t), fed.version)
                except ValueError as e:  # still buffered from an earlier round
                    assert "already submitted" in str(e)
            if t % 2:
                fed.poll()
        fed.remove_client(ids[-1])

    run_in_threads(work, n_threads)
    fed.flush()
    s = fed.get_stats()
    assert s["accepted"] == sum(accepted) >= n_threads * per_thread
    assert s["accepted"] == s["aggregated_updates"] + s["dropped_on_leave"]
    assert s["buffered_updates"] == 0 and s["pending_basket_models"] == 0
    assert s["baskets"]["n_clients"] == n_threads * (per_thread - 1)
    assert s["global_rounds"] == fed.version >= 2


def _state(fed: HierarchicalFederation) -> dict:
    s = fed.get_stats()
    return {
        "version": fed.version,
        "model": None if fed.model is None else fed.model.tolist(),
        "buffer": sorted(
            (p.client_id, p.basket_id, p.staleness, p.update.tolist()) for p in fed.buffer.all()
        ),
        "stats": {k: v for k, v in s.items() if k != "baskets"},
        "baskets": fed.manager.state_dict(),
    }


def test_checkpoint_round_trip_and_continuation(tmp_path) -> None:
    cfg = _config(min_updates=3, min_baskets=2)
    fed = _fed(cfg)
    for i in range(10):
        fed.register_client(f"c{i}", f"d{i % 2}")
    for i in range(7):
        fed.submit_update(f"c{i}", _u(i), 0)
    path = tmp_path / "fed.npz"
    fed.checkpoint(path)
    other = _fed(cfg)
    other.restore(path)
    assert _state(other) == _state(fed)
    for f in (fed, other):
        for i in range(7, 10):
            f.submit_update(f"c{i}", _u(i), f.version)
        f.flush()
    assert _state(other) == _state(fed)


def test_checkpoint_rejects_foreign_files(tmp_path) -> None:
    p = tmp_path / "x.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a hierfed checkpoint"):
        _fed().restore(p)


CRASH_SCRIPT = """
import sys, io, time
import numpy as np
import hierfed._checkpoint as ck
from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation
from hierfed.layers import Layer1Config, Layer2Config

path, marker = sys.argv[1], sys.argv[2]
cfg = FederationConfig(
    layer1=Layer1Config(min_updates=100, apply_local_noise=False),
    layer2=Layer2Config(use_secure_aggregation=False, central_dp_epsilon=None),
)
fed = HierarchicalFederation(cfg, clock=lambda: 5.0, generator=NoiseGenerator(seed=0, secure=False))
for i in range(8):
    fed.register_client(f"c{i}", "x")
for i in range(5):
    fed.submit_update(f"c{i}", np.full(4, float(i)), 0)
fed.checkpoint(path)  # state A: five acknowledged updates
for i in range(5, 8):
    fed.submit_update(f"c{i}", np.full(4, float(i)), 0)
real = np.savez

def torn(f, **arrays):
    buf = io.BytesIO()
    real(buf, **arrays)
    data = buf.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    open(marker, "w").close()
    time.sleep(120)

ck.np.savez = torn
fed.checkpoint(path)  # killed half-way through
"""


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path) -> None:
    import os
    import subprocess
    import sys
    import time

    path, marker = tmp_path / "fed.npz", tmp_path / "writing"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, str(script), str(path), str(marker)], env=env)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, "the writer died before it started the second checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    cfg = FederationConfig(
        layer1=Layer1Config(min_updates=100, apply_local_noise=False),
        layer2=Layer2Config(use_secure_aggregation=False, central_dp_epsilon=None, clip_norm=100.0),
    )
    fed = HierarchicalFederation(cfg, generator=NoiseGenerator(seed=0, secure=False))
    fed.restore(path)
    got = sorted((p.client_id, p.update.tolist()) for p in fed.buffer.all())
    assert got == [(f"c{i}", [float(i)] * 4) for i in range(5)]
    assert fed.get_stats()["accepted"] == 5 and fed.manager.get_stats()["n_clients"] == 8
    for i in range(5, 8):  # the restored federation goes on
        fed.submit_update(f"c{i}", np.full(4, float(i)), 0)
    fed.flush()
    np.testing.assert_allclose(fed.model, np.full(4, trimmed_mean(np.arange(8.0)[:, None], 0.1)[0]))


def test_spec_aggregation_flow_examples() -> None:
    """spec/layers.md's trigger functions, as written, over a federation's parts."""
    fed = _fed(_config(min_updates=100, min_baskets=2))
    for dom in ("x", "y"):
        for i in range(3):
            fed.register_client(f"{dom}{i}", dom)
            fed.submit_update(f"{dom}{i}", _u(i + (dom == "y") * 10), 0)
    buffer, layer1, layer2, config = fed.buffer, fed.layer1, fed.layer2, fed.config.layer2
    stored: dict[str, object] = {}
    distributed = []

    def store_basket_model(basket_id, model):
        stored[basket_id] = model

    def get_all_basket_models():
        return list(stored.values())

    def distribute_to_clients(model):
        distributed.append(model)

    def aggregate_basket(basket_id):
        updates = buffer.pop_basket_updates(basket_id)

        # Compute staleness weights
        weights = [0.9**u.staleness for u in updates]

        # Aggregate
        basket_model = layer1.aggregate([u.update for u in updates], weights)

        store_basket_model(basket_id, basket_model)

    def aggregate_global():
        basket_models = get_all_basket_models()

        if len(basket_models) < config.min_baskets:
            return None

        global_model = layer2.aggregate(basket_models)
        distribute_to_clients(global_model)

        return global_model

    first = fed.manager.get_client_basket("x0")
    aggregate_basket(first)
    assert aggregate_global() is None
    aggregate_basket(fed.manager.get_client_basket("y0"))
    out = aggregate_global()
    assert out is not None and distributed == [out] and out.n_clients_total == 6
    want = (
        trimmed_mean([_u(i) for i in range(3)], 0.1)
        + trimmed_mean([_u(i + 10) for i in range(3)], 0.1)
    ) / 2
    np.testing.assert_allclose(out.aggregate, want)
    layer1_keys = {
        "basket_id",
        "n_updates",
        "aggregation_method",
        "outliers_removed",
        "local_noise_added",
    }
    layer2_keys = {
        "n_baskets",
        "n_clients_total",
        "secure_agg_used",
        "central_dp_epsilon",
        "round_id",
    }
    assert layer1_keys <= set(layer1.last_stats) and layer2_keys <= set(layer2.last_stats)


def test_autosave_keeps_every_acknowledged_update(tmp_path) -> None:
    path = tmp_path / "auto.npz"
    cfg = _config(min_updates=3, min_baskets=1, checkpoint_path=path)
    fed = _fed(cfg)
    for c in "abcde":
        fed.register_client(c, "x")
    for i, c in enumerate("abcd"):
        assert fed.submit_update(c, _u(i), fed.version)
        restored = _fed(cfg)
        restored.restore(path)  # as if the process died right after the acknowledgement
        assert _state(restored) == _state(fed)
    assert fed.version == 1 and len(fed.buffer) == 1
    with pytest.raises(ValueError, match="checkpoint_every"):
        _config(checkpoint_every=0)
