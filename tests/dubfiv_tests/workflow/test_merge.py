"""``dubfiv_two4two_merge``: merged splits, aligned interventions, links, archives, errors.

The inputs are real datasets written by ``two4two.dataset.render_dataset_config``
(scenes from the paper's sampler, intervention dirs via ``make_interventions``)
with a stand-in renderer that writes tiny PNGs, so no Blender is needed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tarfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dubfiv.cli.two4two_merge import main
from dubfiv.data import open_split
from dubfiv.workflow.merge import MergeError, merge_datasets
from two4two.dataset import render_dataset_config
from two4two.dataset_config import DatasetConfig, SplitConfig
from two4two.pytorch import Two4Two
from two4two.scene_parameters import SceneParameters, load_jsonl

SIZE = 8
INTERVENTIONS = [["obj_color"], ["arm_position", "bending"]]


def fake_render(params: Sequence[SceneParameters], n_processes: int = 0, chunk_size: int = 1,
                output_dir: str | os.PathLike | None = None, **_: Any,
                ) -> Iterator[tuple[np.ndarray, np.ndarray, SceneParameters]]:
    """The render contract without Blender: an image of the object colour, a stripe mask."""
    for p in params:
        image = np.empty((SIZE, SIZE, 3), dtype=np.uint8)
        image[:] = np.round(np.asarray(p.obj_color_rgba[:3]) * 255).astype(np.uint8)
        mask = (np.arange(SIZE) * 9 // SIZE).astype(np.uint8)[None].repeat(SIZE, axis=0)
        assert output_dir is not None
        Image.fromarray(image).save(Path(output_dir) / p.filename)
        Image.fromarray(mask).save(Path(output_dir) / p.mask_filename)
        yield image, mask, p


def render(root: Path, seed: int, splits: dict[str, int], extra: dict[str, int] | None = None
           ) -> Path:
    split_configs = [SplitConfig("train", splits["train"]),
                     SplitConfig("test", splits["test"], [list(a) for a in INTERVENTIONS])]
    split_configs += [SplitConfig(name, n) for name, n in (extra or {}).items()]
    config = DatasetConfig(output_dir=str(root), split=split_configs,
                           sampler="dubfiv.data_generation.SamplerObjColorAndSpherical",
                           resolution=[SIZE, SIZE], render_samples=1, seed=seed)
    render_dataset_config(config, render_fn=fake_render, progress=False)
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("sources")
    a = render(base / "a", 0, {"train": 5, "test": 4}, extra={"extra": 2})
    b = render(base / "b", 1, {"train": 3, "test": 6})
    # shuffle b's intervention lines: the merge must restore the order of the originals
    path = b / "test_obj_color" / "parameters.jsonl"
    lines = path.read_text().splitlines()
    random.Random(0).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return a, b


def lines_of(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def intervention_dirname(attrs: list[str]) -> str:
    return "_".join(["test", *attrs])


def test_merge_concatenates_splits_and_aligns_interventions(
        sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    dest = tmp_path / "data" / "merged"
    report = merge_datasets(dest, [a, b], progress=False)
    assert report.destination == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["train", "test", "extra", "merge.json", *map(intervention_dirname, INTERVENTIONS)])
    for split in ("train", "test"):
        # the sources' lines verbatim, in the order the datasets were given
        assert lines_of(dest / split / "parameters.jsonl") == (
            lines_of(a / split / "parameters.jsonl") + lines_of(b / split / "parameters.jsonl"))
        data = Two4Two(dest, split)
        assert len(data) == len(load_jsonl(a / split / "parameters.jsonl")) + len(
            load_jsonl(b / split / "parameters.jsonl"))
        image, mask, label = data[0]
        assert tuple(image.shape) == (3, SIZE, SIZE) and tuple(mask.shape) == (1, SIZE, SIZE)
        first = load_jsonl(a / split / "parameters.jsonl")[0]
        assert float(label[0]) == float(first.obj_name == "stretchy")
        # the fake image is the object colour: the merged image belongs to that scene
        expected = np.round(np.asarray(first.obj_color_rgba[:3]) * 255) / 255
        assert np.allclose(image[:, 0, 0].numpy(), expected, atol=1e-6)
    assert report.partial == {"extra": [b]}
    assert len(load_jsonl(dest / "extra" / "parameters.jsonl")) == 2
    originals = load_jsonl(dest / "test" / "parameters.jsonl")
    for attrs in INTERVENTIONS:
        name = intervention_dirname(attrs)
        merged = load_jsonl(dest / name / "parameters.jsonl")
        # aligned: the i-th intervened scene is a clone of the i-th original
        assert [p.original_id for p in merged] == [p.id for p in originals]
        source_ids = {p.id for src in (a, b) for p in load_jsonl(src / name / "parameters.jsonl")}
        assert {p.id for p in merged} == source_ids
        info = json.loads((dest / name / "intervention.json").read_text())
        assert info["modified_attributes"] == attrs and info["dirname"] == name
        assert info["split_args"]["split"] == "test"
        assert [m["dataset"] for m in info["merged_from"]] == [str(a.resolve()),
                                                                str(b.resolve())]
        assert len(Two4Two(dest, name)) == len(originals)
    args = json.loads((dest / "test" / "split_args.json").read_text())
    assert args["n_samples"] == 10 and args["complete"] is True
    assert args["sampler"] == "dubfiv.data_generation.SamplerObjColorAndSpherical"
    assert args["interventions"] == INTERVENTIONS
    assert "seed" not in args  # differs between the sources: kept per source only
    assert [(m["dataset"], m["n_samples"]) for m in args["merged_from"]] == [
        (str(a.resolve()), 4), (str(b.resolve()), 6)]
    # the images are the sources' files, hard-linked (same file system)
    first = originals[0]
    assert os.stat(dest / "test" / first.filename).st_ino == os.stat(
        a / "test" / first.filename).st_ino
    assert report.files == {"hardlinked": 2 * (8 + 2 + 10 * 3), "copied": 0, "symlinked": 0}
    # the training code's loader opens it too
    split = open_split(dest.parent, dest.name, "train", ["obj_name"])
    assert len(split) == 8
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]


def test_copy_symlink_and_archive(sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    copied = merge_datasets(tmp_path / "copied", [a, b], mode="copy", progress=False)
    image = load_jsonl(a / "train" / "parameters.jsonl")[0].filename
    target = tmp_path / "copied" / "train" / image
    assert copied.files["copied"] > 0 and copied.files["hardlinked"] == 0
    assert os.stat(target).st_ino != os.stat(a / "train" / image).st_ino
    assert target.read_bytes() == (a / "train" / image).read_bytes()

    linked = merge_datasets(tmp_path / "linked", [a, b], mode="symlink", archive=True,
                            progress=False)
    target = tmp_path / "linked" / "train" / image
    assert target.is_symlink() and target.resolve() == (a / "train" / image).resolve()
    assert linked.archive == tmp_path / "linked.tar.gz"
    with tarfile.open(linked.archive) as tar:
        member = tar.getmember(f"linked/train/{image}")
        assert member.isfile()  # stored by content, not as a link
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / "linked"
    assert (unpacked / "train" / image).read_bytes() == (a / "train" / image).read_bytes()
    assert len(Two4Two(unpacked, "test_obj_color")) == 10


def test_cli_merges_and_reports(sources: tuple[Path, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    a, b = sources
    dest = tmp_path / "m"
    assert main(["--destination", str(dest), "--datasets", str(a), str(b), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(dest)
    assert "train: 8 scenes" in err and "split extra is not in" in err
    assert "files: 80 hardlinked" in err
    assert len(Two4Two(dest, "test")) == 10
    linked = tmp_path / "linked"
    assert main(["--destination", str(linked), "--datasets", str(a), str(b), "--link", "--tar",
                 "--quiet"]) == 0
    assert capsys.readouterr().out.split() == [str(linked), f"{linked}.tar.gz"]
    scene = load_jsonl(b / "train" / "parameters.jsonl")[0]
    assert (linked / "train" / scene.filename).is_symlink()
    assert tarfile.is_tarfile(f"{linked}.tar.gz")


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("dubfiv_two4two_merge: error:")
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_id_clash_names_both_files(sources: tuple[Path, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    a, _ = sources
    copy = tmp_path / "copy_of_a"
    shutil.copytree(a, copy)
    dest = tmp_path / "dest"
    assert main(["--destination", str(dest), "--datasets", str(a), str(copy), "--quiet"]) == 1
    one_line_error(capsys, "scene id", str(a / "extra" / "parameters.jsonl"),
                   str(copy / "extra" / "parameters.jsonl"))
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["copy_of_a"]  # no temporary folders left


def test_existing_destination(sources: tuple[Path, Path], tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    a, b = sources
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    args = ["--destination", str(dest), "--datasets", str(a), str(b), "--quiet"]
    assert main(args) == 1
    one_line_error(capsys, str(dest), "not empty", "--force")
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert main([*args, "--force"]) == 0
    assert not (dest / "keep.txt").exists() and len(Two4Two(dest, "train")) == 8
    # an empty folder is fine without --force
    empty = tmp_path / "empty"
    empty.mkdir()
    merge_datasets(empty, [a, b], progress=False)
    assert len(Two4Two(empty, "train")) == 8


@pytest.mark.parametrize(("case", "message"), [
    ("same_as_source", "overlaps the input"), ("inside_source", "overlaps the input"),
    ("twice", "is given twice"), ("one", "at least two")])
def test_bad_paths(sources: tuple[Path, Path], tmp_path: Path, case: str, message: str) -> None:
    a, b = sources
    dest, inputs = {"same_as_source": (a, [a, b]), "inside_source": (a / "merged", [a, b]),
                    "twice": (tmp_path / "d", [a, a]), "one": (tmp_path / "d", [a])}[case]
    with pytest.raises(MergeError, match=message):
        merge_datasets(dest, inputs, force=True, progress=False)
    assert sorted(p.name for p in a.iterdir()) == sorted(
        ["train", "test", "extra", *map(intervention_dirname, INTERVENTIONS)])
    assert not (tmp_path / "d").exists()


def test_strict_refuses_partial_splits(sources: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(MergeError, match="split extra is missing from"):
        merge_datasets(tmp_path / "d", list(sources), strict=True, progress=False)
    assert not (tmp_path / "d").exists()


def damaged_copy(source: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(source, copy)
    return copy


def test_intervention_without_its_original(sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    bad = damaged_copy(b, tmp_path, "bad")
    path = bad / "test_obj_color" / "parameters.jsonl"
    lines = path.read_text().splitlines()
    state = json.loads(lines[2])
    state["original_id"] = str(uuid.uuid4())
    lines[2] = json.dumps(state)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MergeError, match=r"line 3: original_id .* is not a scene of"):
        merge_datasets(tmp_path / "d", [a, bad], progress=False)


def test_missing_image_and_unfinished_split(sources: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sources
    bad = damaged_copy(b, tmp_path, "bad")
    scene = load_jsonl(bad / "train" / "parameters.jsonl")[1]
    (bad / "train" / scene.mask_filename).unlink()
    with pytest.raises(MergeError, match=f"{scene.mask_filename}: missing"):
        merge_datasets(tmp_path / "d", [a, bad], progress=False)
    bad2 = damaged_copy(b, tmp_path, "bad2")
    args_path = bad2 / "test" / "split_args.json"
    args = json.loads(args_path.read_text())
    args_path.write_text(json.dumps({**args, "complete": False}))
    with pytest.raises(MergeError, match="not completely rendered"):
        merge_datasets(tmp_path / "d", [a, bad2], progress=False)
    with pytest.raises(MergeError, match="this is a split folder"):
        merge_datasets(tmp_path / "d", [a, b / "train"], progress=False)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("bad_id", ["../../../escaped", "/tmp/absolute", "a/b", "..",
                                    "3F2B8C1E-9D4A-4C6E-8F0B-2A7D5E9C1B34x"])
def test_an_id_that_is_no_file_name_is_refused(sources: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture, bad_id: str,
                                               ) -> None:
    """Ids become file names: a crafted id must not read or write outside the datasets."""
    a, b = sources
    bad = damaged_copy(b, tmp_path, "bad")
    path = bad / "train" / "parameters.jsonl"
    lines = path.read_text().splitlines()
    state = json.loads(lines[1])
    old_id, state["id"] = state["id"], bad_id
    lines[1] = json.dumps(state)
    path.write_text("\n".join(lines) + "\n")
    for suffix in (".png", "_mask.png"):  # the files the id points at exist where it points
        target = bad / "train" / f"{bad_id}{suffix}"
        if not bad_id.startswith("/"):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(bad / "train" / f"{old_id}{suffix}", target)
    dest = tmp_path / "out" / "dest"
    assert main(["--destination", str(dest), "--datasets", str(a), str(bad), "--quiet"]) == 1
    one_line_error(capsys, f"{path}: line 2: id", "is not a scene id")
    assert not (tmp_path / "out").exists()  # nothing written, inside or outside dest
    for suffix in (".png", "_mask.png"):  # where the merge would have put the files
        assert not (dest / "train" / f"{bad_id}{suffix}").resolve().exists()


def test_a_killed_merges_temporary_folder_is_removed_by_the_next(
        sources: tuple[Path, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    from two4two.files import owner_tag

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    host = owner_tag().split("-")[1]
    stale = tmp_path / f".dest.merging-pid{dead}-{host}-abc"
    live = tmp_path / f".dest.merging-{owner_tag()}-def"
    for folder in (stale, live):
        (folder / "train").mkdir(parents=True)
    merge_datasets(tmp_path / "dest", list(sources), progress=False)
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "dest"]
