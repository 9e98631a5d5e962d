"""``hierfed simulate --privacy-sweep``: accuracy against the record-level epsilon.

The hierarchical setup runs without DP, then with DP-SGD (:mod:`~hierfed.simulation.dpsgd`)
at each epsilon of ``SWEEP_EPSILONS`` (per record, at the config's ``record_delta``): a noise
level each, calibrated over the run. Every point runs under the config's attack and, unless
it is ``none``, attack-free, on the same data, clients and seed. The plot draws final test
accuracy against the epsilon spent, the noise multiplier beside each point and the unit of
privacy in the legend.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import SimulationConfig
from .report import _finite
from .runner import RunResult, Simulation

__all__ = [
    "SWEEP_EPSILONS",
    "SWEEP_HEADERS",
    "SweepPoint",
    "SweepResult",
    "plot_sweep",
    "run_sweep",
    "write_sweep",
]

SWEEP_EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass
class SweepPoint:
    """One noise level: its runs under the attack and attack-free (``None`` without one)."""

    noise_multiplier: float | None
    attacked: RunResult
    clean: RunResult | None

    @property
    def epsilon(self) -> float:
        """The record-level epsilon spent (0 without DP)."""
        return self.attacked.record_privacy_spent[0]


@dataclass
class SweepResult:
    """The non-private baseline and the DP-SGD points, lowest epsilon first."""

    config: SimulationConfig
    baseline: SweepPoint
    points: list[SweepPoint]
    seconds: float

    def rows(self) -> list[list[str]]:
        """One row per point: epsilon per record, noise multiplier, final accuracy under the
        attack and attack-free."""

        def pct(run: RunResult | None) -> str:
            return "-" if run is None else f"{100 * run.final_accuracy:.1f}%"

        out = []
        for p in [*self.points, self.baseline]:
            eps = "no DP" if p.noise_multiplier is None else f"{p.epsilon:.3g}"
            z = "-" if p.noise_multiplier is None else f"{p.noise_multiplier:.3g}"
            out.append([eps, z, pct(p.attacked), pct(p.clean)])
        return out

    def to_dict(self) -> dict[str, object]:
        """The content of ``privacy_sweep.json``."""
        target = self.config.target_accuracy

        def point(p: SweepPoint) -> dict[str, object]:
            return {
                "noise_multiplier": p.noise_multiplier,
                "record_epsilon": p.epsilon,
                "record_delta": self.config.record_delta,
                "attacked": p.attacked.to_dict(target),
                "clean": None if p.clean is None else p.clean.to_dict(target),
            }

        return {
            "config": self.config.to_dict(),
            "unit": "record",
            "seconds": self.seconds,
            "baseline": point(self.baseline),
            "points": [point(p) for p in self.points],
        }


SWEEP_HEADERS = ["\u03b5 per record", "noise z", "final (attack)", "final (no attack)"]


def run_sweep(
    config: SimulationConfig,
    simulation: Simulation,
    epsilons: tuple[float, ...] = SWEEP_EPSILONS,
    on_run: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run the baseline and one DP-SGD point per epsilon of ``epsilons`` on
    ``simulation``'s data and layout; ``on_run`` is told each run's name before it starts."""
    start = time.perf_counter()
    attacks = [config.attack] if config.attack == "none" else [config.attack, "none"]

    def point(sim: Simulation, setup: str, name: str) -> SweepPoint:
        runs = []
        for attack in attacks:
            if on_run is not None:
                on_run(f"{name}{'' if attack == config.attack else ' (no attack)'}")
            runs.append(sim.run(setup, attack))
        z = runs[0].details.get("record_noise_multiplier")
        return SweepPoint(z, runs[0], runs[1] if len(runs) > 1 else None)

    plain = config.replace(record_epsilon=None, record_noise_multiplier=None)
    baseline = point(Simulation(plain, simulation.data), "hierarchical", "no DP")
    points = []
    for eps in sorted(epsilons):
        cfg = config.replace(record_epsilon=eps, record_noise_multiplier=None)
        points.append(point(Simulation(cfg, simulation.data), "hierarchical_dp", f"\u03b5 {eps:g}"))
    return SweepResult(config, baseline, points, time.perf_counter() - start)


def plot_sweep(result: SweepResult, path: str) -> None:
    """Final test accuracy against the record-level epsilon (log scale) as a PNG: one line
    under the attack, one attack-free (dashed), the non-private runs as horizontal lines,
    each point labelled with its noise multiplier."""
    from ._deps import require

    mpl = require("matplotlib")
    mpl.use("Agg", force=True)
    plt = require("matplotlib.pyplot")
    cfg = result.config
    fig, ax = plt.subplots(figsize=(8.0, 5.5), dpi=120)
    unit = f"DP-SGD, per record (\u03b4 = {cfg.record_delta:g})"
    series = [("attacked", f"{unit}, {cfg.attack} attack", "-", "C0")]
    if result.baseline.clean is not None:
        series.append(("clean", f"{unit}, no attack", "--", "C1"))
    for key, label, style, colour in series:
        xs = [p.epsilon for p in result.points]
        ys = [getattr(p, key).final_accuracy for p in result.points]
        ax.plot(xs, ys, style, marker="o", color=colour, label=label)
        base = getattr(result.baseline, key).final_accuracy
        ax.axhline(base, linestyle=":", color=colour, label=f"no DP, {label.split(', ')[-1]}")
    for p in result.points:
        ax.annotate(
            f"z={p.noise_multiplier:.2g}",
            (p.epsilon, p.attacked.final_accuracy),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize="x-small",
        )
    ax.set_xscale("log")
    ax.set_xlabel("\u03b5 spent per record over the run (log scale)")
    ax.set_ylabel("final test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title(
        f"{cfg.dataset}: {cfg.clients} clients, hierarchical {cfg.rule}, {cfg.rounds} rounds",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_sweep(result: SweepResult, directory: str) -> tuple[str, str]:
    """Write ``privacy_sweep.json`` and ``privacy_sweep.png`` into ``directory``; returns
    their paths."""
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "privacy_sweep.json")
    png_path = os.path.join(directory, "privacy_sweep.png")
    with open(json_path, "w", encoding="utf-8") as fh:
        json.dump(_finite(result.to_dict()), fh, indent=2, allow_nan=False)
        fh.write("\n")
    plot_sweep(result, png_path)
    return json_path, png_path
