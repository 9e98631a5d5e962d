"""``hierfed simulate --privacy-sweep``: accuracy against the record-level epsilon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hierfed
from hierfed import cli
from hierfed.simulation.config import SimulationConfig
from hierfed.simulation.dpsgd import epsilon_spent, steps_per_epoch
from hierfed.simulation.study import prepare
from hierfed.simulation.sweep import run_sweep

SMALL = dict(dataset="digits", clients=20, domains=2, clients_per_basket=10, rounds=3)

pytestmark = pytest.mark.skipif(
    hierfed.backend() != "cpp", reason="whole sweeps run once, on the compiled backend"
)


def test_each_point_spends_its_epsilon_and_more_noise_costs_accuracy() -> None:
    cfg = SimulationConfig(**SMALL)
    result = run_sweep(cfg, prepare(cfg), epsilons=(8.0, 0.5))
    assert [round(p.epsilon, 2) for p in result.points] == [0.5, 8.0]  # sorted, reached
    steps = 3 * steps_per_epoch(cfg.record_sample_rate)
    for p in result.points:
        assert p.noise_multiplier is not None
        assert p.epsilon == epsilon_spent(p.noise_multiplier, 0.25, steps, 1e-5)
        assert p.clean is not None and p.clean.attack == "none"
    low, high = result.points
    assert low.noise_multiplier > high.noise_multiplier  # type: ignore[operator]
    assert low.clean.final_accuracy < high.clean.final_accuracy  # type: ignore[union-attr]
    assert result.baseline.noise_multiplier is None and result.baseline.epsilon == 0.0
    assert result.rows()[-1][0] == "no DP"


def test_the_cli_writes_the_png_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--privacy-sweep", "--quiet", "--out", str(tmp_path)]
    argv += ["--clients", "20", "--domains", "2", "--clients-per-basket", "10", "--rounds", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "ε per record" in out and "no DP" in out
    assert (tmp_path / "privacy_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "privacy_sweep.json").read_text())
    assert doc["unit"] == "record" and len(doc["points"]) == 6
    eps = [p["record_epsilon"] for p in doc["points"]]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(16.0, rel=1e-2)
