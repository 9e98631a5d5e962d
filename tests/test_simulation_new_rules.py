"""``hierfed simulate`` with the new rules and pre-steps: options, defaults of f, one run each."""

from __future__ import annotations

import numpy as np
import pytest

from hierfed import cli
from hierfed.simulation.config import SimulationConfig
from hierfed.simulation.study import prepare

SMALL = dict(dataset="wine", clients=20, domains=2, clients_per_basket=10, rounds=2, batch_size=8)


def test_options_reach_the_config() -> None:
    argv = ["simulate", "--rule", "mda", "--pre", "bucketing", "--pre", "nnm", "--f", "1"]
    settings = cli.settings_from_args(cli.build_parser().parse_args(argv))[0]
    cfg = SimulationConfig(**settings)  # type: ignore[arg-type]
    assert (cfg.rule, cfg.pre, cfg.f) == ("mda", ["bucketing", "nnm"], 1)
    assert cfg.rule_kwargs()["s"] == 2 and cfg.min_inputs(1) == 2 * (3 - 1) + 1
    with pytest.raises(ValueError, match="pre must be a list of steps"):
        SimulationConfig(pre=["shuffle"])
    with pytest.raises(ValueError, match="f applies to"):
        SimulationConfig(rule="median", f=1)
    assert SimulationConfig(rule="median", pre=["arc"], f=1).f_for(15) == 1


def test_f_defaults_of_the_new_rules() -> None:
    for rule in ("mda", "meamed", "monna"):
        assert SimulationConfig(rule=rule).f_for(15) == 7  # an honest majority of 15
    assert SimulationConfig(rule="mda").f_most(75) == 2  # the exact search's bound
    assert SimulationConfig(rule="krum", pre=["bucketing"]).f_most(15) == 2  # 8 buckets


@pytest.mark.parametrize(
    ("rule", "pre"), [("mda", []), ("meamed", ["arc"]), ("monna", ["bucketing", "nnm"])]
)
def test_each_rule_runs_flat_and_hierarchical(rule: str, pre: list[str]) -> None:
    sim = prepare(SimulationConfig(**SMALL, rule=rule, pre=pre))  # type: ignore[arg-type]
    for setup in ("flat", "hierarchical"):
        run = sim.run(setup)
        assert len(run.rounds) == 2 and np.isfinite(run.final_accuracy)
        assert run.final_accuracy > 0.5  # wine has 3 classes; the rule still learns
