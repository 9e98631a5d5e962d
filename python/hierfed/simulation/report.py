"""The study's outputs: the terminal table, ``results.json`` and ``accuracy.png``.

rich and matplotlib are imported only here, when a report is made.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ._deps import require
from .study import StudyResult

__all__ = ["COLUMNS", "plain_table", "plot_accuracy", "rich_table", "table_rows", "write_outputs"]

COLUMNS = (
    "setup",
    "final",
    "best",
    "rounds to {target}",
    "\u03b5 spent",
    "s/round",
    "no attack",
    "\u0394 final",
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _eps(epsilon: float, local: float) -> str:
    if epsilon <= 0 and local <= 0:
        return "-"
    parts = []
    if epsilon > 0:
        parts.append(f"{epsilon:.3g}")
    if local > 0:
        parts.append(f"local {local:.3g}")
    return ", ".join(parts)


def headers(study: StudyResult) -> list[str]:
    """Column titles (the target accuracy filled in)."""
    target = f"{100 * study.config.target_accuracy:g}%"
    return [c.format(target=target) for c in COLUMNS]


def table_rows(study: StudyResult) -> list[list[str]]:
    """One row of strings per run under the config's attack (see :data:`COLUMNS`)."""
    target = study.config.target_accuracy
    rows = []
    for run, clean in study.pairs():
        reached = run.rounds_to(target)
        rows.append(
            [
                run.label,
                _pct(run.final_accuracy),
                _pct(run.best_accuracy),
                "-" if reached is None else str(reached),
                _eps(run.privacy_spent[0], run.local_privacy_spent[0]),
                f"{run.seconds_per_round:.3f}",
                "-" if clean is None else _pct(clean.final_accuracy),
                "-"
                if clean is None
                else f"{100 * (run.final_accuracy - clean.final_accuracy):+.1f} pts",
            ]
        )
    return rows


def title(study: StudyResult) -> str:
    """One line naming the data, the attack and the attackers."""
    cfg = study.config
    sim = study.simulation
    if cfg.attack == "none":
        attack = "no attack"
    else:
        strength = "" if cfg.strength is None else f" (strength {cfg.strength:g})"
        attack = (
            f"{cfg.attack}{strength} attack, {len(sim.byzantine)}/{sim.data.n_clients} "
            f"Byzantine clients {cfg.placement}"
        )
    return (
        f"{sim.data.name}: {sim.data.n_clients} clients, {len(sim.baskets)} baskets, "
        f"{cfg.rounds} rounds; {attack}"
    )


def plain_table(study: StudyResult) -> str:
    """The table as Markdown (for logs and the README)."""
    head = headers(study)
    rows = table_rows(study)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def rich_table(study: StudyResult) -> Any:
    """The table as a ``rich.table.Table``."""
    table_mod = require("rich.table")
    table = table_mod.Table(title=title(study), title_justify="left")
    for i, h in enumerate(headers(study)):
        if i == 0:
            table.add_column(h, justify="left", overflow="fold", ratio=1)
        else:
            table.add_column(h, justify="right", no_wrap=True, min_width=len(h))
    for row in table_rows(study):
        table.add_row(*row)
    return table


def _dp_epsilon(study: StudyResult) -> str:
    spent = [
        (r.privacy_spent[0], r.local_privacy_spent[0])
        for r in study.runs
        if r.privacy_spent[0] > 0 or r.local_privacy_spent[0] > 0
    ]
    if not spent:
        return "no DP"
    central = max(s[0] for s in spent)
    local = max(s[1] for s in spent)
    delta = study.config.central_delta if central > 0 else study.config.local_delta
    text = []
    if central > 0:
        text.append(f"central \u03b5 = {central:.3g}")
    if local > 0:
        text.append(f"local \u03b5 = {local:.3g}")
    return f"DP: {', '.join(text)} (\u03b4 = {delta:g})"


def plot_accuracy(study: StudyResult, path: str) -> None:
    """Test accuracy per round of every run (attack-free runs dashed) as a PNG."""
    mpl = require("matplotlib")
    mpl.use("Agg", force=True)
    plt = require("matplotlib.pyplot")
    fig, ax = plt.subplots(figsize=(8.5, 6.0), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    setups = list(dict.fromkeys(r.setup for r in study.runs))
    for run in study.runs:
        colour = colours[setups.index(run.setup) % len(colours)]
        clean = run.attack == "none" and study.config.attack != "none"
        xs = [m.round for m in run.rounds]
        ys = [m.accuracy for m in run.rounds]
        label = run.label + (" (no attack)" if clean else "")
        ax.plot(
            xs,
            ys,
            color=colour,
            linestyle="--" if clean else "-",
            alpha=0.6 if clean else 1.0,
            label=label,
        )
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(
        fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False
    )
    ax.set_title(f"{title(study)}\n{_dp_epsilon(study)}", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _finite(x: Any) -> Any:
    """JSON has no infinity or NaN: they become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_outputs(study: StudyResult, directory: str) -> tuple[str, str]:
    """Write ``results.json`` and ``accuracy.png`` into ``directory`` (created if needed);
    returns their paths."""
    os.makedirs(directory, exist_ok=True)
    json_path = os.path.join(directory, "results.json")
    png_path = os.path.join(directory, "accuracy.png")
    doc = _finite(study.to_dict())
    doc["table"] = {"headers": headers(study), "rows": table_rows(study)}
    with open(json_path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")
    plot_accuracy(study, png_path)
    return json_path, png_path
