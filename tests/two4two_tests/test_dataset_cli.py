"""The dataset CLI: config validation, on-disk format, resuming, interventions.

Most tests use the fake renderer of ``conftest.py`` (the render contract
without Blender); ``test_real_render_interrupted_and_resumed`` runs the real
``python -m two4two`` with Blender, kills it mid-split and resumes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import toml
from PIL import Image
from two4two_fakes import (
    TINY_SPLITS,
    FakeRenderer,
    fake_image,
    wait_for_recorded,
    write_config,
)

from two4two import cli_tool
from two4two.cli_tool import render_dataset
from two4two.dataset import DatasetError
from two4two.dataset_config import DatasetConfigError, load_dataset_configs
from two4two.scene_parameters import SAMPLED_ATTRIBUTES, load_jsonl

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(tmp_path: Path, extra: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path / "tiny.toml", tmp_path / "data", splits=TINY_SPLITS,
                        extra=extra)


def check_split(directory: Path, n: int) -> list:
    """The split is complete and consistent: n lines, PNGs of the right shape, no leftovers."""
    args = json.loads((directory / "split_args.json").read_text())
    assert args["complete"] is True and args["n_samples"] == n
    scenes = load_jsonl(directory / "parameters.jsonl")
    assert len(scenes) == n and len({p.id for p in scenes}) == n
    for p in scenes:
        image = np.array(Image.open(directory / p.filename))
        mask = np.array(Image.open(directory / p.mask_filename))
        assert image.shape == (*p.resolution, 3) and image.dtype == np.uint8
        assert mask.shape == tuple(p.resolution) and mask.max() <= 8
    expected = {"parameters.jsonl", "split_args.json", "intervention.json"}
    expected |= {p.filename for p in scenes} | {p.mask_filename for p in scenes}
    assert {f.name for f in directory.iterdir()} <= expected
    return scenes


# --------------------------------------------------------------------------- format


def test_end_to_end_with_fake_renderer(tmp_path, fake_renderer: FakeRenderer) -> None:
    written = render_dataset(tiny_config(tmp_path), render_fn=fake_renderer, progress=False)
    data = tmp_path / "data"
    names = ["train", "test", "test_obj_color", "test_spherical_bg_color"]
    assert [d.name for d in written] == names
    train, test = check_split(data / "train", 6), check_split(data / "test", 5)
    assert {p.resolution for p in train + test} == {(32, 32)}
    first = fake_renderer.calls[0]
    assert (first["samples"], first["n_processes"], first["chunk_size"]) == (4, 1, 1)
    assert first["output_dir"] == data / "train"
    # the PNGs are what the renderer returned
    p = train[0]
    image, mask = fake_image(p)
    assert np.array_equal(np.array(Image.open(data / "train" / p.filename)), image)
    assert np.array_equal(np.array(Image.open(data / "train" / p.mask_filename)), mask)
    args = json.loads((data / "test" / "split_args.json").read_text())
    assert args["sampler"] == "dubfiv.data_generation.SamplerObjColorAndSpherical"
    assert args["sampler_config"] == {"obj_color_slope": 2.5}
    assert args["split"] == "test" and args["unbiased"] is False
    assert args["interventions"] == [["obj_color"], ["spherical", "bg_color"]]
    # intervention directories: clones in the same order, only the attributes resampled
    for dirname, attrs in [("test_obj_color", ["obj_color"]),
                           ("test_spherical_bg_color", ["spherical", "bg_color"])]:
        clones = check_split(data / dirname, 5)
        info = json.loads((data / dirname / "intervention.json").read_text())
        assert info["modified_attributes"] == attrs and info["dirname"] == dirname
        assert info["split_args"]["split"] == "test"
        assert [c.original_id for c in clones] == [p.id for p in test]
        for original, clone in zip(test, clones, strict=True):
            for attr in SAMPLED_ATTRIBUTES:
                if attr in attrs:
                    assert clone.get_status(attr) == "resampled"
                    assert getattr(clone, attr) != getattr(original, attr)
                else:
                    assert getattr(clone, attr) == getattr(original, attr), attr
    # a complete dataset is not rendered again
    n_rendered = len(fake_renderer.rendered)
    render_dataset(tiny_config(tmp_path), render_fn=fake_renderer, progress=False)
    assert len(fake_renderer.rendered) == n_rendered == 6 + 3 * 5


def test_splits_are_seeded_and_unbiased_flag(tmp_path) -> None:
    first = render_dataset(tiny_config(tmp_path / "a"), render_fn=FakeRenderer(), progress=False)
    second = render_dataset(tiny_config(tmp_path / "b"), render_fn=FakeRenderer(), progress=False)

    def values(directory: Path) -> list:
        return [(p.obj_name, p.spherical, p.obj_color) for p in
                load_jsonl(directory / "parameters.jsonl")]

    assert values(first[0]) == values(second[0])  # same seed: same scenes
    assert values(first[0]) != values(first[1])[:6]  # train and test differ
    unbiased = render_dataset(tiny_config(tmp_path / "c", extra="unbiased = true\n"),
                              render_fn=FakeRenderer(), progress=False)
    scenes = load_jsonl(unbiased[0] / "parameters.jsonl")
    assert all(p.get_status("spherical") == "sampled" for p in scenes)  # drawn once
    biased = load_jsonl(first[0] / "parameters.jsonl")
    assert [p.spherical for p in scenes] != [p.spherical for p in biased]


# --------------------------------------------------------------------------- resuming


def test_interrupted_run_resumes_and_renders_only_the_missing(tmp_path) -> None:
    config = tiny_config(tmp_path)
    train = tmp_path / "data" / "train"
    renderer = FakeRenderer()
    renderer.fail_after = 4
    with pytest.raises(KeyboardInterrupt):
        render_dataset(config, render_fn=renderer, progress=False)
    assert renderer.rendered and len(renderer.rendered) == 4
    planned = load_jsonl(train / "planned.jsonl")
    recorded = load_jsonl(train / "parameters.jsonl")
    assert [p.id for p in recorded] == renderer.rendered == [p.id for p in planned[:4]]
    assert json.loads((train / "split_args.json").read_text())["complete"] is False
    assert not list(train.glob(".*"))  # no temporary files left
    before = {p.id: (train / p.filename).stat().st_mtime_ns for p in recorded}

    resumed = FakeRenderer()
    render_dataset(config, render_fn=resumed, progress=False)
    scenes = check_split(train, 6)
    assert [p.id for p in scenes] == [p.id for p in planned]  # the plan was kept, in order
    assert resumed.rendered[:2] == [p.id for p in planned[4:]]  # only the missing ones
    assert len(resumed.rendered) == 2 + 5 * 3
    assert {p.id: (train / p.filename).stat().st_mtime_ns for p in recorded} == before
    assert not (train / "planned.jsonl").exists()


def test_interrupted_intervention_resumes(tmp_path) -> None:
    config = tiny_config(tmp_path)
    renderer = FakeRenderer()
    renderer.fail_after = 6 + 5 + 2  # train, test, then 2 images of test_obj_color
    renderer.fail_with = RuntimeError
    with pytest.raises(RuntimeError, match="injected"):
        render_dataset(config, render_fn=renderer, progress=False)
    resumed = FakeRenderer()
    render_dataset(config, render_fn=resumed, progress=False)
    assert len(resumed.rendered) == 3 + 5
    data = tmp_path / "data"
    test = check_split(data / "test", 5)
    clones = check_split(data / "test_obj_color", 5)
    assert [c.original_id for c in clones] == [p.id for p in test]


def test_truncated_line_and_deleted_png_are_rendered_again(tmp_path) -> None:
    config = tiny_config(tmp_path)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    train = tmp_path / "data" / "train"
    scenes = load_jsonl(train / "parameters.jsonl")
    # a complete split whose PNG vanished: only that scene is rendered again
    (train / scenes[2].mask_filename).unlink()
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)
    assert renderer.rendered == [scenes[2].id]
    assert [p.id for p in check_split(train, 6)] == [p.id for p in scenes]
    # an unfinished split whose last line was cut short by a crash
    args = json.loads((train / "split_args.json").read_text())
    (train / "split_args.json").write_text(json.dumps({**args, "complete": False}))
    (train / "planned.jsonl").write_text((train / "parameters.jsonl").read_text())
    data = (train / "parameters.jsonl").read_bytes()
    cut = data[: data.rstrip(b"\n").rfind(b"\n") + 1 + 25]
    (train / "parameters.jsonl").write_bytes(cut)
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)
    assert renderer.rendered == [scenes[-1].id]
    assert [p.id for p in check_split(train, 6)] == [p.id for p in scenes]


def test_force_overwrite_and_changed_config(tmp_path) -> None:
    config = tiny_config(tmp_path)
    renderer = FakeRenderer()
    renderer.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        render_dataset(config, render_fn=renderer, progress=False)
    changed = toml.loads(config.read_text())
    changed["dataset"][0]["split"][0]["n_samples"] = 7
    config.write_text(toml.dumps(changed))
    with pytest.raises(DatasetError, match="n_samples"):
        render_dataset(config, render_fn=FakeRenderer(), progress=False)
    changed["dataset"][0]["force_overwrite"] = True
    config.write_text(toml.dumps(changed))
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)
    assert len(check_split(tmp_path / "data" / "train", 7)) == 7
    assert len(renderer.rendered) == 7 + 5 * 3
    old_ids = {p.id for p in load_jsonl(tmp_path / "data" / "test" / "parameters.jsonl")}
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)  # starts over again
    assert len(renderer.rendered) == 7 + 5 * 3
    new_ids = {p.id for p in load_jsonl(tmp_path / "data" / "test" / "parameters.jsonl")}
    assert old_ids == new_ids  # the same seeded plan, ids included


def test_foreign_directory_is_not_overwritten(tmp_path) -> None:
    config = tiny_config(tmp_path)
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="train"):
        render_dataset(config, render_fn=FakeRenderer(), progress=False)
    config = tiny_config(tmp_path, extra="force_overwrite = true\n")
    with pytest.raises(DatasetError, match="does not look like"):
        render_dataset(config, render_fn=FakeRenderer(), progress=False)
    assert (tmp_path / "data" / "train" / "notes.txt").exists()


# --------------------------------------------------------------------------- bad input

BAD_CONFIGS = {
    "unknown_key": ("tiny_splits", 'colour = "red"\n', "dataset[0].colour"),
    "bad_sampler": ("sampler", "two4two.bias.NoSuchSampler", "dataset[0].sampler"),
    "not_a_sampler": ("sampler", "two4two.scene_parameters.SceneParameters",
                      "dataset[0].sampler"),
    "bad_sampler_config_key": ("sampler_config", "obj_colour_slope = 2.5\n",
                               "dataset[0].sampler_config.obj_colour_slope"),
    "bad_sampler_config_value": ("sampler_config", "obj_color_uniform_prob = 1.5\n",
                                 "obj_color_uniform_prob"),
    "out_of_range_value": ("sampler_config", "spherical = 1.5\n", "spherical = 1.5"),
    "zero_samples": ("splits", '[[dataset.split]]\nname = "train"\nn_samples = 0\n',
                     "dataset[0].split[0].n_samples"),
    "bad_intervention": ("splits", '[[dataset.split]]\nname = "test"\nn_samples = 2\n'
                         'interventions = [["wings"]]\n', "dataset[0].split[0].interventions[0]"),
    "unknown_split_key": ("splits", '[[dataset.split]]\nname = "test"\nn_samples = 2\n'
                          'samples = 3\n', "dataset[0].split[0].samples"),
    "duplicate_split": ("splits", '[[dataset.split]]\nname = "a"\nn_samples = 2\n'
                        '[[dataset.split]]\nname = "a"\nn_samples = 2\n',
                        "dataset[0].split[1].name"),
    "bad_resolution": ("splits", 'resolution = [32]\n[[dataset.split]]\nname = "a"\n'
                       "n_samples = 2\n", "dataset[0].resolution"),
    "bad_type": ("tiny_splits", 'debug = "yes"\n', "dataset[0].debug"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_rendering(tmp_path, case, capsys) -> None:
    kind, text, field = BAD_CONFIGS[case]
    kwargs = {}
    if kind == "tiny_splits":
        kwargs = {"splits": text + TINY_SPLITS}
    elif kind == "splits":
        kwargs = {"splits": text}
    elif kind == "sampler":
        kwargs = {"splits": TINY_SPLITS, "sampler": text}
    elif kind == "sampler_config":
        kwargs = {"splits": TINY_SPLITS, "sampler_config": text}
    config = write_config(tmp_path / "bad.toml", tmp_path / "data", **kwargs)
    renderer = FakeRenderer()
    with pytest.raises(DatasetConfigError) as info:
        render_dataset(config, render_fn=renderer)
    assert str(config) in str(info.value) and field in str(info.value)
    assert renderer.calls == [] and not (tmp_path / "data").exists()
    # the CLI prints one line and exits non-zero
    assert cli_tool.main([str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("two4two_render_dataset: error: ") and field in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_and_invalid_files(tmp_path) -> None:
    with pytest.raises(DatasetConfigError, match=r"nothing\.toml"):
        load_dataset_configs(tmp_path / "nothing.toml")
    (tmp_path / "broken.toml").write_text("[[dataset]\n")
    with pytest.raises(DatasetConfigError, match=r"broken\.toml.*not valid TOML"):
        load_dataset_configs(tmp_path / "broken.toml")


class CallersError(Exception):
    """Stands for a caller's own error type."""


