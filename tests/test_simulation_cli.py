"""The ``hierfed`` command: parsing, bad options, TOML files, the default run end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hierfed import cli
from hierfed.simulation.config import SimulationConfig, load_toml

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _settings(*argv: str) -> dict[str, object]:
    args = cli.build_parser().parse_args(["simulate", *argv])
    return cli.settings_from_args(args)[0]


def test_no_arguments_is_the_embedded_default() -> None:
    assert _settings() == {}
    cfg = SimulationConfig(**_settings())  # type: ignore[arg-type]
    assert cfg == SimulationConfig()
    assert (cfg.dataset, cfg.attack, cfg.rule, cfg.compare) == (
        "digits",
        "sign_flip",
        "trimmed_mean",
        True,
    )


def test_options_map_to_config_fields() -> None:
    got = _settings(
        "--rounds",
        "7",
        "--clients-per-basket",
        "12",
        "--rule",
        "bulyan",
        "--f",
        "2",
        "--rule-param",
        "tau=0.5",
        "--rule-param",
        "n_iter=3",
        "--no-compare",
        "--secure-aggregation",
        "--central-epsilon",
        "4.5",
        "--out",
        "res",
    )
    assert got == {
        "rounds": 7,
        "clients_per_basket": 12,
        "rule": "bulyan",
        "f": 2,
        "rule_params": {"tau": 0.5, "n_iter": 3},
        "compare": False,
        "secure_aggregation": True,
        "central_epsilon": 4.5,
        "out": "res",
    }


def test_setup_alone_runs_one_setup() -> None:
    assert _settings("--setup", "flat") == {"setup": "flat", "compare": False}


def test_toml_file_under_options(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text('[simulate]\nrounds = 9\nattack = "alie"\nclients-per-basket = 5\n')
    got = _settings("--config", str(path), "--rounds", "3")
    assert got == {"rounds": 3, "attack": "alie", "clients_per_basket": 5}
    flat = tmp_path / "flat.toml"
    flat.write_text('dataset = "wine"\nrule_params = { tau = 1.0 }\n')
    assert load_toml(str(flat)) == {"dataset": "wine", "rule_params": {"tau": 1.0}}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "rounds must be an integer >= 1, got 0"),
        (["--rounds", "ten"], "argument --rounds: invalid int value: 'ten'"),
        (["--attack", "poison"], "argument --attack: invalid choice: 'poison'"),
        (["--rule", "bulyan", "--f", "5"], "bulyan with f=5 needs at least 23 clients per basket"),
        (["--dataset", "mnist"], "dataset must be one of digits, breast_cancer, wine"),
        (["--dataset", "missing.npz"], "does not exist"),
        (["--setup", "fedavg", "--local-epsilon", "1"], "DP options need a hierarchical setup"),
        (["--setup", "flat", "--compare"], "--setup runs one setup"),
        (["--central-epsilon", "1", "--central-noise-multiplier", "1"], "not both"),
        (["--rule-param", "tau"], "expected KEY=VALUE"),
        (["--rule", "krum", "--trim-ratio", "0.3"], "trim_ratio applies to trimmed_mean, not"),
        (["--rule", "centered_clipping", "--rule-params", "tau=-1"], "tau must be finite and > 0"),
        (["--byzantine-fraction", "1.5"], "byzantine_fraction must be a number in [0.0, 0.9]"),
        (["--f", "1"], "f applies to krum, multi_krum, bulyan"),
        (["--attack", "label_flip", "--attack-strength", "2"], "takes no attack_strength"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(("hierfed simulate: error:", "hierfed: error:"))
    assert message in err
    assert err.count("\n") == 1 and err.rstrip().endswith("--help)")  # one line, no usage


def test_bad_toml_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("roundz = 3\n")
    broken = tmp_path / "broken.toml"
    broken.write_text("rounds = \n")
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text("rounds = 2.5\n")
    for path, message in [
        (unknown, "unknown key 'roundz'"),
        (broken, "broken.toml"),
        (wrong_type, "rounds must be an integer"),
        (tmp_path / "nope.toml", "does not exist"),
    ]:
        with pytest.raises(SystemExit) as exc:
            cli.main(["simulate", "--config", str(path)])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_no_command_prints_help() -> None:
    assert cli.main([]) == 2


def test_default_run_end_to_end_small(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # not a terminal: the full table
    out = tmp_path / "results"
    status = cli.main(["simulate", "--rounds", "3", "--quiet", "--out", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    for label in ("FedAvg", "flat trimmed_mean", "hierarchical trimmed_mean + DP-SGD + SecAgg"):
        assert label in text
    assert "sign_flip (strength 4) attack, 15/75 Byzantine clients spread" in text
    doc = json.loads((out / "results.json").read_text())
    assert doc["config"]["rounds"] == 3 and doc["config"]["dataset"] == "digits"
    assert len(doc["runs"]) == 10
    dp = [r for r in doc["runs"] if r["setup"] == "hierarchical_dp"]
    # the default DP row protects a record, calibrated to epsilon 8 over the run's rounds
    spent = [r["record_privacy_spent"] for r in dp]
    assert all(7.9 < s["epsilon"] <= 8.0 and s["delta"] == 1e-5 for s in spent)
    assert doc["table"]["rows"][3][4] == "8/record"
    # the DP-FedAvg row protects a client, calibrated to epsilon 8 the same way
    fedavg = [r for r in doc["runs"] if r["setup"] == "hierarchical_dpfedavg"]
    spent = [r["client_privacy_spent"] for r in fedavg]
    assert len(spent) == 2 and all(7.9 < s["epsilon"] <= 8.0 and s["delta"] == 1e-5 for s in spent)
    assert doc["table"]["rows"][4][4] == "8/client"
    assert doc["table"]["rows"][4][0] == "hierarchical mean + DP-FedAvg + SecAgg"
    assert [len(r["rounds"]) for r in doc["runs"]] == [3] * 10
    assert len(doc["table"]["rows"]) == 5

    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE
    from matplotlib import image

    pixels = image.imread(str(out / "accuracy.png"))
    assert pixels.shape[:2] == (720, 1020)  # 8.5 x 6 inches at 120 dpi
    assert pixels.std() > 0.01  # something was drawn


def test_command_runs_as_a_module_and_as_the_console_script() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hierfed", "simulate", "--rounds", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "rounds must be an integer >= 1" in done.stderr
    version = subprocess.run(
        [sys.executable, "-m", "hierfed", "--version"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0 and version.stdout.startswith("hierfed ")
    script = shutil.which("hierfed")
    if script is not None:  # installed with pip: the [project.scripts] entry point
        help_text = subprocess.run([script, "simulate", "--help"], capture_output=True, text=True)
        assert help_text.returncode == 0 and "--clients-per-basket" in help_text.stdout


@pytest.mark.parametrize("missing", ["sklearn", "rich"])
def test_missing_extra_names_it(
    missing: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(sys.modules):
        if name == missing or name.startswith(missing + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, missing, None)
    assert cli.main(["simulate", "--rounds", "1", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert 'pip install "hierfed[simulate]"' in err
    assert {"sklearn": "scikit-learn", "rich": "rich"}[missing] in err
