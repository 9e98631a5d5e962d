"""One Flower round of examples/flower, private path against plaintext path, in one process.

Group ``flower round 6 members 2 baskets d=650``: the example's ClientApps on a Grid that hands
each message to its node in this process (``tests/flower_private_local.py``), so the entries
time the work of a round (members' training, sealing, the basket aggregators' Layer 1, noise
and SecAgg+ stages with their state serialised between messages, the ServerApp's relay,
unmasking and release) without Flower's transport and process starts. Baseline ``plaintext``:
``HierarchicalStrategy`` over the same nodes without roles (models in the clear, Layer 1 and
Layer 2 with in-process SecAgg+ in the ServerApp). The deployment's wall time per round, which
adds the SuperNodes' polling and a ClientApp process per message, is in bench/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flwr")
pytest.importorskip("sklearn")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from flower_private_local import LocalGrid, deployment, example_modules
from flwr.app import Array, ArrayRecord
from flwr.supercore.task_identity import TaskIdentity

from hierfed.integrations.flower_private import PrivateRounds
from hierfed.integrations.private_provision import load_server

GROUP = "flower round 6 members 2 baskets d=650"


@pytest.fixture(autouse=True)
def _server_identity() -> Any:
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 0
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.mark.benchmark(group=GROUP)
def test_private_round(benchmark: Any, tmp_path: Path) -> None:
    _, _, _, task = example_modules()
    grid, _ = deployment(tmp_path, rounds=200)
    rounds = PrivateRounds(load_server(tmp_path / "server"), timeout=60.0)
    rounds.discover(grid, len(grid.contexts), wait=5.0)
    model = task.initial_arrays()
    counter = iter(range(1, 201))

    def one_round() -> None:
        new, report = rounds.round(grid, next(counter), model)
        assert report.released and new is not None

    benchmark.pedantic(one_round, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["path"] = "private"


@pytest.mark.benchmark(group=GROUP)
def test_plaintext_round(benchmark: Any) -> None:
    client_app, _, _, task = example_modules()
    from hierfed_flower import server_app

    configs = {100 + i: {"partition-id": i, "num-partitions": 6} for i in range(6)}
    grid = LocalGrid(client_app.app, configs)
    cfg = task.settings({"min-nodes": 6})
    initial = ArrayRecord({k: Array(a) for k, a in task.initial_arrays().items()})

    def one_round() -> None:
        strategy = server_app.HierarchicalStrategy(
            server_app.federation_config(cfg),
            min_available_nodes=6,
            min_train_nodes=6,
            fraction_evaluate=0.0,
            seed=0,
        )
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=1)
        assert result.arrays is not None

    benchmark.pedantic(one_round, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["path"] = "plaintext"
