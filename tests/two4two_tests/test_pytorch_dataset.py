"""two4two.pytorch.Two4Two: shapes, labels, DataFrame, errors."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from two4two_fakes import TINY_SPLITS, FakeRenderer, write_config

from two4two.cli_tool import render_dataset
from two4two.pytorch import ATTRIBUTE_NAMES, Two4Two, Two4TwoDatasetError, all_attributes
from two4two.scene_parameters import load_jsonl


@pytest.fixture
def dataset_root(tmp_path) -> Path:
    config = write_config(tmp_path / "tiny.toml", tmp_path / "data", splits=TINY_SPLITS)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    return tmp_path / "data"


def test_items_have_the_documented_shapes_and_labels(dataset_root: Path) -> None:
    dataset = Two4Two(dataset_root, "train")
    scenes = load_jsonl(dataset_root / "train" / "parameters.jsonl")
    assert len(dataset) == len(scenes) == 6
    assert dataset.get_label_names() == ["obj_name"]
    for index, params in enumerate(scenes):
        image, mask, labels = dataset[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        png = np.array(Image.open(dataset_root / "train" / params.filename))
        assert torch.allclose(image, torch.from_numpy(png).permute(2, 0, 1).float() / 255)
        assert mask.shape == (1, 32, 32) and mask.dtype == torch.uint8
        png_mask = np.array(Image.open(dataset_root / "train" / params.mask_filename))
        assert np.array_equal(mask[0].numpy(), png_mask)
        assert labels.shape == (1,) and labels.dtype == torch.float32
        assert labels.item() == (1.0 if params.obj_name == "stretchy" else 0.0)


def test_return_attributes_and_no_mask(dataset_root: Path) -> None:
    dataset = Two4Two(dataset_root, "test_obj_color", return_segmentation_mask=False,
                      return_attributes=["obj_color", "obj_name", "fliplr", "label"])
    scenes = load_jsonl(dataset_root / "test_obj_color" / "parameters.jsonl")
    item = dataset[1]
    assert len(item) == 2
    image, labels = item
    assert image.shape == (3, 32, 32)
    p = scenes[1]
    expected = [p.obj_color, float(p.obj_name == "stretchy"), 0.0,
                float(p.obj_name == "stretchy")]
    assert labels.tolist() == pytest.approx(expected)
    dataset.set_return_attributes(["spherical"])
    assert dataset.get_label_names() == ["spherical"]
    assert dataset[1][1].item() == pytest.approx(p.spherical)
    with pytest.raises(ValueError, match="wings"):
        dataset.set_return_attributes(["wings"])


def test_dataframe(dataset_root: Path) -> None:
    dataset = Two4Two(dataset_root, "test")
    frame = dataset.get_dataframe(to_dict=all_attributes)
    scenes = load_jsonl(dataset_root / "test" / "parameters.jsonl")
    assert len(frame) == 5
    assert list(frame["id"]) == [p.id for p in scenes]
    for attr in ATTRIBUTE_NAMES:
        assert list(frame[attr]) == [getattr(p, attr) for p in scenes]
        assert set(frame[f"attribute_status_{attr}"]) == {"sampled"}
    for dropped in ("obj_color_rgba", "bg_color_rgba", "resolution", "_attributes_status"):
        assert dropped not in frame.columns
    custom = dataset.get_dataframe(to_dict=lambda p: {"id": p.id, "x": p.position_x})
    assert list(custom.columns) == ["id", "x"]
    assert all(-0.8 <= x <= 0 and not math.isnan(x) for x in custom["x"])


def test_missing_split_and_images(dataset_root: Path) -> None:
    with pytest.raises(Two4TwoDatasetError, match="nosplit"):
        Two4Two(dataset_root, "nosplit")
    scenes = load_jsonl(dataset_root / "train" / "parameters.jsonl")
    (dataset_root / "train" / scenes[3].filename).unlink()
    with pytest.raises(Two4TwoDatasetError, match=scenes[3].id) as info:
        Two4Two(dataset_root, "train")
    assert "two4two_render_dataset" in str(info.value)
    # corrupt file: the error comes when the item is read, and names the file
    test_scenes = load_jsonl(dataset_root / "test" / "parameters.jsonl")
    corrupt = dataset_root / "test" / test_scenes[2].mask_filename
    corrupt.write_bytes(b"not a png")
    dataset = Two4Two(dataset_root, "test")
    dataset[1]
    with pytest.raises(Two4TwoDatasetError, match=test_scenes[2].id):
        dataset[2]


HAS_RENDERER = (importlib.util.find_spec("bpy") is not None
                and importlib.util.find_spec("two4two.blender") is not None)


@pytest.mark.skipif(not HAS_RENDERER, reason="needs bpy and two4two/blender.py")
def test_real_rendered_split(tmp_path) -> None:
    """A split rendered by Blender: shapes, labels, and all 9 mask labels per image."""
    splits = ('resolution = [32, 32]\nrender_samples = 2\nn_processes = 1\n'
              '[[dataset.split]]\nname = "train"\nn_samples = 4\n')
    config = write_config(tmp_path / "real.toml", tmp_path / "data", splits=splits)
    render_dataset(config, progress=False)
    dataset = Two4Two(tmp_path / "data", "train", return_attributes=["obj_name", "obj_color"])
    scenes = load_jsonl(tmp_path / "data" / "train" / "parameters.jsonl")
    assert len(dataset) == 4
    for (image, mask, labels), params in zip(dataset, scenes, strict=True):
        assert image.shape == (3, 32, 32) and mask.shape == (1, 32, 32)
        assert set(mask.unique().tolist()) == set(range(9))
        assert labels.tolist() == pytest.approx(
            [float(params.obj_name == "stretchy"), params.obj_color])
        background = image[:, mask[0] == 0].mean(dim=1)
        blocks = image[:, mask[0] > 0].mean(dim=1)
        assert not torch.allclose(background, blocks, atol=0.02)
