"""The ``hierfed`` command.

``hierfed simulate`` runs a hierarchical federation on real data under attack (see
:mod:`hierfed.simulation`): with no arguments, the embedded default study (digits, a fifth of
the clients sending scaled sign-flipped updates, four setups compared) in well under a
minute. Settings come from the defaults, then a TOML file (``--config``), then the options.
Bad settings print a message naming the option and exit with status 2; a missing optional
dependency exits with status 1 and names the extra to install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__

__all__ = ["build_parser", "main", "settings_from_args"]

_SUPPRESS = argparse.SUPPRESS


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


def _add_simulate(sub: Any) -> argparse.ArgumentParser:
    from .simulation.attacks import ATTACKS
    from .simulation.config import PLACEMENTS, SETUPS
    from .simulation.datasets import BUILTIN
    from .simulation.models import MODELS
    from .staleness import PRESETS

    rules = ("mean", "trimmed_mean", "median", "krum", "multi_krum", "bulyan")
    rules += ("geometric_median", "centered_clipping")
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="run a hierarchical federation on real data under attack",
        description=(
            "Simulate a hierarchical, Byzantine-robust, differentially private federation on "
            "a bundled dataset (or your .npz) and report accuracy, privacy spent and time. "
            "Without arguments: digits, 75 clients in 5 domain baskets, 20%% of them sending "
            "scaled sign-flipped updates; FedAvg, flat robust, hierarchical robust and "
            "hierarchical robust + DP + secure aggregation compared, each with and without "
            "the attack."
        ),
        argument_default=_SUPPRESS,
    )
    p.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    p.add_argument("--out", metavar="DIR", help="write results.json and accuracy.png here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("data and model")
    g.add_argument(
        "--dataset",
        metavar="NAME|FILE.npz",
        help=f"{', '.join(BUILTIN)} or a .npz with X, y[, domain]",
    )
    g.add_argument("--model", choices=MODELS)
    g.add_argument("--hidden", type=int, metavar="N", help="hidden units of the mlp")
    g.add_argument("--dirichlet-alpha", type=float, metavar="A", help="label skew across domains")
    g.add_argument(
        "--domain-shift", type=float, metavar="S", help="per-domain feature offset (std)"
    )
    g.add_argument("--test-fraction", type=float, metavar="F")
    g = p.add_argument_group("federation")
    g.add_argument("--rounds", type=int, metavar="N")
    g.add_argument("--clients", type=int, metavar="N")
    g.add_argument("--domains", type=int, metavar="N")
    g.add_argument("--clients-per-basket", type=int, metavar="N")
    g.add_argument("--local-epochs", type=int, metavar="N")
    g.add_argument("--batch-size", type=int, metavar="N")
    g.add_argument("--learning-rate", type=float, metavar="LR")
    g.add_argument(
        "--clip-norm", type=float, metavar="C", help="L2 bound of an update and of a basket model"
    )
    g.add_argument("--server-learning-rate", type=float, metavar="LR")
    g.add_argument("--staleness", choices=PRESETS, help="weighting of stragglers' late updates")
    g.add_argument(
        "--stragglers",
        type=float,
        metavar="P",
        help="chance an honest client delivers a round late",
    )
    g.add_argument("--seed", type=int, metavar="N")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", choices=ATTACKS)
    g.add_argument("--byzantine-fraction", type=float, metavar="F")
    g.add_argument(
        "--attack-strength",
        type=float,
        metavar="X",
        help="sign_flip scale, gaussian sigma, ipm epsilon, alie z",
    )
    g.add_argument(
        "--placement",
        choices=PLACEMENTS,
        help="attackers spread over domains or concentrated in one",
    )
    g = p.add_argument_group("aggregation")
    g.add_argument("--rule", choices=rules, help="Layer 1 rule (and the flat robust rule)")
    g.add_argument("--trim-ratio", type=float, metavar="R")
    g.add_argument(
        "--f", type=int, metavar="F", help="Byzantine updates per basket for krum/multi_krum/bulyan"
    )
    g.add_argument(
        "--rule-param",
        type=_rule_param,
        action="append",
        metavar="KEY=VALUE",
        help="a further rule parameter, e.g. tau=1.0 (repeatable)",
    )
    g.add_argument(
        "--compare", action=argparse.BooleanOptionalAction, help="run the four setups (default)"
    )
    g.add_argument("--setup", choices=SETUPS, help="run only this setup")
    g.add_argument(
        "--secure-aggregation", action=argparse.BooleanOptionalAction, help="SecAgg+ across baskets"
    )
    g.add_argument("--target-accuracy", type=float, metavar="A")
    g = p.add_argument_group("differential privacy (epsilon: total over the run)")
    g.add_argument("--central-epsilon", type=float, metavar="EPS")
    g.add_argument("--central-noise-multiplier", type=float, metavar="Z")
    g.add_argument("--central-delta", type=float, metavar="D")
    g.add_argument("--local-epsilon", type=float, metavar="EPS")
    g.add_argument("--local-noise-multiplier", type=float, metavar="Z")
    g.add_argument("--local-delta", type=float, metavar="D")
    return p


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="hierfed",
        description=(
            "hierfed: hierarchical, Byzantine-robust, differentially private federated learning"
        ),
    )
    parser.add_argument("--version", action="version", version=f"hierfed {__version__}")
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
    if "rule_param" in given:
        given["rule_params"] = dict(given.pop("rule_param"))
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
        from .simulation.study import prepare

        simulation = prepare(config)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    return _run(config, simulation, show)


def _run(config: Any, simulation: Any, show: bool) -> int:
    from .simulation._deps import require
    from .simulation.report import rich_table, write_outputs
    from .simulation.study import plan, run_study

    console_mod = require("rich.console")
    progress_mod = require("rich.progress")
    console = console_mod.Console()
    if not console.is_terminal:
        console = console_mod.Console(width=max(console.width, 120))
    errors = console_mod.Console(stderr=True)
    total = len(plan(config)) * config.rounds
    columns = (
        progress_mod.TextColumn("{task.description:<44}"),
        progress_mod.BarColumn(),
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
    console.print(rich_table(study))
    console.print(f"{study.seconds:.1f} s in all; backend {_backend_name()}")
    if config.out is not None:
        json_path, png_path = write_outputs(study, config.out)
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
