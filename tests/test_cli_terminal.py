"""``hierfed simulate`` as a newcomer meets it: a table that fits the terminal, labels that say
what each run had, errors before the first round, warnings, options that are the file's keys."""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from hierfed import cli
from hierfed.simulation import study
from hierfed.simulation.config import SimulationConfig, load_toml


def _simulate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(["simulate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("width", [80, 100, 150])
def test_the_table_fits_the_terminal(
    width: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))  # rich's console width
    argv = ["--rounds", "2", "--quiet", "--central-epsilon", "5", "--out", str(tmp_path)]
    status, out, _ = _simulate(argv, capsys)
    assert status == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    doc = json.loads((tmp_path / "results.json").read_text())
    runs = [r for r in doc["runs"] if r["attack"] == doc["attack"]["name"]]
    rows = doc["table"]["rows"]
    assert [r["label"] for r in runs] == [row[0] for row in rows]
    # the central epsilon reaches the hierarchical setup too, and its label says so
    assert [r["label"] for r in runs] == [
        "FedAvg",
        "flat trimmed_mean",
        "hierarchical trimmed_mean + DP",
        "hierarchical trimmed_mean + DP-SGD + DP + SecAgg",
        "hierarchical mean + DP-FedAvg + SecAgg",  # its own noise: no central DP
    ]
    full = width >= 150
    labels = [r["label"] if full else r["short_label"] for r in runs]
    if not full:
        assert labels == [
            "FedAvg",
            "flat",
            "hier. +DP",
            "hier. +DPSGD +DP +SecAgg",
            "hier. +DPFedAvg +SecAgg",
        ]
        assert "rule trimmed_mean" in out and "+DP/+LDP: central/local DP" in out
    head = next(i for i, line in enumerate(lines) if "final" in line and "best" in line)
    body = lines[head + 2 : head + 2 + len(rows)]  # below the header's rule
    for label, row, line in zip(labels, rows, body, strict=True):
        cells = [c.strip() for c in line.strip(" │┃").replace("│", "  ").split("  ") if c.strip()]
        assert cells[0] == label  # the whole label on the row's one line
        assert cells[1:3] == row[1:3] and row[6] in cells  # final, best, no attack
        assert len(cells) == 8  # no cell wrapped onto another line
    after = lines[head + 2 + len(rows)]
    assert not after.strip() or after.startswith("└")


def test_out_is_checked_before_the_first_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a round ran")

    monkeypatch.setattr(study, "run_study", never)
    a_file = tmp_path / "results"
    a_file.write_text("not a directory")
    for out, message in [
        (a_file, f"out: {str(a_file)!r} is a file, not a directory"),
        (a_file / "sub", f"out: cannot write into {str(a_file / 'sub')!r}: Not a directory"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli.main(["simulate", "--out", str(out), "--quiet"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err == f"hierfed simulate: error: {message} (see hierfed simulate --help)\n"
    fresh = tmp_path / "new" / "dir"
    cli.check_writable(str(fresh))
    assert fresh.is_dir()


def test_version_on_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", "--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("hierfed 0.")


def test_a_byzantine_majority_and_an_overrun_basket_are_warned() -> None:
    majority = study.prepare(SimulationConfig(byzantine_fraction=0.6))
    assert majority.warnings()[0] == (
        "a Byzantine majority (45 of 75 clients): no robust rule withstands one; "
        "expect every setup to fail under the attack"
    )
    taken = study.prepare(SimulationConfig(placement="concentrated"))
    assert taken.warnings() == [
        "basket domain0_basket_0 holds 15 Byzantine clients of 15; trimmed_mean withstands 3 there"
    ]
    assert study.prepare(SimulationConfig()).warnings() == []  # 3 per basket of 15, 3 trimmed
    krum = study.prepare(SimulationConfig(rule="krum", f=1))
    assert krum.warnings() == [
        "basket domain0_basket_0 holds 3 Byzantine clients of 15; krum withstands 1 there"
    ]


def test_warnings_reach_stderr_and_the_run_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--byzantine-fraction", "0.6", "--rounds", "1", "--quiet", "--setup", "fedavg"]
    status, out, err = _simulate(argv, capsys)
    assert status == 0 and "FedAvg" in out
    assert err.startswith("hierfed simulate: warning: a Byzantine majority (45 of 75 clients)")


def test_centered_clipping_has_a_default_tau(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = SimulationConfig(rule="centered_clipping", clip_norm=0.7)
    assert cfg.rule_kwargs() == {"tau": 0.7}
    assert SimulationConfig(rule="centered_clipping", rule_params={"tau": 2}).rule_kwargs() == {
        "tau": 2
    }
    argv = ["--rule", "centered_clipping", "--rounds", "1", "--quiet", "--setup", "flat"]
    status, out, _ = _simulate(argv, capsys)
    assert status == 0 and "flat centered_clipping" in out


def test_the_trimmed_share_belongs_to_the_trimmed_mean() -> None:
    assert SimulationConfig().rule_kwargs() == {"trim_ratio": 0.2}
    assert SimulationConfig(trim_ratio=0.3).rule_kwargs() == {"trim_ratio": 0.3}
    assert SimulationConfig(rule="krum").rule_kwargs() == {}
    with pytest.raises(ValueError, match="trim_ratio applies to trimmed_mean, not 'krum'"):
        SimulationConfig(rule="krum", trim_ratio=0.3)
    with pytest.raises(ValueError, match="f applies to krum, multi_krum, bulyan"):
        SimulationConfig(f=1)


def _simulate_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["simulate"]  # type: ignore[no-any-return]


def test_options_and_config_keys_are_one_to_one() -> None:
    not_keys = {"help", "version", "config", "quiet"}
    options = {
        a.dest: a.option_strings for a in _simulate_parser()._actions if a.dest not in not_keys
    }
    assert set(options) == set(SimulationConfig.field_names())
    for dest, strings in options.items():
        assert "--" + dest.replace("_", "-") in strings
    args = cli.build_parser().parse_args(["simulate", "--rule-param", "tau=1"])
    assert cli.settings_from_args(args)[0] == {"rule_params": {"tau": 1}}


def test_the_docs_config_file_example_is_valid(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.rst").read_text()
    block = re.search(r"\.\. code-block:: toml\n\n((?:   .*\n|\n)+)", page)
    assert block is not None
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(block.group(1)))
    cfg = SimulationConfig(**load_toml(str(path)))
    assert (cfg.dataset, cfg.clients, cfg.rule) == ("wine", 20, "centered_clipping")
    assert cfg.rule_kwargs() == {"n_iter": 3, "tau": cfg.clip_norm}
