"""Small fakes for tests and examples: a Two4Two-format dataset without Blender.

:func:`write_fake_two4two` writes ``<root>/<split>/`` folders in the on-disk
format of ``docs/datasets.md`` (``parameters.jsonl``, ``<id>.png``, ``<id>_mask.png``,
``split_args.json``) whose class is plainly visible: a bright square in the left
half of the image for *peaky* (label 0) and in the right half for *stretchy*
(label 1), on a grey background with pixel noise. A linear classifier on the
pixels separates the classes, so a short training run must beat chance.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from dubfiv.config import (
    ClassifierConfig,
    ExperimentConfig,
    FadeOutAndPool,
    FlowBlocks,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = ["fake_scene_parameters", "tiny_experiment", "write_fake_two4two"]

DEFAULT_SPLITS = {"train": 64, "validation": 32, "test": 32}


def fake_scene_parameters(rng: np.random.Generator, obj_name: str, image_size: int) -> dict:
    """One ``SceneParameters.state_dict()``-like record with plausible values."""
    obj_color = float(rng.uniform())
    bg_color = float(rng.uniform(0.05, 0.95))
    arm = float(rng.uniform(0.0, 0.52) if obj_name == "peaky" else rng.uniform(0.48, 1.0))
    status = {name: "sampled" for name in (
        "obj_name", "labeling_error", "spherical", "bending", "obj_rotation_roll",
        "obj_rotation_pitch", "obj_rotation_yaw", "fliplr", "position_x", "position_y",
        "arm_position", "obj_color", "bg_color")}
    return {
        "obj_name": obj_name,
        "labeling_error": False,
        "spherical": float(rng.beta(0.3, 0.3)),
        "bending": float(rng.uniform(-math.pi / 10, math.pi / 10)),
        "obj_rotation_roll": 0.0,
        "obj_rotation_pitch": float(rng.uniform(-0.3, 0.3)),
        "obj_rotation_yaw": float(rng.uniform(-math.pi, 0.0)),
        "fliplr": False,
        "position_x": float(rng.uniform(-0.8, 0.0)),
        "position_y": float(rng.uniform(-0.8, 0.0)),
        "arm_position": arm,
        "obj_color": obj_color,
        "obj_color_rgba": [obj_color, 0.2, 1.0 - obj_color, 1.0],
        "bg_color": bg_color,
        "bg_color_rgba": [bg_color, bg_color, bg_color, 1.0],
        "resolution": [image_size, image_size],
        "id": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | int(rng.integers(0, 2**63)),
                             version=4)),
        "original_id": None,
        "_attributes_status": status,
        "label": obj_name,
        "__module__": "two4two.scene_parameters",
        "__name__": "SceneParameters",
    }


def _draw(rng: np.random.Generator, obj_name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 image [H, W, 3] and uint8 mask [H, W] with the class-revealing square."""
    image = np.full((size, size, 3), rng.uniform(60, 120), dtype=np.float64)
    image += rng.normal(0.0, 6.0, size=image.shape)
    side = max(2, size // 4)
    half = size // 2
    low, high = (0, half - side) if obj_name == "peaky" else (half, size - side)
    x0 = int(rng.integers(low, high + 1))
    y0 = int(rng.integers(0, size - side + 1))
    colour = rng.uniform(180, 250, size=3)
    image[y0:y0 + side, x0:x0 + side] = colour
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[y0:y0 + side, x0:x0 + side] = 1
    return np.clip(np.round(image), 0, 255).astype(np.uint8), mask


def write_fake_two4two(
    root: str | Path,
    splits: Mapping[str, int] | None = None,
    image_size: int = 16,
    seed: int = 0,
) -> Path:
    """Write a fake Two4Two dataset to ``root`` (created) and return ``root``.

    Args:
        root: the dataset folder (``<dataset_dir>/<dataset>``).
        splits: split name -> number of images (default train 64, validation 32, test 32).
        image_size: height and width in pixels.
        seed: makes the dataset reproducible.
    """
    root = Path(root)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            obj_name = "peaky" if i % 2 == 0 else "stretchy"
            params = fake_scene_parameters(rng, obj_name, image_size)
            image, mask = _draw(rng, obj_name, image_size)
            Image.fromarray(image, mode="RGB").save(folder / f"{params['id']}.png")
            Image.fromarray(mask, mode="L").save(folder / f"{params['id']}_mask.png")
            lines.append(json.dumps(params))
        (folder / "parameters.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / "split_args.json").write_text(json.dumps({
            "sampler": "dubfiv.testing.fake", "sampler_config": {}, "split": split,
            "n_samples": n, "unbiased": False, "interventions": [],
        }), encoding="utf-8")
    return root


def tiny_experiment(
    dataset_dir: str | Path,
    dataset: str = "fake",
    image_size: int = 16,
    width: int = 16,
    **train: object,
) -> ExperimentConfig:
    """A tiny experiment for tests: 2 stages of 2 blocks, one head on layer 13.

    Layers at 16x16: 0 SpaceToDepth (12x8x8), 1-6 two blocks, 7 Split, 8
    SpaceToDepth (24x4x4), 9-14 two blocks, 15-16 final ActNorm and 1x1 conv; the
    head reads layer 13 (a 1x1 conv, 24*4*4 = 384 features at 16x16). ``train``
    overrides :class:`TrainConfig` fields.
    """
    settings: dict = {
        "dataset": dataset, "dataset_dir": str(dataset_dir), "n_train_samples": 400,
        "batch_size": 8, "n_init_samples": 32, "val_every_samples": 200, "n_val_samples": 0,
        "checkpoint_every_samples": 200, "sample_every_samples": 400,
        "optimizer": OptimizerConfig(name="adam", lr=1e-3,
                                     schedule=ScheduleConfig("fade_in_cosine", 80)),
    }
    settings.update(train)
    return ExperimentConfig(
        model=ModelConfig(
            layers=[FadeOutAndPool(channels_to_keep="no_fade_out", pool=2),
                    FlowBlocks(n_blocks=2, block_channels=width),
                    FadeOutAndPool(channels_to_keep="half", pool=2),
                    FlowBlocks(n_blocks=2, block_channels=width)],
            image_size=image_size,
        ),
        train=TrainConfig(**settings),  # type: ignore[arg-type]
        classifiers=[ClassifierConfig(
            after_layer=13, in_channels=0, loss_weight=0.1, label_noise=0.1,
            optimizer=OptimizerConfig(name="sgd", lr=0.1, schedule=ScheduleConfig("hill")))],
        marker="tiny",
    )
