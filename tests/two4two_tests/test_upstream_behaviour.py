"""Upstream two4two (v0.0.4) behaviour that its own tests and example notebook rely on,
and its last public names (docs/two4two_api.md); the other names are tested in
``test_upstream_api.py``."""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib.util
import json
import subprocess
import typing

import matplotlib
import numpy as np
import pytest
import scipy.stats
from two4two_fakes import FakeRenderer

import two4two
from two4two import blender, cli_tool
from two4two.dataset import DatasetError
from two4two.errors import Two4TwoError
from two4two.pytorch import SEGMENTATION_LABELS, Two4Two
from two4two.scene_parameters import SceneParameters, SceneValueError, load_jsonl

matplotlib.use("Agg")

HAS_BPY = importlib.util.find_spec("bpy") is not None
needs_bpy = pytest.mark.skipif(not HAS_BPY, reason="needs bpy")


# --------------------------------------------------------------------------- sampler


def test_sample_from_a_per_class_dict_without_the_class_is_a_key_error() -> None:
    """Upstream indexes ``dist[obj_name]``; its test expects KeyError."""
    with pytest.raises(KeyError, match="stretchy") as info:
        two4two.Sampler._sample("stretchy", {"peaky": 1.0})
    assert isinstance(info.value, Two4TwoError) and isinstance(info.value, ValueError)
    with pytest.raises(KeyError):
        two4two.Sampler._sample_truncated("stretchy", {"peaky": 1.0}, max=2.0)
    # obj_name=None: the dict's first distribution
    assert two4two.Sampler._sample(None, {"stretchy": 2.0, "peaky": 1.0}) == 2.0
    assert two4two.Sampler._sample(None, {"peaky": 1.0, "stretchy": 2.0}, size=2) == (1.0, 1.0)


def test_sample_labeling_error_stores_what_the_distribution_returns(tmp_path) -> None:
    """Upstream's test: a lambda returning 0.5 gives 0.5. A Bernoulli's 1 stays the
    number 1 through the dataset writer and the PyTorch dataset."""
    sampler = two4two.Sampler()
    sampler.labeling_error = lambda: 0.5
    params = SceneParameters()
    sampler.sample_labeling_error(params)
    assert params.labeling_error == 0.5 and params.get_status("labeling_error") == "sampled"
    with pytest.raises(ValueError, match=r"labeling_error = 0\.5"):
        params.check_values()  # as upstream: a flag is 0/1

    sampler.labeling_error = scipy.stats.bernoulli(1.0)
    args = cli_tool.RenderSplitArgs(sampler, 3, str(tmp_path / "data" / "train"))
    cli_tool.render_dataset_split(args, render_fn=FakeRenderer(), progress=False)
    scenes = load_jsonl(tmp_path / "data" / "train" / "parameters.jsonl")
    assert [type(p.labeling_error) for p in scenes] == [int] * 3
    dataset = Two4Two(tmp_path / "data", "train", return_attributes=["obj_name", "label"],
                      return_segmentation_mask=False)
    for p, (_image, labels) in zip(scenes, dataset, strict=True):
        assert labels.tolist() == [p.obj_name_as_int, 1 - p.obj_name_as_int]


# --------------------------------------------------------------------------- out-of-range scenes


def test_out_of_range_values_are_assigned_and_check_values_names_them() -> None:
    params = SceneParameters()
    params.obj_rotation_pitch = 1.2  # the notebook's value, beyond +-pi/3
    assert params.obj_rotation_pitch == 1.2
    with pytest.raises(ValueError, match=r"obj_rotation_pitch = 1\.2 .*\[-1\.0472, 1\.0472\]"):
        params.check_values()
    # the renderer draws any finite value, but refuses what cannot be drawn at all
    broken = SceneParameters(bending=float("nan"))
    with pytest.raises(SceneValueError, match=rf"{broken.id}.*bending = nan"):
        blender.Renderer(1).render([broken])


@needs_bpy
def test_notebook_renders_an_out_of_range_scene() -> None:
    """The notebook cell: assign pitch 1.2, then ``render_single_param``."""
    from two4two.plotvis import render_single_param

    params = SceneParameters(resolution=(32, 32))
    params.obj_rotation_pitch = 1.2
    _fig, ax = render_single_param(params, samples=1, n_processes=1)
    image = ax.images[0].get_array()
    assert image.shape == (32, 32, 3) and image.std() > 0


