"""The ``hierfed`` command.

``hierfed simulate`` runs a hierarchical federation on real data under attack (see
:mod:`hierfed.simulation`): with no arguments, the embedded default study (digits, a fifth of
the clients sending scaled sign-flipped updates, five setups compared) in well under a
minute. Settings come from the defaults, then a TOML file (``--config``), then the options;
every option but ``--config``, ``--quiet``, ``--help`` and ``--version`` is a key of the file
(``--rule-params KEY=VALUE`` is the table ``rule_params``). Bad settings, or an ``--out``
that cannot be written, print one line naming the option and a hint, before any round runs,
and exit with status 2; a missing optional dependency exits with status 1 and names the
extra to install. Settings that let the attack win (a Byzantine majority, a basket holding
more attackers than its rule withstands) print a warning and run.

The table fits the terminal: the full labels when they fit, else a compact form that fits
80 columns (the rule in the title, short labels explained under the table). Output that is
not a terminal gets the full table unless ``COLUMNS`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

from . import __version__

__all__ = ["build_parser", "main", "settings_from_args"]

_SUPPRESS = argparse.SUPPRESS
_VERSION = f"hierfed {__version__}"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line with a hint, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _rule_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    parsed: Any = value
    for cast in (int, float):
        try:
            parsed = cast(value)
            break
        except ValueError:
            continue
    if value.lower() in ("true", "false"):
        parsed = value.lower() == "true"
    return key.strip(), parsed


def _option(group: Any, name: str, help: str = "", shown: str = "", **kw: Any) -> None:
    """Add ``--name`` for config field ``name``; the help ends with ``shown`` or the field's
    default."""
    from .simulation.config import SimulationConfig

    if not shown:
        default = SimulationConfig.__dataclass_fields__[name].default
        if isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = "none" if default is None else str(default)
    text = f"{help} (default: {shown})" if help else f"default: {shown}"
    group.add_argument("--" + name.replace("_", "-"), help=text, **kw)


# The differential-privacy options, all floats: config field, help ("": the default only),
# metavar.
_PRIVACY_OPTIONS = (
    ("record_epsilon", "per-record epsilon of every client's DP-SGD", "EPS"),
    ("record_noise_multiplier", "DP-SGD noise over its record clip norm", "Z"),
    ("record_delta", "", "D"),
    ("record_clip_norm", "DP-SGD's per-record gradient clip norm", "C"),
    ("record_sample_rate", "DP-SGD's Poisson sampling rate per step", "Q"),
    ("central_epsilon", "Layer 2 noise calibrated to this", "EPS"),
    ("central_noise_multiplier", "Layer 2 noise per round", "Z"),
    ("central_delta", "", "D"),
    ("local_epsilon", "Layer 1 noise calibrated to this", "EPS"),
    ("local_noise_multiplier", "Layer 1 noise per round", "Z"),
    ("local_delta", "", "D"),
    ("client_epsilon", "per-client epsilon of the baskets' DP-FedAvg", "EPS"),
    ("client_noise_multiplier", "DP-FedAvg noise per round", "Z"),
    ("client_delta", "", "D"),
    ("client_sample_rate", "DP-FedAvg's Poisson sampling rate of clients", "Q"),
)


def _add_simulate(sub: Any) -> argparse.ArgumentParser:
    from .aggregator import AggregationMethod
    from .optimizers import OPTIMIZERS
    from .preaggregation import PRE_STEPS
    from .simulation.attacks import ATTACKS
    from .simulation.config import (
        DEFAULT_CLIENT_EPSILON,
        DEFAULT_RECORD_EPSILON,
        DEFAULT_TRIM_RATIO,
        PLACEMENTS,
        SETUPS,
    )
    from .simulation.datasets import BUILTIN
    from .simulation.models import MODELS
    from .staleness import PRESETS

    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="run a hierarchical federation on real data under attack",
        description=textwrap.fill(
            "Simulate a hierarchical, Byzantine-robust, differentially private federation on "
            "a bundled dataset (or your .npz) and report accuracy, privacy spent and time. "
            "Without arguments: digits, 75 clients in 5 domain baskets, 20% of them sending "
            "scaled sign-flipped updates; FedAvg, flat robust, hierarchical robust, "
            "hierarchical robust + record-level DP-SGD + secure aggregation and hierarchical "
            "+ client-level DP-FedAvg + secure aggregation compared, each with and without "
            "the attack. Settings: defaults < --config FILE.toml < options.",
            78,
        ),
        epilog=(
            "examples:\n"
            "  hierfed simulate --out results\n"
            "  hierfed simulate --rule bulyan --attack alie --placement concentrated\n"
            "  hierfed simulate --setup hierarchical --secure-aggregation --central-epsilon 50\n"
            "  hierfed simulate --config study.toml --seed 3"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=_SUPPRESS,
    )
    p.add_argument("--version", action="version", version=_VERSION)
    p.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    _option(p, "out", "write results.json and accuracy.png into DIR", metavar="DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    f, i, o = float, int, _option
    g = p.add_argument_group("data and model")
    o(g, "dataset", f"{', '.join(BUILTIN)} or a .npz with X, y[, domain]", metavar="NAME|FILE")
    o(g, "model", choices=MODELS)
    o(g, "hidden", "hidden units of the mlp", type=i, metavar="N")
    o(g, "dirichlet_alpha", "label skew across domains (smaller: more skew)", type=f, metavar="A")
    o(g, "domain_shift", "std of each domain's feature offset", type=f, metavar="S")
    o(g, "test_fraction", "held-out share", type=f, metavar="F")
    g = p.add_argument_group("federation")
    o(g, "rounds", type=i, metavar="N")
    o(g, "clients", type=i, metavar="N")
    o(g, "domains", type=i, metavar="N")
    o(g, "clients_per_basket", "most clients in one basket", type=i, metavar="N")
    o(g, "local_epochs", type=i, metavar="N")
    o(g, "batch_size", type=i, metavar="N")
    o(g, "learning_rate", "clients' SGD step", type=f, metavar="LR")
    o(g, "clip_norm", "L2 bound of a client update and of a basket model", type=f, metavar="C")
    o(g, "server_learning_rate", type=f, metavar="LR")
    o(g, "server_optimizer", "how the server steps by the aggregate", choices=OPTIMIZERS)
    o(
        g,
        "worker_momentum",
        "honest clients send the momentum of their updates",
        type=f,
        metavar="B",
    )
    o(g, "staleness", "weighting of stragglers' late updates", choices=PRESETS)
    o(g, "stragglers", "chance an honest client delivers a round late", type=f, metavar="P")
    o(g, "seed", type=i, metavar="N")
    g = p.add_argument_group("attack")
    o(g, "attack", choices=ATTACKS)
    o(g, "byzantine_fraction", type=f, metavar="F")
    o(
        g,
        "attack_strength",
        "sign_flip scale (4), gaussian sigma (1), ipm epsilon (0.1), alie z (from n and f)",
        type=f,
        metavar="X",
    )
    o(g, "placement", "attackers spread over the domains or concentrated", choices=PLACEMENTS)
    g = p.add_argument_group("aggregation")
    o(
        g,
        "rule",
        "Layer 1 rule, also the flat robust rule",
        choices=[m.value for m in AggregationMethod],
    )
    o(
        g,
        "trim_ratio",
        "trimmed_mean's share cut at each end (trimmed_mean only)",
        shown=f"{DEFAULT_TRIM_RATIO} with trimmed_mean",
        type=f,
        metavar="R",
    )
    o(
        g,
        "f",
        "Byzantine updates per basket (krum, multi_krum, bulyan, mda, meamed, monna, and the "
        "pre-steps nnm and arc)",
        shown="the most the smallest basket allows",
        type=i,
        metavar="F",
    )
    g.add_argument(
        "--pre",
        action="append",
        choices=list(PRE_STEPS),
        help=(
            "a pre-aggregation step before the rule, repeatable, in order, e.g. --pre bucketing "
            "--pre nnm (bucketing's s=2 and clip's clip_norm are rule parameters)"
        ),
    )
    g.add_argument(
        "--rule-params",
        "--rule-param",
        dest="rule_params",
        type=_rule_param,
        action="append",
        metavar="KEY=VALUE",
        help=(
            "a further parameter of the rule, repeatable, e.g. tau=1.0 or n_iter=3 for "
            "centered_clipping (its tau defaults to --clip-norm)"
        ),
    )
    o(
        g,
        "compare",
        "run the five setups, with and without the attack",
        action=argparse.BooleanOptionalAction,
    )
    o(g, "setup", "run only this setup", choices=SETUPS)
    o(
        g,
        "secure_aggregation",
        "SecAgg+ across baskets (hierarchical setup)",
        action=argparse.BooleanOptionalAction,
    )
    o(
        g,
        "reliability",
        "weight basket models by their agreement with the consensus (hierarchical setup)",
        action=argparse.BooleanOptionalAction,
    )
    o(g, "target_accuracy", "accuracy whose first round is reported", type=f, metavar="A")
    o(
        g,
        "privacy_sweep",
        "instead: accuracy against the record epsilon, drawn in privacy_sweep.png",
        action=argparse.BooleanOptionalAction,
    )
    g = p.add_argument_group("differential privacy (an epsilon is the total over the run)")
    shown = {
        "record_epsilon": f"{DEFAULT_RECORD_EPSILON:g} in hierarchical_dp, else off",
        "client_epsilon": f"{DEFAULT_CLIENT_EPSILON:g} in hierarchical_dpfedavg",
    }
    for name, what, metavar in _PRIVACY_OPTIONS:
        o(g, name, what, shown=shown.get(name, ""), type=f, metavar=metavar)
    return p


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="hierfed",
        description=(
            "hierfed: hierarchical, Byzantine-robust, differentially private federated learning"
        ),
    )
    parser.add_argument("--version", action="version", version=_VERSION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, {"simulate": _add_simulate(sub)}


def build_parser() -> argparse.ArgumentParser:
    """The ``hierfed`` argument parser."""
    return _parsers()[0]


def settings_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The config keys given by ``args`` over those of its ``--config`` file, and whether to
    show progress.

    Raises
    ------
    ValueError
        A bad config file, or ``--setup`` together with ``--compare``.
    """
    from .simulation.config import load_toml

    given = dict(vars(args))
    given.pop("command", None)
    quiet = bool(given.pop("quiet", False))
    settings: dict[str, Any] = {}
    path = given.pop("config", None)
    if path is not None:
        settings.update(load_toml(path))
    if "rule_params" in given:
        given["rule_params"] = dict(given["rule_params"])
    if "setup" in given:
        if given.get("compare") is True:
            raise ValueError("--setup runs one setup; drop --compare (or --setup)")
        given.setdefault("compare", False)
    settings.update(given)
    return settings, not quiet