@pytest.mark.parametrize(("content", "expected"), [
    (None, r"^`base` .*missing\.toml: file not found; check the path$"),
    ("folder", r"missing\.toml: is a folder"),
    (b'a = 1\nb = "\xff"\n', r"missing\.toml: not UTF-8 text \(line 2, byte 11\); save the file"),
    (b"a = 1\n[x\n", r"not valid TOML at line 2, column 3: Expected ']'.*; correct the TOML"),
    (b"a = ", r"not valid TOML at end of document: Invalid value; correct"),
])
def test_read_toml_raises_the_callers_error_in_one_line(tmp_path, content, expected) -> None:
    from two4two.files import read_toml

    path = tmp_path / "missing.toml"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CallersError, match=expected) as info:
        read_toml(path, CallersError, what="`base` ")
    assert "\n" not in str(info.value)
    good = tmp_path / "good.toml"
    good.write_text("a = 1\n[t]\nb = [1, 2]\n", encoding="utf-8")
    assert read_toml(good, CallersError) == {"a": 1, "t": {"b": [1, 2]}}


def test_repository_configs_are_valid() -> None:
    configs = {name: load_dataset_configs(ROOT / "config" / name) for name in
               ("dataset_config.toml", "dataset_config_unbiased.toml", "dataset_small.toml")}
    for name in ("dataset_config.toml", "dataset_config_unbiased.toml"):
        (config,) = configs[name]
        assert [(s.name, s.n_samples) for s in config.split] == [
            ("train", 60000), ("validation", 5000), ("test", 5000)]
        assert len(config.split[2].interventions) == 11
        assert config.render_samples == 128 and config.resolution == [128, 128]
        assert config.unbiased == name.endswith("unbiased.toml")
        assert config.sampler_config == {"obj_color_slope": 2.5, "obj_color_uniform_prob": 0.15,
                                         "spherical_uniform_prob": 0.33,
                                         "obj_color_value_at_05": 0.25}
    (small,) = configs["dataset_small.toml"]
    assert small.resolution == [64, 64] and small.unbiased is False
    test = next(s for s in small.split if s.name == "test")
    for attrs in (["arm_position"], ["obj_color"], ["bg_color"], ["spherical"]):
        assert attrs in test.interventions


