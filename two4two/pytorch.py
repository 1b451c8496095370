"""``Two4Two``: a PyTorch dataset over a rendered split directory.

``Two4Two(root, split)`` reads ``<root>/<split>/parameters.jsonl`` and the PNGs
next to it. Items are ``(image, mask, labels)`` or ``(image, labels)``:

* ``image`` -- ``transform(PIL RGB image)``; with the default ``ToTensor()``
  a float tensor ``[3, H, W]`` in [0, 1];
* ``mask`` -- ``torch.uint8`` ``[1, H, W]``, labels 0 (background) .. 8 (blocks);
  the image transform is *not* applied to it;
* ``labels`` -- ``torch.float32`` ``[n]``, one value per return attribute
  (``obj_name``: peaky 0, stretchy 1; booleans 0/1; numbers as they are).

Upstream two4two's names work too (``docs/two4two_api.md``): ``root_dir=``,
``set_return_attributes(labels)``, the row functions :func:`filter_attributes`
and :func:`all_attributes` for :meth:`Two4Two.get_dataframe`, and the label
helpers :meth:`Two4Two.int_to_obj_name`, :meth:`Two4Two.segmentation_int_to_label`
and :meth:`Two4Two.segmentation_label_to_int`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.utils.data
from PIL import Image
from torchvision import transforms

from two4two import utils
from two4two._blender.geometry import BLOCK_NAMES
from two4two.errors import Two4TwoError
from two4two.scene_parameters import (
    OBJ_NAMES,
    SAMPLED_ATTRIBUTES,
    SceneParameters,
    read_jsonl_lenient,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "SEGMENTATION_LABELS",
    "Two4Two",
    "Two4TwoDatasetError",
    "all_attributes",
    "filter_attributes",
]

ATTRIBUTE_NAMES: tuple[str, ...] = tuple(SAMPLED_ATTRIBUTES)
"""The scene attributes a dataset can return as labels (``label`` is accepted too)."""

SEGMENTATION_LABELS: tuple[str, ...] = ("background", *BLOCK_NAMES)
"""Names of the mask values: 0 background, 1..8 the blocks."""

_RETURNABLE = (*ATTRIBUTE_NAMES, "label")
_DROPPED_COLUMNS = ("obj_color_rgba", "bg_color_rgba", "resolution", "_attributes_status",
                    "__module__", "__name__")


class Two4TwoDatasetError(Two4TwoError, FileNotFoundError):
    """A split directory, ``parameters.jsonl`` or an image is missing or unreadable."""


def _fix(root: Path) -> str:
    return (f"re-run the render CLI (two4two_render_dataset CONFIG.toml) to complete the "
            f"dataset in {root}, or download it again")


def _read_split_parameters(path: Path, root: Path) -> list[SceneParameters]:
    """The scenes of a split's ``parameters.jsonl``; a cut last line, or fewer scenes than
    the split's ``split_args.json`` promises, is a :class:`Two4TwoDatasetError` (training
    on a silently shortened split would be wrong)."""
    try:
        scenes, _, tail = read_jsonl_lenient(path)
    except (ValueError, OSError) as error:
        raise Two4TwoDatasetError(f"{error}; {_fix(root)}") from None
    if tail.strip():
        try:
            scenes.append(SceneParameters.load(json.loads(tail)))
        except ValueError:
            number = path.read_bytes().count(b"\n") + 1
            raise Two4TwoDatasetError(
                f"{path}: line {number} is cut off (an interrupted write; if a render is "
                f"still writing this split, wait for it); {_fix(root)}") from None
    promised = _promised_scenes(path.parent / "split_args.json")
    if promised is not None and len(scenes) < promised:
        raise Two4TwoDatasetError(f"{path}: holds {len(scenes)} scenes but the split is "
                                  f"complete with {promised}; {_fix(root)}")
    return scenes


def _promised_scenes(split_args: Path) -> int | None:
    """``n_samples`` of a split marked complete (``None`` if unknown or unfinished)."""
    try:
        args = json.loads(split_args.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(args, dict) or args.get("complete") is not True:
        return None
    n = args.get("n_samples")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def filter_attributes(param: SceneParameters) -> dict[str, Any]:
    """One DataFrame row: the attributes, ids and label (no RGBA, resolution or statuses)."""
    state = param.state_dict()
    return {key: value for key, value in state.items() if key not in _DROPPED_COLUMNS}


def all_attributes(param: SceneParameters) -> dict[str, Any]:
    """:func:`filter_attributes` plus one ``attribute_status_<attr>`` column per attribute."""
    row = filter_attributes(param)
    for attr in SAMPLED_ATTRIBUTES:
        row[f"attribute_status_{attr}"] = param.get_status(attr)
    return row


default_row = all_attributes
"""Another name of :func:`all_attributes`."""


class Two4Two(torch.utils.data.Dataset):
    """The scenes and images of one split (``<root>/<split>``), in ``parameters.jsonl`` order.

    Args:
        root_dir: the dataset folder (holding ``train``, ``test``, ...); ``root=``
            works too.
        split: split directory name, e.g. ``train`` or ``test_obj_color``.
        transform: applied to the PIL RGB image (default ``ToTensor()``).
        return_attributes: attributes returned as labels (see :data:`ATTRIBUTE_NAMES`).
        return_segmentation_mask: also return the mask (``[1, H, W]`` uint8).

    Raises:
        Two4TwoDatasetError: the split folder, its ``parameters.jsonl`` or one
            of its images is missing (the message names the path and the fix).
    """

    @utils.keyword_aliases(root="root_dir")
    def __init__(
        self,
        root_dir: str | os.PathLike,
        split: str,
        transform: Callable[[Image.Image], Any] | None = transforms.ToTensor(),  # noqa: B008
        return_attributes: Sequence[str] = ("obj_name",),
        return_segmentation_mask: bool = True,
    ) -> None:
        self.root = Path(root_dir)
        self.root_dir = str(root_dir)
        self.split = split
        self.directory = self.root / split
        self.transform = transform
        self.return_segmentation_mask = return_segmentation_mask
        if not self.directory.is_dir():
            raise Two4TwoDatasetError(f"{self.directory}: no such split directory; "
                                      f"{_fix(self.root)}")
        parameters = self.directory / "parameters.jsonl"
        if not parameters.is_file():
            raise Two4TwoDatasetError(f"{parameters}: missing; {_fix(self.root)}")
        self.params: list[SceneParameters] = _read_split_parameters(parameters, self.root)
        for p in self.params:
            for name in (p.filename, p.mask_filename):
                if not (self.directory / name).is_file():
                    raise Two4TwoDatasetError(f"{self.directory / name}: missing image; "
                                              f"{_fix(self.root)}")
        self.return_attributes: list[str] = []
        self.set_return_attributes(return_attributes)

    # ------------------------------------------------------------------ labels

    @utils.keyword_aliases(names="labels")
    def set_return_attributes(self, labels: Sequence[str]) -> None:
        """Choose the attributes returned as labels (in this order)."""
        names = [labels] if isinstance(labels, str) else list(labels)
        for name in names:
            if name not in _RETURNABLE:
                raise ValueError(f"unknown attribute {name!r}; valid: {', '.join(_RETURNABLE)}")
        self.return_attributes = names

    @staticmethod
    def int_to_obj_name(label_int: int) -> str:
        """The class of an integer label: 0 peaky, 1 stretchy."""
        index = int(label_int)
        if index != label_int or not 0 <= index < len(OBJ_NAMES):
            raise ValueError(f"label_int must be 0 (peaky) or 1 (stretchy), got {label_int!r}")
        return OBJ_NAMES[index]

    @staticmethod
    def segmentation_int_to_label(index: int) -> str:
        """The name of mask value ``index`` (0 background, 1..8 the blocks)."""
        value = int(index)
        if value != index or not 0 <= value < len(SEGMENTATION_LABELS):
            raise ValueError(f"index must be a mask value 0..{len(SEGMENTATION_LABELS) - 1}, "
                             f"got {index!r}")
        return SEGMENTATION_LABELS[value]

    @staticmethod
    def segmentation_label_to_int(label: str) -> int:
        """The mask value of a block name (or ``background``, 0)."""
        if label not in SEGMENTATION_LABELS:
            raise ValueError(f"unknown segmentation label {label!r}; valid: "
                             f"{', '.join(SEGMENTATION_LABELS)}")
        return SEGMENTATION_LABELS.index(label)

    def get_label_names(self) -> list[str]:
        """Names of the label vector's entries."""
        return list(self.return_attributes)

    def labels_of(self, params: SceneParameters) -> torch.Tensor:
        """The label vector of one scene, ``float32 [n]``."""
        values = []
        for name in self.return_attributes:
            value = getattr(params, name)
            if name in ("obj_name", "label"):
                value = OBJ_NAMES.index(value)
            values.append(float(value))
        return torch.tensor(values, dtype=torch.float32)

    def get_dataframe(
        self, to_dict: Callable[[SceneParameters], dict[str, Any]] = filter_attributes
    ) -> pd.DataFrame:
        """A DataFrame with one row per scene (default: :func:`filter_attributes`; pass
        :func:`all_attributes` for the status columns)."""
        return pd.DataFrame([to_dict(p) for p in self.params])

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self.params)

    def _open(self, name: str, mode: str) -> Image.Image:
        path = self.directory / name
        try:
            with Image.open(path) as image:
                image.load()
                return image.convert(mode) if image.mode != mode else image.copy()
        except (OSError, ValueError) as error:
            raise Two4TwoDatasetError(
                f"{path}: cannot read image ({error}); delete it and {_fix(self.root)}"
            ) from None

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        params = self.params[index]
        image = self._open(params.filename, "RGB")
        if self.transform is not None:
            image = self.transform(image)
        labels = self.labels_of(params)
        if not self.return_segmentation_mask:
            return image, labels
        mask_image = self._open(params.mask_filename, "L")
        mask = torch.from_numpy(np.array(mask_image, dtype=np.uint8))[None]
        return image, mask, labels
