"""The private path of examples/flower, every node in this process (flower_private_local.py):
the example's ClientApps (members, basket aggregators) and the ServerApp's PrivateRounds over a
Grid that hands each message to its node. The global model is checked against an independent
computation on the same updates (scipy's trimmed mean, clipping, the mean over baskets) within
the noise and quantisation bounds; killing a basket aggregator mid-round finishes on the
survivors or aborts with nothing released; a relay cannot forge, swap or replay."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("flwr")
pytest.importorskip("sklearn", reason="the example's data set comes from scikit-learn")

from flower_private_local import deployment, example_modules, member_update

from hierfed.deploy import SealContext, seal_update
from hierfed.integrations.flower_private import PrivateRounds
from hierfed.integrations.private_provision import load_member, load_server
from hierfed.secagg import SessionPlan

pytestmark = pytest.mark.skipif(
    os.environ.get("HIERFED_BACKEND", "") in ("numba", "numpy"),
    reason="the Flower private path runs once, on the default backend",
)


@pytest.fixture(autouse=True)
def _server_identity() -> Any:
    """Flower's runtime sets the ServerApp's task identity; here, the test does (and undoes)."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _flat(arrays: dict[str, Any]) -> np.ndarray:
    return np.concatenate([np.asarray(arrays["weight"]).ravel(), np.asarray(arrays["bias"])])


def _rounds(root: Path, grid: Any) -> PrivateRounds:
    rounds = PrivateRounds(load_server(root / "server"), timeout=5.0)
    rounds.discover(grid, len(grid.contexts), wait=5.0)
    return rounds


def test_three_private_rounds_match_the_reference_within_the_noise(tmp_path: Path) -> None:
    _, _, _, task = example_modules()
    grid, _ = deployment(tmp_path)
    rounds = _rounds(tmp_path, grid)
    ddg = rounds.files.ddg
    model = task.initial_arrays()
    for r in range(1, 4):
        new, report = rounds.round(grid, r, model)
        assert report.released and report.error is None, report
        assert report.survivors == ("domain-0", "domain-1") and report.dropped == {}
        assert report.relayed == {"domain-0": 3, "domain-1": 3}
        # the reference: each basket's trimmed mean (scipy), clipped, the mean over baskets
        baskets = []
        for b in range(2):
            updates = np.stack([member_update(task, model, i, 6) for i in range(b, 6, 2)])
            m = stats.trim_mean(updates.astype(np.float64), 0.2, axis=0)
            baskets.append(m * min(1.0, ddg.clip / np.linalg.norm(m)))
        expected = _flat(model) + np.mean(baskets, axis=0)
        assert new is not None
        error = np.linalg.norm(_flat(new) - expected)
        # rounding: < gamma sqrt(d) per basket; noise: sigma per coordinate over 2 baskets,
        # divided by the weight sum 2
        d = ddg.encoded_dim
        bound = (2 * ddg.gamma * math.sqrt(d) + 1.25 * ddg.sigma * math.sqrt(d)) / 2
        noise_floor = 0.5 * ddg.sigma * math.sqrt(ddg.dim) / 2
        assert noise_floor < error < bound, (error, noise_floor, bound)
        assert np.linalg.norm(expected - _flat(model)) > 4 * bound  # the signal dominates
        model = new
    epsilon, delta = rounds.aggregator.privacy_spent()
    assert epsilon == pytest.approx(ddg.epsilon(delta, rounds=3), rel=1e-9)
    x, y = task.held_out()
    assert task.evaluate(model, x, y)[1] > 0.8


def test_a_killed_basket_leaves_the_round_to_the_survivors(tmp_path: Path) -> None:
    _, _, _, task = example_modules()
    grid, _ = deployment(tmp_path, members=6, domains=3, n_min=2, rounds=1)
    rounds = _rounds(tmp_path, grid)
    grid.kill[202] = "masked_input"  # after it advertised and shared keys
    model = task.initial_arrays()
    new, report = rounds.round(grid, 1, model)
    assert report.released, report
    assert report.survivors == ("domain-0", "domain-1")
    assert report.dropped == {"domain-2": "masked_input: no reply in time"}
    assert new is not None and rounds.aggregator.rounds == 1


@pytest.mark.parametrize("stage", ["share_keys", "masked_input", "consistency", "unmask"])
def test_too_few_survivors_abort_and_release_nothing(tmp_path: Path, stage: str) -> None:
    _, _, _, task = example_modules()
    grid, _ = deployment(tmp_path, members=6, domains=3, n_min=3, rounds=1)
    rounds = _rounds(tmp_path, grid)
    grid.kill[201] = stage
    new, report = rounds.round(grid, 1, task.initial_arrays())
    assert new is None and not report.released
    assert report.dropped["domain-1"].startswith(stage)
    assert "fewer than" in str(report.error) or "survivors" in str(report.error)
    assert rounds.aggregator.rounds == 0 and rounds.aggregator.privacy_spent()[0] == 0.0


def _swap_two_members(m: Any) -> Any:
    """A relay that swaps the first two members' ciphertexts (and signatures) for their basket."""
    sealed = m.content.config_records.get("hierfed.sealed")
    if sealed is not None and "0" in sealed and "2" in sealed:
        sealed["0"], sealed["2"] = sealed["2"], sealed["0"]
        sealed["0:sig"], sealed["2:sig"] = sealed["2:sig"], sealed["0:sig"]
    return m


def _forge_member(m: Any) -> Any:
    """A relay that replaces member 0's update with its own, sealed to the basket's key."""
    sealed = m.content.config_records.get("hierfed.sealed")
    if sealed is not None and "0" in sealed:
        files = load_member(m._forge_dir)
        session = m._forge_session
        context = SealContext(session, 1, "0", files.basket_id)
        sealed["0"] = seal_update(np.full(650, 5.0, np.float32), files.basket_key, context)
    return m


@pytest.mark.parametrize("attack", ["swap", "forge"])
def test_a_relay_cannot_swap_or_forge_member_updates(tmp_path: Path, attack: str) -> None:
    _, _, _, task = example_modules()
    grid, _ = deployment(tmp_path, rounds=1)  # swap: 1 valid update left in basket 0
    rounds = _rounds(tmp_path, grid)
    session = SessionPlan.from_signed(rounds.files.plan(1), rounds.registry).session

    def tamper(m: Any) -> Any:
        if attack == "swap":
            return _swap_two_members(m)
        m._forge_dir, m._forge_session = tmp_path / "member-0", session
        return _forge_member(m)

    grid.tamper = tamper
    _, report = rounds.round(grid, 1, task.initial_arrays())
    assert report.released, report
    refused = report.rejected["domain-0"]
    want = {"0", "2"} if attack == "swap" else {"0"}
    assert {r.split(":")[0] for r in refused} == want, refused
    assert all("signature is not the member's" in r for r in refused)
    assert report.rejected["domain-1"] == []


def test_a_plan_relayed_twice_is_refused(tmp_path: Path) -> None:
    _, _, _, task = example_modules()
    grid, _ = deployment(tmp_path, rounds=2)
    rounds = _rounds(tmp_path, grid)
    model = task.initial_arrays()
    first, _ = rounds.round(grid, 1, model)
    assert first is not None
    again, report = rounds.round(grid, 1, first)  # round 1's plan once more
    assert again is None and not report.released
    assert all("replay" in why for why in report.dropped.values()), report.dropped
    assert rounds.aggregator.rounds == 1
