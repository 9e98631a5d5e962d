"""A whole ``hierfed simulate`` study: the data, the runs it plans, their results.

With ``compare`` the study runs the five setups of :mod:`hierfed.simulation.runner` on the
same data, clients, attackers and seed, each under the attack and, unless the attack is
``none``, also attack-free (the Byzantine clients then behave honestly), so the damage of the
attack is read off one table. Without ``compare`` it runs the config's one setup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._backend import backend
from .config import SETUPS, SimulationConfig
from .datasets import load_raw, make_federated
from .runner import RunResult, Simulation

__all__ = ["OnRound", "StudyResult", "plan", "prepare", "run_study"]

# Called after each round with the run's label, its attack and the round (1-based).
OnRound = Callable[[str, str, int], None]


def plan(config: SimulationConfig) -> list[tuple[str, str]]:
    """The (setup, attack) pairs the study runs, in order."""
    setups = SETUPS if config.compare else (config.setup,)
    attacks = (
        [config.attack]
        if config.attack == "none" or not config.compare
        else [config.attack, "none"]
    )
    return [(s, a) for s in setups for a in attacks]


def prepare(config: SimulationConfig) -> Simulation:
    """Load and split the data and lay out clients, baskets and attackers.

    Raises
    ------
    ValueError
        A dataset that cannot be read or split as asked, or baskets too small for the rule.
    """
    raw = load_raw(config.dataset)
    data = make_federated(
        raw,
        clients=config.clients,
        domains=config.domains,
        dirichlet_alpha=config.dirichlet_alpha,
        domain_shift=config.domain_shift,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    return Simulation(config, data)


@dataclass
class StudyResult:
    """Every run of a study, with what is needed to report it."""

    config: SimulationConfig
    simulation: Simulation
    runs: list[RunResult]
    seconds: float

    def pairs(self) -> list[tuple[RunResult, RunResult | None]]:
        """Each run under the config's attack with its attack-free twin (if run)."""
        clean = {r.setup: r for r in self.runs if r.attack == "none"}
        attacked = [r for r in self.runs if r.attack == self.config.attack]
        return [(r, clean.get(r.setup) if r.attack != "none" else None) for r in attacked]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json``."""
        from .. import __version__

        cfg = self.config
        sim = self.simulation
        return {
            "hierfed_version": __version__,
            "backend": backend(),
            "config": cfg.to_dict(),
            "dataset": sim.data.summary(),
            "attack": {
                "name": cfg.attack,
                "strength": cfg.strength,
                "byzantine_clients": len(sim.byzantine) if cfg.attack != "none" else 0,
                "placement": cfg.placement,
            },
            "baskets": sim.layout(),
            "target_accuracy": cfg.target_accuracy,
            "total_seconds": self.seconds,
            "runs": [r.to_dict(cfg.target_accuracy) for r in self.runs],
        }


def run_study(
    config: SimulationConfig,
    simulation: Simulation | None = None,
    on_round: OnRound | None = None,
) -> StudyResult:
    """Run every (setup, attack) of :func:`plan`; ``on_round`` after each round."""
    sim = prepare(config) if simulation is None else simulation
    start = time.perf_counter()
    runs = []
    for setup, attack in plan(config):
        label = sim.label(setup)
        counter = [0]

        def tick(label: str = label, attack: str = attack, counter: list[int] = counter) -> None:
            counter[0] += 1
            if on_round is not None:
                on_round(label, attack, counter[0])

        runs.append(sim.run(setup, attack, progress=tick))
    return StudyResult(config, sim, runs, time.perf_counter() - start)