def _simulate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .simulation.config import SimulationConfig

    try:
        settings, show = settings_from_args(args)
        config = SimulationConfig(**settings)
        if config.out is not None:
            check_writable(config.out)
        from .simulation.study import prepare

        simulation = prepare(config)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    for warning in simulation.warnings():
        print(f"{parser.prog}: warning: {warning}", file=sys.stderr)
    return _run(config, simulation, show)


def check_writable(directory: str) -> None:
    """Create ``directory`` if needed and check that files can be written into it.

    Raises
    ------
    ValueError
        ``directory`` names a file, or cannot be created or written.
    """
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"out: {directory!r} is a file, not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ValueError(f"out: cannot write into {directory!r}: {exc.strerror}") from None


def _run(config: Any, simulation: Any, show: bool) -> int:
    # The labels say which runs add noise: the federation's notice would only repeat them.
    notices = logging.getLogger("hierfed.federation")
    level = notices.level
    notices.setLevel(logging.ERROR)
    try:
        return _report(config, simulation, show)
    finally:
        notices.setLevel(level)


def _report(config: Any, simulation: Any, show: bool) -> int:
    from .simulation._deps import require
    from .simulation.report import LEGEND, fits, rich_table, write_outputs
    from .simulation.study import plan, run_study

    console_mod = require("rich.console")
    progress_mod = require("rich.progress")
    console = console_mod.Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = console_mod.Console(width=max(console.width, 130))
    errors = console_mod.Console(stderr=True)
    if config.privacy_sweep:
        return _sweep(config, simulation, console, errors, show)
    total = len(plan(config)) * config.rounds
    # label, bar, "n/total rounds" and the time within the terminal's width
    room = max(10, min(44, errors.width // 3))
    columns = (
        progress_mod.TextColumn(f"{{task.description:<{room}.{room}}}"),
        progress_mod.BarColumn(bar_width=max(10, min(40, errors.width - room - 30))),
        progress_mod.MofNCompleteColumn(),
        progress_mod.TextColumn("rounds"),
        progress_mod.TimeElapsedColumn(),
    )
    with progress_mod.Progress(*columns, console=errors, disable=not show, transient=True) as bar:
        task = bar.add_task("starting", total=total)

        def on_round(label: str, attack: str, _round: int) -> None:
            suffix = "" if attack == config.attack else " (no attack)"
            bar.update(task, advance=1, description=f"{label}{suffix}")

        study = run_study(config, simulation, on_round)
    compact = not fits(study, console.width)
    console.print(rich_table(study, compact=compact))
    if compact:
        console.print(LEGEND)
    console.print(f"{study.seconds:.1f} s in all; backend {_backend_name()}")
    if config.out is not None:
        json_path, png_path = write_outputs(study, config.out)
        console.print(f"wrote {json_path} and {png_path}")
    return 0


def _sweep(config: Any, simulation: Any, console: Any, errors: Any, show: bool) -> int:
    from .simulation._deps import require
    from .simulation.sweep import SWEEP_HEADERS, run_sweep, write_sweep

    table_mod = require("rich.table")

    def on_run(name: str) -> None:
        if show:
            errors.print(f"privacy sweep: {name}", highlight=False)

    result = run_sweep(config, simulation, on_run=on_run)
    table = table_mod.Table(
        title=f"{simulation.data.name}: hierarchical {config.rule}, {config.rounds} rounds, "
        f"DP-SGD per record (\u03b4 = {config.record_delta:g})",
        title_justify="left",
    )
    for i, h in enumerate(SWEEP_HEADERS):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in result.rows():
        table.add_row(*row)
    console.print(table)
    console.print(f"{result.seconds:.1f} s in all; backend {_backend_name()}")
    if config.out is None:
        console.print("give --out DIR to write privacy_sweep.json and privacy_sweep.png")
    else:
        json_path, png_path = write_sweep(result, config.out)
        console.print(f"wrote {json_path} and {png_path}")
    return 0


def _backend_name() -> str:
    from ._backend import backend

    return backend()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hierfed`` command; returns the exit status."""
    parser, commands = _parsers()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return _simulate(commands[args.command], args)
    except ImportError as exc:
        print(f"hierfed: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
