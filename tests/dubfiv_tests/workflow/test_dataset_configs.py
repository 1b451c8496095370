"""``dubfiv_dataset_configs``: families of dataset TOMLs over a grid, and the error cases."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dubfiv.cli.dataset_configs import main
from dubfiv.workflow import WorkflowError
from dubfiv.workflow.dataset_configs import GENERATORS, build_variants, parse_grid_arg
from two4two.dataset_config import load_dataset_configs, make_sampler

ROOT = Path(__file__).resolve().parents[3]
SMALL = ROOT / "config" / "dataset_small.toml"
PAPER = ROOT / "config" / "dataset_config.toml"
PAPER_UNBIASED = ROOT / "config" / "dataset_config_unbiased.toml"
RELEASED = "two4two_obj_color_and_spherical_finer_search_spherical_uniform_0.33_uniform_0.15"


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("dubfiv_dataset_configs: error:")
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_custom_grid_over_bias_and_split_size(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "configs"
    assert main(["--name", "sweep", "--config", str(SMALL), "--output_dir", str(out),
                 "--grid", "obj_color_uniform_prob=0.05,0.3",
                 "--grid", "train.n_samples=100,200"]) == 0
    printed = capsys.readouterr().out.split()
    [base] = load_dataset_configs(SMALL)
    expected = {(0.05, 100), (0.05, 200), (0.3, 100), (0.3, 200)}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"sweep_obj_color_uniform_prob_{u}_train_n_samples_{n}.toml" for u, n in expected)
    assert sorted(printed) == sorted(str(p) for p in out.iterdir())
    seen = set()
    for path in out.iterdir():
        [config] = load_dataset_configs(path)  # every file parses strictly
        u = config.sampler_config["obj_color_uniform_prob"]
        n = {s.name: s.n_samples for s in config.split}["train"]
        seen.add((u, n))
        assert config.output_dir == f"data/{path.stem}"  # beside the base's output_dir
        sampler = make_sampler(config)
        assert sampler.obj_color_uniform_prob == u
        assert sampler.spherical_uniform_prob == base.sampler_config["spherical_uniform_prob"]
        # everything else is the base's
        changed = {"output_dir": config.output_dir, "sampler_config": config.sampler_config,
                   "split": config.split}
        assert config == dataclasses.replace(base, **changed)
        assert config.sampler_config == {**base.sampler_config, "obj_color_uniform_prob": u}
        assert [(s.name, s.interventions) for s in config.split] == [
            (s.name, s.interventions) for s in base.split]
        assert {s.name: s.n_samples for s in config.split} == {
            **{s.name: s.n_samples for s in base.split}, "train": n}
    assert seen == expected
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_finer_search_reproduces_the_released_datasets(tmp_path: Path) -> None:
    variants = build_variants(PAPER, "finer_search", tmp_path)
    grid = GENERATORS["finer_search"].grid
    assert len(variants) == len(grid["spherical_uniform_prob"]) * len(
        grid["obj_color_uniform_prob"])
    assert 0.15 in grid["obj_color_uniform_prob"] and 0.33 in grid["spherical_uniform_prob"]
    released = {v.name: v for v in variants}[RELEASED]
    # the released point is exactly the paper's config, down to the output folder
    [paper] = load_dataset_configs(PAPER)
    assert released.config == paper
    assert released.config.output_dir == f"data/{RELEASED}"
    [unbiased_variant] = [v for v in build_variants(PAPER, "finer_search_unbiased", tmp_path)
                          if v.name == RELEASED + "_unbiased"]
    [paper_unbiased] = load_dataset_configs(PAPER_UNBIASED)
    assert unbiased_variant.config == paper_unbiased
    assert not list(tmp_path.iterdir())  # build_variants writes nothing


def test_grid_file_and_flag_override(tmp_path: Path) -> None:
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\nobj_color_slope = [1.0, 5.0]\n"validation.n_samples" = [7]\n'
                    '[labels]\nobj_color_slope = "slope"\n')
    variants = build_variants(SMALL, "fam", tmp_path / "out", grid_file=grid,
                              grid_args=["validation.n_samples=9"])
    assert [v.name for v in variants] == ["fam_slope_1.0_validation_n_samples_9",
                                          "fam_slope_5.0_validation_n_samples_9"]
    assert [{s.name: s.n_samples for s in v.config.split}["validation"] for v in variants] == [
        9, 9]
    # a dotted key written without quotes is a nested TOML table: read as the same key
    grid.write_text("[grid]\ntrain.n_samples = [11, 12]\n")
    names = [v.name for v in build_variants(SMALL, "dot", tmp_path / "out", grid_file=grid)]
    assert names == ["dot_train_n_samples_11", "dot_train_n_samples_12"]
    # ... also in [labels]; a bad value names the dotted key (no KeyError)
    grid.write_text('[grid]\ntrain.n_samples = [11]\n[labels]\ntrain.n_samples = "n"\n')
    [named] = build_variants(SMALL, "dot", tmp_path / "out", grid_file=grid)
    assert named.name == "dot_n_11"
    grid.write_text("[grid]\ntrain.n_samples = []\n")
    with pytest.raises(WorkflowError, match=r"grid\.train\.n_samples: expected a non-empty"):
        build_variants(SMALL, "dot", tmp_path / "out", grid_file=grid)
    # an unbiased base never gets the name of a biased dataset
    unbiased = ROOT / "config" / "dataset_config_unbiased.toml"
    [released] = build_variants(unbiased, "released", tmp_path / "out")
    assert released.name.endswith("_unbiased") and released.config.unbiased
    assert released.config.output_dir.endswith("_unbiased")
    # a generator's axis can be narrowed from the command line
    [only] = build_variants(PAPER, "finer_search", tmp_path,
                            grid_args=["spherical_uniform_prob=0.33",
                                       "obj_color_uniform_prob=0.15"])
    assert only.name == RELEASED


def test_list_shows_the_generators(capsys: pytest.CaptureFixture) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("finer_search", "finer_search_unbiased", "train_size"):
        assert f"{name}:" in out
    assert "0.15" in out and "0.33" in out and "sets unbiased = true" in out


def test_key_that_is_no_sampler_parameter(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "configs"
    assert main(["--name", "x", "--config", str(SMALL), "--output_dir", str(out),
                 "--grid", "obj_colour_prob=0.1,0.2"]) == 1
    one_line_error(capsys, "--grid obj_colour_prob", "not a parameter of",
                   "SamplerObjColorAndSpherical", "obj_color_uniform_prob", "train.n_samples")
    assert not out.exists()
    grid = tmp_path / "grid.toml"
    grid.write_text("[grid]\nnot_a_key = [1]\n")
    with pytest.raises(WorkflowError, match=re.escape(f"`grid_file` {grid}: grid.not_a_key")):
        build_variants(SMALL, "x", out, grid_file=grid)
    with pytest.raises(WorkflowError, match=re.escape("'test2.n_samples' is not a parameter")):
        build_variants(SMALL, "x", out, grid_args=["test2.n_samples=5"])


def test_invalid_value_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "configs"
    assert main(["--name", "x", "--config", str(SMALL), "--output_dir", str(out),
                 "--grid", "obj_color_uniform_prob=0.1,1.5"]) == 1
    one_line_error(capsys, "x_obj_color_uniform_prob_1.5", "obj_color_uniform_prob",
                   "[0, 1]")
    assert not out.exists()  # the valid variant was not written either
    assert main(["--name", "x", "--config", str(SMALL), "--output_dir", str(out),
                 "--grid", "train.n_samples=10,0"]) == 1
    one_line_error(capsys, "n_samples", "must be >= 1")
    assert not out.exists()


def test_existing_files_and_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "configs"
    args = ["--name", "x", "--config", str(SMALL), "--output_dir", str(out),
            "--grid", "obj_color_slope=1,2"]
    assert main(args) == 0
    assert main(args) == 0  # the same content again: fine
    target = out / "x_obj_color_slope_1.toml"
    target.write_text("# edited\n")
    capsys.readouterr()
    assert main(args) == 1
    one_line_error(capsys, str(target), "--force")
    assert target.read_text() == "# edited\n"
    assert main([*args, "--force"]) == 0
    assert load_dataset_configs(target)[0].sampler_config["obj_color_slope"] == 1


@pytest.mark.parametrize(("args", "needles"), [
    (["--name", "nope"], ["--name 'nope'", "finer_search", "--grid"]),
    (["--name", "x", "--grid", "obj_color_slope"], ["expected key=value1"]),
    (["--name", "x", "--grid", "obj_color_slope=1,,2"], ["expected key=value1"]),
    (["--name", "x", "--grid", "obj_color_slope=1,1"], ["repeated value"]),
    (["--name", "x", "--grid", "obj_color_slope=1", "--grid", "obj_color_slope=2"],
     ["given twice"]),
])
def test_bad_grid_arguments(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str],
                            needles: list[str]) -> None:
    assert main([*args, "--config", str(SMALL), "--output_dir", str(tmp_path / "o")]) == 1
    one_line_error(capsys, *needles)


def test_bad_base_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--name", "finer_search", "--config", str(tmp_path / "missing.toml"),
                 "--output_dir", str(tmp_path)]) == 1
    one_line_error(capsys, "missing.toml", "not found")
    with pytest.raises(SystemExit) as exit_info:
        main(["--name", "finer_search"])
    assert exit_info.value.code == 2
    assert "--config, --output_dir required" in capsys.readouterr().err


def test_parse_grid_values() -> None:
    assert parse_grid_arg("a=0.15, 1000,true,word") == ("a", [0.15, 1000, True, "word"])