# --------------------------------------------------------------------------- real renderer

HAS_BPY = importlib.util.find_spec("bpy") is not None
HAS_RENDERER = (ROOT / "two4two" / "blender.py").exists()


@pytest.mark.skipif(not (HAS_BPY and HAS_RENDERER), reason="needs bpy and two4two/blender.py")
def test_real_render_interrupted_and_resumed(tmp_path) -> None:
    """``python -m two4two`` with Blender: SIGINT mid-split, then a rerun completes it."""
    splits = """
resolution = [32, 32]
render_samples = 2
n_processes = 1
[[dataset.split]]
name = "train"
n_samples = 150
[[dataset.split]]
name = "test"
n_samples = 2
interventions = [["obj_color"]]
"""
    config = write_config(tmp_path / "real.toml", tmp_path / "data", splits=splits)
    train = tmp_path / "data" / "train"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "two4two", str(config), "--no-progress"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for_recorded(train / "parameters.jsonl", 3, process)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0, err
    recorded = load_jsonl(train / "parameters.jsonl")
    assert 3 <= len(recorded) < 150
    for p in recorded:  # every recorded line has both PNGs
        assert (train / p.filename).is_file() and (train / p.mask_filename).is_file()
    before = {p.id: (train / p.filename).stat().st_mtime_ns for p in recorded}

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    scenes = check_split(train, 150)
    assert [p.id for p in scenes[: len(recorded)]] == [p.id for p in recorded]
    assert {p.id: (train / p.filename).stat().st_mtime_ns for p in recorded} == before
    for p in scenes[:20]:  # real renders: all 9 labels of a whole animal
        mask = np.array(Image.open(train / p.mask_filename))
        assert set(np.unique(mask)) == set(range(9)), p
    test = check_split(tmp_path / "data" / "test", 2)
    clones = check_split(tmp_path / "data" / "test_obj_color", 2)
    assert [c.original_id for c in clones] == [p.id for p in test]


@pytest.mark.slow
@pytest.mark.skipif(not (HAS_BPY and HAS_RENDERER), reason="needs bpy and two4two/blender.py")
def test_small_config_renders_a_biased_dataset(tmp_path) -> None:
    """config/dataset_small.toml renders completely; obj_color and arm_position predict class."""
    from sklearn.metrics import roc_auc_score

    from two4two.dataset import render_dataset_config

    (config,) = load_dataset_configs(ROOT / "config" / "dataset_small.toml")
    config.output_dir = str(tmp_path / "two4two_small")
    written = render_dataset_config(config, progress=False)
    sizes = {split.name: split.n_samples for split in config.split}
    for directory in written:  # intervention splits have the size of the test split
        check_split(directory, sizes.get(directory.name, sizes["test"]))
    train = load_jsonl(tmp_path / "two4two_small" / "train" / "parameters.jsonl")
    y = [p.obj_name == "stretchy" for p in train]
    assert roc_auc_score(y, [p.arm_position for p in train]) > 0.95
    assert roc_auc_score(y, [p.obj_color for p in train]) > 0.6
