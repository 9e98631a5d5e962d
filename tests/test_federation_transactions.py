"""Transactional triggers: a failed aggregation changes nothing; never-firing configs refused."""

from __future__ import annotations

import pytest
from test_federation import Clock, _fed, _state, _u

from hierfed import NoiseGenerator
from hierfed.basket import BasketConfig
from hierfed.federation import FederationConfig, HierarchicalFederation, TriggerError
from hierfed.layers import Layer1Config, Layer2Config


class Switch:
    """A staleness function that gives 0 to every update once ``broken`` (a hostile one)."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, s: int) -> float:
        return 0.0 if self.broken else 0.9**s


def _cfg(staleness=None, layer2: Layer2Config | None = None, noise: bool = False, **kw):
    return FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=100),
        layer1=Layer1Config(min_updates=3, apply_local_noise=noise, local_noise_multiplier=1.0),
        layer2=layer2
        or Layer2Config(
            use_secure_aggregation=False, central_dp_epsilon=None, min_baskets=2, clip_norm=1e6
        ),
        staleness=staleness or "exponential",
        **kw,
    )


def _full_state(fed: HierarchicalFederation) -> dict:
    state = _state(fed)
    state["basket_models"] = sorted(
        (m.basket_id, m.round_id, m.aggregate.tolist())
        for ms in fed._basket_models.values()
        for m in ms
    )
    state["layer1_history"] = {b: list(a.history) for b, a in fed.layer1._accountants.items()}
    state["contributed"] = sorted(fed._contributed)
    return state


def test_a_failing_basket_trigger_keeps_the_acknowledged_updates_and_allows_a_retry() -> None:
    weight = Switch()
    fed = _fed(_cfg(staleness=weight))
    for i in range(3):
        fed.register_client(f"c{i}", "x")
    assert fed.submit_update("c0", _u(0), 0) and fed.submit_update("c1", _u(1), 0)
    before = _full_state(fed)
    weight.broken = True
    with pytest.raises(TriggerError, match=r"basket .* Layer 1 failed over its 3") as err:
        fed.submit_update("c2", _u(2), 0)
    assert err.value.basket_id == fed.manager.get_client_basket("c0")
    assert _full_state(fed) == before  # c0 and c1 still buffered; c2 not counted
    weight.broken = False
    assert fed.submit_update("c2", _u(2), 0)  # the retry is not "already submitted"
    assert fed.get_stats()["basket_aggregations"] == 1 and len(fed.buffer) == 0
    assert fed.get_stats()["aggregated_updates"] == 3


def test_a_failing_global_round_keeps_every_basket_model() -> None:
    # Krum over basket models needs 5; min_baskets=5, but flush forces a round over two.
    layer2 = Layer2Config(
        use_secure_aggregation=False,
        central_dp_epsilon=None,
        clip_norm=1e6,
        robust_method="krum",
        robust_params={"f": 1},
        min_baskets=5,
    )
    fed = _fed(_cfg(layer2=layer2))
    for i in range(6):
        fed.register_client(f"c{i}", f"d{i % 2}")
        fed.submit_update(f"c{i}", _u(i), 0)
    assert fed.get_stats()["pending_basket_models"] == 2
    before = _full_state(fed)
    with pytest.raises(TriggerError, match="global round 0: Layer 2 failed over 2 basket"):
        fed.flush()
    assert _full_state(fed) == before  # the round of 6 updates is still there


def test_a_failing_global_round_inside_submit_undoes_its_basket_aggregation(
    monkeypatch,
) -> None:
    fed = _fed(_cfg(noise=True))
    for i in range(6):
        fed.register_client(f"c{i}", f"d{i % 2}")
    for i in range(5):
        fed.submit_update(f"c{i}", _u(i), 0)  # d0 aggregated (c0 c2 c4), d1 holds c1 c3
    before = _full_state(fed)
    spent = fed.layer1.privacy_spent(fed.manager.get_client_basket("c1"))

    def fail(models):
        raise ValueError("no round today")

    monkeypatch.setattr(fed.layer2, "aggregate", fail)
    with pytest.raises(TriggerError, match=r"not accepted .* no round today"):
        fed.submit_update("c5", _u(5), 0)
    assert _full_state(fed) == before
    assert fed.layer1.privacy_spent(fed.manager.get_client_basket("c1")) == spent
    monkeypatch.undo()
    assert fed.submit_update("c5", _u(5), 0) and fed.version == 1


def test_a_failed_checkpoint_write_leaves_the_update_unacknowledged(tmp_path, monkeypatch) -> None:
    import hierfed._checkpoint as ck

    fed = _fed(_cfg(checkpoint_path=tmp_path / "f.npz"))
    for i in range(3):
        fed.register_client(f"c{i}", "x")
    fed.submit_update("c0", _u(0), 0)
    fed.submit_update("c1", _u(1), 0)
    before = _full_state(fed)

    def full_disk(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        fed.submit_update("c2", _u(2), 0)  # would have completed the basket
    assert _full_state(fed) == before
    monkeypatch.undo()
    assert fed.submit_update("c2", _u(2), 0)


def test_poll_is_all_or_nothing() -> None:
    weight = Switch()
    clock = Clock()
    fed = _fed(_cfg(staleness=weight, basket_timeout=5.0), clock=clock)
    for i in range(4):
        fed.register_client(f"c{i}", f"d{i % 2}")
        fed.submit_update(f"c{i}", _u(i), 0)
    before = _full_state(fed)
    clock.t += 10
    weight.broken = True
    with pytest.raises(TriggerError, match="Layer 1 failed over its 2"):
        fed.poll()
    assert _full_state(fed) == before


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Layer1Config(aggregation_method="krum"), TypeError, "layer1: krum.*'f'"),
        (
            lambda: Layer1Config(aggregation_method="mean", method_params={"tau": 1.0}),
            TypeError,
            "layer1: mean with tau=1.0.*unexpected keyword argument 'tau'",
        ),
        (
            lambda: Layer1Config(aggregation_method="centered_clipping"),
            TypeError,
            "missing a required argument: 'tau'",
        ),
        (
            lambda: Layer1Config(aggregation_method="bulyan", method_params={"f": -1}),
            ValueError,
            "f must be >= 0",
        ),
        (
            lambda: FederationConfig(
                basket=BasketConfig(min_clients=1, max_clients=5),
                layer1=Layer1Config(aggregation_method="bulyan", method_params={"f": 3}),
            ),
            ValueError,
            "bulyan .* needs at least 15 updates per basket.*max_clients=5",
        ),
        (
            lambda: Layer2Config(
                use_secure_aggregation=False, robust_method="krum", robust_params={"f": 1}
            ),
            ValueError,
            "needs at least 5 basket models.*min_baskets=2",
        ),
        (
            lambda: Layer2Config(use_secure_aggregation=False, robust_method="krum"),
            TypeError,
            "layer2: krum.*'f'",
        ),
        (
            lambda: Layer2Config(
                use_secure_aggregation=False,
                robust_method="trimmed_mean",
                robust_params={"n_trim": 1},
            ),
            ValueError,
            "at least 3 basket models",
        ),
        (
            lambda: FederationConfig(staleness="exponential", staleness_params={"base": 0.0}),
            ValueError,
            "staleness weight at staleness 1 is 0.0",
        ),
        (
            lambda: FederationConfig(staleness=lambda s: 1.0 if s < 3 else 0.0),
            ValueError,
            "staleness 3 is 0.0",
        ),
        (
            lambda: FederationConfig(staleness=lambda s: float("nan")),
            ValueError,
            "staleness 0 is nan",
        ),
    ],
)
def test_configs_that_can_never_aggregate_are_refused(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


def test_configs_at_the_edge_are_accepted() -> None:
    FederationConfig(
        basket=BasketConfig(min_clients=1, max_clients=15),
        layer1=Layer1Config(aggregation_method="bulyan", method_params={"f": 3}),
    )
    Layer2Config(
        use_secure_aggregation=False, robust_method="krum", robust_params={"f": 1}, min_baskets=5
    )
    # weight 0 beyond max_staleness is never used
    FederationConfig(staleness="exponential", staleness_params={"base": 0.0}, max_staleness=0)
    HierarchicalFederation(
        FederationConfig(staleness=lambda s: 1.0 if s < 3 else 0.0, max_staleness=2),
        generator=NoiseGenerator(seed=0, secure=False),
    )
