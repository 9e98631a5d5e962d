"""The study's outputs: the terminal table, ``results.json`` and ``accuracy.png``.

rich and matplotlib are imported only here, when a report is made.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any

from ._deps import require
from .runner import RunResult
from .study import StudyResult

__all__ = [
    "COLUMNS",
    "COMPACT_COLUMNS",
    "LEGEND",
    "fits",
    "plain_table",
    "plot_accuracy",
    "rich_table",
    "table_rows",
    "write_outputs",
]

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
# The same columns for a narrow terminal (an 80-column one): the rule moves to the title.
COMPACT_COLUMNS = (
    "setup",
    "final",
    "best",
    "to {target}",
    "\u03b5",
    "s/rnd",
    "clean",
    "\u0394 pts",
)
LEGEND = (
    "hier.: hierarchical; +DPSGD: record-level DP-SGD; +DPFedAvg: client-level\n"
    "DP-FedAvg; +DP/+LDP: central/local DP; +SecAgg: secure aggregation (simulated\n"
    "in process: hierfed.deploy runs it between separate parties);\n"
    "\u03b5 R/C/B/L: per record/client/basket, local;\n"
    "clean: final accuracy without the attack; \u0394: final minus clean, in points"
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _eps(run: RunResult, compact: bool) -> str:
    """The epsilons a run spent, each with its unit: a record (DP-SGD), a client
    (DP-FedAvg), a basket (central DP), a basket's release (local DP)."""
    kinds = (
        ("R", "{}/record", run.record_privacy_spent[0]),
        ("C", "{}/client", run.client_privacy_spent[0]),
        ("B", "{}/basket", run.privacy_spent[0]),
        ("L", "local {}", run.local_privacy_spent[0]),
    )
    parts = [
        f"{short}{e:.3g}" if compact else long.format(f"{e:.3g}")
        for short, long, e in kinds
        if e > 0
    ]
    return (" " if compact else ", ").join(parts) or "-"


def headers(study: StudyResult, *, compact: bool = False) -> list[str]:
    """Column titles (the target accuracy filled in)."""
    target = f"{100 * study.config.target_accuracy:g}%"
    return [c.format(target=target) for c in (COMPACT_COLUMNS if compact else COLUMNS)]


def table_rows(study: StudyResult, *, compact: bool = False) -> list[list[str]]:
    """One row of strings per run under the config's attack (see :data:`COLUMNS`, or
    :data:`COMPACT_COLUMNS` with ``compact``: short labels, no units)."""
    target = study.config.target_accuracy
    unit = "" if compact else " pts"
    rows = []
    for run, clean in study.pairs():
        reached = run.rounds_to(target)
        rows.append(
            [
                run.short_label if compact else run.label,
                _pct(run.final_accuracy),
                _pct(run.best_accuracy),
                "-" if reached is None else str(reached),
                _eps(run, compact),
                f"{run.seconds_per_round:.3f}",
                "-" if clean is None else _pct(clean.final_accuracy),
                "-"
                if clean is None
                else f"{100 * (run.final_accuracy - clean.final_accuracy):+.1f}{unit}",
            ]
        )
    return rows


def title(study: StudyResult, *, compact: bool = False) -> str:
    """One line naming the data, the attack and the attackers; ``compact``: two lines, the
    rule in the first."""
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
    head = (
        f"{sim.data.name}: {sim.data.n_clients} clients, {len(sim.baskets)} baskets, "
        f"{cfg.rounds} rounds"
    )
    if compact:
        return f"{head}, rule {cfg.rule}\n{attack}"
    return f"{head}; {attack}"


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


def _rich(study: StudyResult, compact: bool) -> Any:
    table_mod = require("rich.table")
    box = require("rich.box")
    table = table_mod.Table(
        title=title(study, compact=compact),
        title_justify="left",
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
    )
    for i, h in enumerate(headers(study, compact=compact)):
        justify = "left" if i == 0 else "right"
        table.add_column(h, justify=justify, no_wrap=True)
    for row in table_rows(study, compact=compact):
        table.add_row(*row)
    return table


def fits(study: StudyResult, width: int) -> bool:
    """Whether the full table (:func:`rich_table`) fits in ``width`` columns unwrapped."""
    console = require("rich.console").Console(width=10_000, file=io.StringIO())
    return int(console.measure(_rich(study, compact=False)).maximum) <= width


def rich_table(study: StudyResult, *, compact: bool = False) -> Any:
    """The table as a ``rich.table.Table``; ``compact``: the form of :data:`COMPACT_COLUMNS`
    for narrow terminals (the rule in the title, short labels explained by :data:`LEGEND`,
    no vertical rules), which fits 80 columns."""
    return _rich(study, compact)


def _dp_epsilon(study: StudyResult) -> str:
    cfg = study.config
    kinds = (
        ("record-level", cfg.record_delta, [r.record_privacy_spent[0] for r in study.runs]),
        ("client-level", cfg.client_delta, [r.client_privacy_spent[0] for r in study.runs]),
        ("central (per basket)", cfg.central_delta, [r.privacy_spent[0] for r in study.runs]),
        ("local", cfg.local_delta, [r.local_privacy_spent[0] for r in study.runs]),
    )
    text = [
        f"{name} \u03b5 = {max(spent):.3g} (\u03b4 = {delta:g})"
        for name, delta, spent in kinds
        if max(spent) > 0
    ]
    return f"DP: {', '.join(text)}" if text else "no DP"


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
