"""``dubfiv_train``: a run from the command line, the three-file form, resume, and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import toml
import torch

from dubfiv import config as cfg
from dubfiv.cli.train import main
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import CHECKPOINT, load_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cli")
    write_fake_two4two(base / "data" / "other", {"train": 32, "validation": 16}, image_size=16)
    config = tiny_experiment(base / "nowhere", dataset="missing", n_train_samples=800,
                             val_every_samples=0, checkpoint_every_samples=0,
                             sample_every_samples=0)
    return cfg.save_experiment(config, base / "exp.toml"), base / "data"


def _one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("dubfiv_train: error:")
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_train_and_resume_from_the_command_line(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config, data = setup
    args = ["--experiment", str(config), "--output_base_dir", str(tmp_path), "--device", "cpu",
            "--dataset", "other", "--dataset_dir", str(data), "--n_train_samples", "48",
            "--stop_after_samples", "16", "--quiet"]
    assert main(args) == 0
    run_dir = Path(capsys.readouterr().out.strip())
    assert (run_dir / "exp.toml").is_file()
    effective = cfg.load_experiment(run_dir / "models" / "experiment.toml")
    assert (effective.train.dataset, effective.train.n_train_samples) == ("other", 48)
    assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == 16
    assert main(["--resume", str(run_dir), "--device", "cpu", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir)
    assert load_checkpoint(run_dir / CHECKPOINT)["samples_seen"] == 48


def test_three_file_form(setup: tuple[Path, Path], tmp_path: Path,
                         capsys: pytest.CaptureFixture) -> None:
    config, data = setup
    experiment = cfg.load_experiment(config)
    (tmp_path / "m.toml").write_text(cfg.dumps(experiment.model))
    (tmp_path / "t.toml").write_text(cfg.dumps(experiment.train))
    (tmp_path / "c.toml").write_text(
        toml.dumps({"classifiers": [cfg.to_dict(c) for c in experiment.classifiers]}))
    code = main(["--model", str(tmp_path / "m.toml"), "--train", str(tmp_path / "t.toml"),
                 "--classifiers", str(tmp_path / "c.toml"), "--output_base_dir",
                 str(tmp_path / "runs"), "--dataset", "other", "--dataset_dir", str(data),
                 "--n_train_samples", "16", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    run_dir = Path(capsys.readouterr().out.strip())
    assert {"m.toml", "t.toml", "c.toml"} <= {p.name for p in run_dir.iterdir()}
    loaded = cfg.load_experiment(run_dir / "models" / "experiment.toml")
    assert loaded.classifiers == experiment.classifiers and loaded.model == experiment.model


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "missing.toml"
    assert main(["--experiment", str(missing), "--output_base_dir", str(tmp_path)]) == 1
    _one_line_error(capsys, str(missing), "not found")
    assert not list(tmp_path.iterdir())


def test_bad_key_names_key_and_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch_sise = 4\n")
    assert main(["--experiment", str(bad), "--output_base_dir", str(tmp_path / "o")]) == 1
    _one_line_error(capsys, str(bad), "train.batch_sise")


def test_missing_dataset(setup: tuple[Path, Path], tmp_path: Path,
                         capsys: pytest.CaptureFixture) -> None:
    config, _ = setup
    assert main(["--experiment", str(config), "--output_base_dir", str(tmp_path / "o"),
                 "--device", "cpu"]) == 1
    _one_line_error(capsys, "nowhere/missing/train", "python -m two4two")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "--experiment"),
        (["--experiment", "x.toml"], "--output_base_dir"),
        (["--experiment", "x.toml", "--model", "m.toml", "--output_base_dir", "o"], "not both"),
        (["--model", "m.toml", "--output_base_dir", "o"], "--train"),
        (["--resume", "r", "--experiment", "x.toml"], "drop --experiment"),
        (["--resume", "r", "--n_train_samples", "5"], "drop --n_train_samples"),
        (["--experiment", "x.toml", "--device", "tpu"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    _one_line_error(capsys, needle)


def test_resume_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--resume", str(tmp_path / "gone")]) == 1
    _one_line_error(capsys, str(tmp_path / "gone"), "not found")
    (tmp_path / "run" / "models").mkdir(parents=True)
    assert main(["--resume", str(tmp_path / "run")]) == 1
    _one_line_error(capsys, "experiment.toml")


def test_console_entry_point_help() -> None:
    result = subprocess.run([sys.executable, "-m", "dubfiv.cli.train", "--help"],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0 and "--resume" in result.stdout and "torchrun" in result.stdout


def test_library_errors_are_worded_as_flags_one_way(capsys: pytest.CaptureFixture) -> None:
    """A backticked parameter and a ``ParameterError.parameter`` become the command's flag
    through the one function every command uses."""
    from dubfiv.cli._oneline import fail, flag_message, flags_of
    from dubfiv.cli.train import build_parser
    from dubfiv.errors import ParameterError

    flags = flags_of(build_parser(), run_dir="--resume")
    assert flag_message(ParameterError("`dataset_dir` x: folder not found"), flags) == (
        "--dataset_dir x: folder not found")
    assert flag_message(ParameterError("run_dir x: not found", "run_dir"), flags) == (
        "--resume x: not found")
    assert flag_message(ParameterError("folder not\nfound", "dataset_dir"), flags) == (
        "--dataset_dir: folder not found")
    assert flag_message(ParameterError("`run_dir` x", "run_dir"), flags) == "--resume x"
    assert flag_message(ParameterError("unknown 1", "unknown"), flags) == "unknown 1"
    assert fail("dubfiv_train", ParameterError("amp off", "amp"), flags=flags) == 1
    _one_line_error(capsys, "dubfiv_train: error: --amp off")
