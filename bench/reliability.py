"""The captured basket's Layer 2 weight under the reliability score (``--reliability``).

``hierfed simulate --placement concentrated``'s hierarchical setup (all 15 attackers in the
first domain's basket), seeds 0-4, with and without Layer 2's reliability score: the final
accuracy and the captured basket's weight at rounds 1, 5, 10, ..., 30.

    PYTHONPATH=python python -m bench.reliability
"""

from __future__ import annotations

from hierfed.simulation.config import SimulationConfig
from hierfed.simulation.study import prepare

ROUNDS_SHOWN = (1, 5, 10, 15, 20, 25, 30)


def main() -> None:
    """Print one Markdown row per seed and setting."""
    print("| seed | reliability | final | no attack | captured basket's weight, rounds 1..30 |")
    print("|---|---|---:|---:|---|")
    for seed in range(5):
        for reliable in (False, True):
            sim = prepare(
                SimulationConfig(placement="concentrated", reliability=reliable, seed=seed)
            )
            captured = next(b for b, v in sim.layout().items() if v["byzantine"] == v["clients"])
            run = sim.run("hierarchical")
            clean = sim.run("hierarchical", "none")
            weights = [run.details["layer2_weights"][r - 1][captured] for r in ROUNDS_SHOWN]
            print(
                f"| {seed} | {'on' if reliable else 'off'} | {100 * run.final_accuracy:.1f}% "
                f"| {100 * clean.final_accuracy:.1f}% | {' '.join(f'{w:.3f}' for w in weights)} |"
            )


if __name__ == "__main__":
    main()