def test_dataset_writer_refuses_an_out_of_range_scene_before_rendering(tmp_path) -> None:
    class Unchecked(two4two.Sampler):
        def sample(self, obj_name: str | None = None) -> SceneParameters:
            params = SceneParameters()
            params.obj_rotation_pitch = 1.2
            return params

    renderer = FakeRenderer()
    args = cli_tool.RenderSplitArgs(Unchecked(), 2, str(tmp_path / "train"))
    with pytest.raises(DatasetError, match=r"scene [0-9a-f-]{36} .*obj_rotation_pitch = 1\.2"):
        cli_tool.render_dataset_split(args, render_fn=renderer, progress=False)
    assert renderer.calls == []


# --------------------------------------------------------------------------- the last names


def test_ensure_blender_available(monkeypatch) -> None:
    if HAS_BPY:
        assert blender.ensure_blender_available() is None
        assert blender.ensure_blender_available(blender_dir="x", download_blender=True) is None
    failed = subprocess.CompletedProcess([], 1, "", "Traceback\nImportError: no libGL")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(blender.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(blender.RenderError, match=r"does not import \(ImportError: no libGL\)"):
        blender.ensure_blender_available()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(blender.RenderError, match=r'pip install "bpy==4\.5\.\*"'):
        blender.ensure_blender_available()


def test_segmentation_maps_are_the_mask_values() -> None:
    names = ["background", "arm_left_top", "arm_left_bottom", "spine_left",
             "spine_left_center", "spine_right_center", "spine_right", "arm_right_top",
             "arm_right_bottom"]
    assert blender.SEGMENTATION_INT_TO_NAME == dict(enumerate(names))
    assert blender.SEGMENTATION_NAME_TO_INT == {name: i for i, name in enumerate(names)}
    assert list(SEGMENTATION_LABELS) == names  # the PyTorch dataset's names agree


@needs_bpy
def test_segmentation_maps_cover_a_rendered_mask() -> None:
    _image, mask = blender.render_single(SceneParameters(resolution=(32, 32)), samples=1)
    assert set(np.unique(mask).tolist()) == set(blender.SEGMENTATION_INT_TO_NAME)


def test_render_split_args_and_render_dataset_split(tmp_path) -> None:
    fields = [f.name for f in dataclasses.fields(cli_tool.RenderSplitArgs)]
    assert fields == ["sampler", "n_samples", "output_dir", "force_overwrite", "n_processes",
                      "blender_dir", "resample_attributes", "n_resample", "download_blender",
                      "debug"]
    args = cli_tool.RenderSplitArgs(two4two.ColorBiasedSampler(), 3, str(tmp_path / "test"),
                                    resample_attributes=["obj_color", ["spherical", "bending"]])
    with pytest.raises(dataclasses.FrozenInstanceError):
        args.n_samples = 4  # type: ignore[misc]
    renderer = FakeRenderer()
    written = cli_tool.render_dataset_split(args, render_fn=renderer, progress=False)
    assert written == [tmp_path / "test", tmp_path / "test_obj_color",
                       tmp_path / "test_spherical_bending"]
    originals = load_jsonl(tmp_path / "test" / "parameters.jsonl")
    assert len(originals) == 3
    clones = load_jsonl(tmp_path / "test_obj_color" / "parameters.jsonl")
    assert [c.original_id for c in clones] == [p.id for p in originals]
    split_args = json.loads((tmp_path / "test" / "split_args.json").read_text())
    assert split_args["sampler"] == "two4two.bias.ColorBiasedSampler" and split_args["complete"]
    assert cli_tool.render_dataset_split(args, render_fn=renderer, progress=False) == written
    assert len(renderer.rendered) == 9  # the rerun found everything done
    with pytest.raises(ValueError, match=r"RenderSplitArgs\.resample_attributes.*wings"):
        cli_tool.render_dataset_split(dataclasses.replace(args, resample_attributes=["wings"]),
                                      render_fn=renderer)
    with pytest.raises(ValueError, match=r"RenderSplitArgs\.n_resample"):
        cli_tool.render_dataset_split(dataclasses.replace(args, n_resample=1),
                                      render_fn=renderer)


def test_distribution_type_aliases() -> None:
    from two4two.bias import Continouos, Discrete, Distribution

    assert float in typing.get_args(Continouos) and str in typing.get_args(Discrete)
    per_class = [a for a in typing.get_args(Distribution)
                 if typing.get_origin(a) is collections.abc.Mapping]
    assert len(per_class) == 1 and typing.get_args(per_class[0])[0] is str
    assert set(typing.get_args(Continouos)) <= set(typing.get_args(Distribution))
