"""GossipProtocol: push-sum reaches the basket mean in O(log n) rounds, conserves mass, and
follows basket membership between rounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hierfed import BasketConfig, BasketManager, GossipProtocol


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def basket_of(n: int, clock: FakeClock | None = None) -> tuple[BasketManager, str, list[str]]:
    """A manager with one basket of ``n`` clients ``c00000``..."""
    config = BasketConfig(min_clients=1, max_clients=max(n, 1) + 10)
    manager = BasketManager(config, clock=clock or FakeClock(), seed=0)
    ids = [f"c{i:05d}" for i in range(n)]
    basket = manager.create_basket("d")
    for cid in ids:
        assert manager.add_client(cid, "d") == basket
    return manager, basket, ids


def values_for(ids: list[str], d: int, seed: int) -> dict[str, np.ndarray]:
    """Values with a large common offset, so 'relative to scale' is not trivially loose."""
    rng = np.random.default_rng(seed)
    return {cid: 1000.0 + 100.0 * rng.standard_normal(d) for cid in ids}


# Kempe, Dobra and Gehrke (2003), Lemma 3.3: the potential (squared error of the mass vectors)
# shrinks in expectation by a factor 1/2 - 1/(4n) <= 1/2 per round, so relative error eps
# needs about log2(n) + 2 log2(1/eps) rounds. With eps = 1e-6 (log2(1/eps) < 20) that is at
# most 4 + 40 = 44 rounds for n = 16 (44 / log2 16 = 11) and less per log2 n for larger n;
# c = 12 leaves a margin. n = 2 is exact after one round: both hold (x1 + x2) / 2.
C_ROUNDS = 12


@pytest.mark.parametrize("n", [2, 16, 128, 1024])
def test_reaches_mean_in_log_rounds(n: int) -> None:
    manager, basket, ids = basket_of(n)
    for seed in range(3):
        values = values_for(ids, d=8, seed=seed)
        gossip = GossipProtocol(manager, seed=seed)
        estimates = gossip.average(basket, values, tol=1e-6)
        mean = np.mean(np.stack(list(values.values())), axis=0)
        scale = max(float(np.abs(v).max()) for v in values.values())
        assert estimates.keys() == values.keys()
        worst = max(float(np.abs(e - mean).max()) for e in estimates.values())
        assert worst <= 1e-6 * scale
        assert 1 <= gossip.last_rounds <= C_ROUNDS * math.log2(n)
        if n == 2:
            assert gossip.last_rounds == 1


def test_rounds_grow_like_log_n() -> None:
    """From n = 16 to 1024 (6 doublings) the eps term cancels: a few rounds per doubling."""

    def median_rounds(n: int) -> float:
        manager, basket, ids = basket_of(n)
        rounds = []
        for seed in range(5):
            gossip = GossipProtocol(manager, seed=seed)
            gossip.average(basket, values_for(ids, d=4, seed=seed))
            rounds.append(gossip.last_rounds)
        return float(np.median(rounds))

    assert median_rounds(1024) - median_rounds(16) <= 3 * (10 - 4)


def test_single_client_is_a_no_op() -> None:
    clock = FakeClock()
    manager, basket, _ = basket_of(1, clock)
    clock.t = 50.0
    gossip = GossipProtocol(manager, seed=0)
    value = np.array([[1.5, -2.0]])
    out = gossip.average(basket, {"c00000": value})
    np.testing.assert_array_equal(out["c00000"], value)
    assert out["c00000"].dtype == np.float64 and gossip.last_rounds == 0
    info = manager.get_basket(basket)
    assert info is not None and info.last_activity == 50.0  # the run touched the basket
    assert gossip.sample_peer(basket, "c00000") is None


def test_empty_basket_and_empty_values() -> None:
    manager = BasketManager()
    basket = manager.create_basket("d")
    assert GossipProtocol(manager).average(basket, {}) == {}
    manager, basket, ids = basket_of(3)
    out = GossipProtocol(manager).average(basket, {c: np.zeros(0) for c in ids})
    assert all(v.shape == (0,) for v in out.values())
    scalars = GossipProtocol(manager, seed=0).average(
        basket, {c: float(i) for i, c in enumerate(ids)}
    )
    assert all(v.shape == () and abs(float(v) - 1.0) <= 1e-6 * 2 for v in scalars.values())


def test_fixed_rounds_and_shapes() -> None:
    manager, basket, ids = basket_of(5)
    rng = np.random.default_rng(0)
    values = {cid: rng.standard_normal((2, 3)) for cid in ids}
    gossip = GossipProtocol(manager, seed=1)
    out = gossip.average(basket, values, rounds=0)
    assert all(np.array_equal(out[c], values[c]) for c in ids)
    out = gossip.average(basket, values, rounds=3)
    assert gossip.last_rounds == 3 and all(v.shape == (2, 3) for v in out.values())
    assert gossip.stats["runs"] == 2 and gossip.stats["rounds"] == 3
    with pytest.raises(RuntimeError, match="did not reach"):
        gossip.average(basket, values, tol=1e-300, max_rounds=5)


def test_bad_values() -> None:
    manager, basket, ids = basket_of(3)
    gossip = GossipProtocol(manager, seed=0)
    good = {cid: np.zeros(2) for cid in ids}
    with pytest.raises(ValueError, match=r"lacks members.*'c00002'"):
        gossip.average(basket, {c: v for c, v in good.items() if c != "c00002"})
    with pytest.raises(ValueError, match=r"not in basket.*'stranger'"):
        gossip.average(basket, {**good, "stranger": np.zeros(2)})
    with pytest.raises(ValueError, match="one shape"):
        gossip.average(basket, {**good, "c00001": np.zeros(3)})
    with pytest.raises(ValueError, match="NaN"):
        gossip.average(basket, {**good, "c00001": np.array([0.0, np.nan])})
    with pytest.raises(TypeError, match="numeric"):
        gossip.average(basket, {**good, "c00001": np.array(["a", "b"])})
    with pytest.raises(TypeError, match="mapping"):
        gossip.average(basket, [np.zeros(2)] * 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown basket_id"):
        gossip.average("nope", good)
    with pytest.raises(ValueError, match="rounds"):
        gossip.average(basket, good, rounds=-1)
    with pytest.raises(ValueError, match="tol"):
        gossip.average(basket, good, tol=0.0)
    with pytest.raises(TypeError, match="tol"):
        gossip.average(basket, good, tol="small")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="manager"):
        GossipProtocol(object())  # type: ignore[arg-type]


def test_leave_and_join_between_rounds() -> None:
    manager, basket, ids = basket_of(8)
    gossip = GossipProtocol(manager, seed=3)
    values = values_for(ids, d=3, seed=0)
    state = gossip.step(gossip.start(basket, values))
    before_x, before_w = state.mass()

    leaver = state.members[2]
    row = state.members.index(leaver)
    lost_x, lost_w = state.x[row].copy(), float(state.w[row])
    manager.remove_client(leaver)  # its pending mass is dropped, the basket continues
    state = gossip.step(state)
    assert leaver not in state.members
    x, w = state.mass()
    np.testing.assert_allclose(x, before_x - lost_x, rtol=1e-12)
    assert w == pytest.approx(before_w - lost_w, rel=1e-12)

    manager.add_client("late", "d")
    state = gossip.step(state)  # no value given: not gossiping yet
    assert "late" not in state.members
    with pytest.raises(ValueError, match="not in basket"):
        gossip.step(state, joined={"ghost": np.zeros(3)})
    with pytest.raises(ValueError, match="already gossiping"):
        gossip.step(state, joined={ids[0]: np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        gossip.step(state, joined={"late": np.zeros(4)})
    x, w = state.mass()
    state = gossip.step(state, joined={"late": np.full(3, 500.0)})
    assert "late" in state.members
    x2, w2 = state.mass()
    np.testing.assert_allclose(x2, x + 500.0, rtol=1e-12)
    assert w2 == pytest.approx(w + 1.0, rel=1e-12)

    while not state.converged(1e-9):
        state = gossip.step(state)
    target = x2 / w2  # the mass that remains, not the plain mean of the original values
    for est in state.estimates().values():
        np.testing.assert_allclose(est, target, rtol=1e-8)


def test_sample_peer_is_uniform_over_the_others() -> None:
    manager, basket, ids = basket_of(4)
    gossip = GossipProtocol(manager, seed=0)
    draws = [gossip.sample_peer(basket, "c00000") for _ in range(400)]
    counts = {cid: draws.count(cid) for cid in ids[1:]}
    assert "c00000" not in draws and all(60 < c < 210 for c in counts.values())
    with pytest.raises(ValueError, match="not in basket"):
        gossip.sample_peer(basket, "stranger")


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 24),
    d=st.integers(1, 4),
    steps=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_mass_is_conserved_each_step(
    m: int, d: int, steps: int, seed: int, data: st.DataObject
) -> None:
    manager, basket, ids = basket_of(m)
    floats = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    values = {cid: np.array(data.draw(st.lists(floats, min_size=d, max_size=d))) for cid in ids}
    gossip = GossipProtocol(manager, seed=seed)
    state = gossip.start(basket, values)
    total_x, total_w = state.mass()
    atol = 1e-12 * max(1.0, float(sum(np.abs(v).sum() for v in values.values())))
    for _ in range(steps):
        state = gossip.step(state)
        x, w = state.mass()
        np.testing.assert_allclose(x, total_x, rtol=0, atol=atol)
        assert w == pytest.approx(total_w, rel=1e-12)
        assert (state.w > 0).all()
        # the mean is a positive-weighted average of the estimates: inside their range
        est = state.x / state.w[:, None]
        mean = total_x / total_w
        assert (est.min(axis=0) - atol <= mean).all() and (mean <= est.max(axis=0) + atol).all()
