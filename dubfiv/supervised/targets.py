"""What the supervised model predicts: ``obj_name`` (BCE) and the continuous attributes (MSE).

The model has one output per target. ``obj_name`` (peaky 0, stretchy 1) is a
logit trained with binary cross-entropy; every continuous attribute is
predicted standardised, ``(value - mean) / std`` with the mean and standard
deviation of the training split, and trained with mean squared error. The loss
is the mean of the per-target losses. Attributes that do not vary in the
training split are left out (nothing to learn).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BINARY_ATTRIBUTES",
    "CONTINUOUS_ATTRIBUTES",
    "TargetSpec",
    "fit_target_spec",
    "scene_values",
]

BINARY_ATTRIBUTES: tuple[str, ...] = ("obj_name",)
CONTINUOUS_ATTRIBUTES: tuple[str, ...] = (
    "spherical",
    "bending",
    "obj_rotation_roll",
    "obj_rotation_pitch",
    "obj_rotation_yaw",
    "position_x",
    "position_y",
    "arm_position",
    "obj_color",
    "bg_color",
)


def scene_values(scenes: Sequence[Any], names: Sequence[str]) -> np.ndarray:
    """Attribute values of scenes as float64 ``[n, len(names)]`` (obj_name: 0/1)."""
    from two4two.scene_parameters import OBJ_NAMES

    out = np.empty((len(scenes), len(names)), dtype=np.float64)
    for i, scene in enumerate(scenes):
        for j, name in enumerate(names):
            value = getattr(scene, name)
            out[i, j] = OBJ_NAMES.index(value) if name == "obj_name" else float(value)
    return out


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """Targets in output order, with the training split's statistics.

    Attributes:
        names: attribute names, one per model output.
        binary: True for BCE targets (obj_name), False for standardised MSE targets.
        mean, std: training-split mean and standard deviation per target (for
            binary targets: mean = share of 1s, std unused and 1).
        dropped: continuous attributes left out because they are constant in train.
    """

    names: tuple[str, ...]
    binary: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dropped: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return len(self.names)

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device)
        binary = torch.tensor(self.binary, device=like.device)
        return mean, std, binary

    def encode(self, values: Tensor) -> Tensor:
        """Attribute values ``[B, n]`` -> training targets ``[B, n]`` (binary ones unchanged)."""
        mean, std, binary = self._stats(values)
        return torch.where(binary, values, (values - mean) / std)

    def decode(self, outputs: Tensor) -> Tensor:
        """Model outputs ``[B, n]`` -> attribute values ``[B, n]``.

        Binary targets become the probability of 1 (``sigmoid``), continuous
        ones are de-standardised to the attribute's units.
        """
        mean, std, binary = self._stats(outputs)
        return torch.where(binary, torch.sigmoid(outputs), outputs * std + mean)

    def loss(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Mean over targets of BCE-with-logits (binary) or MSE (standardised continuous)."""
        binary = torch.tensor(self.binary, device=outputs.device)
        bce = F.binary_cross_entropy_with_logits(outputs, targets, reduction="none")
        mse = (outputs - targets) ** 2
        return torch.where(binary, bce, mse).mean()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetSpec:
        return cls(names=tuple(data["names"]), binary=tuple(bool(b) for b in data["binary"]),
                   mean=tuple(float(m) for m in data["mean"]),
                   std=tuple(float(s) for s in data["std"]),
                   dropped=tuple(data.get("dropped", ())))


def fit_target_spec(train_scenes: Sequence[Any]) -> TargetSpec:
    """obj_name plus every continuous attribute that varies in the training scenes."""
    names = list(BINARY_ATTRIBUTES) + list(CONTINUOUS_ATTRIBUTES)
    values = scene_values(train_scenes, names)
    keep, binary, means, stds, dropped = [], [], [], [], []
    for j, name in enumerate(names):
        column = values[:, j]
        std = float(column.std())
        if name in BINARY_ATTRIBUTES:
            keep.append(name)
            binary.append(True)
            means.append(float(column.mean()))
            stds.append(1.0)
        elif std > 1e-12 and math.isfinite(std):
            keep.append(name)
            binary.append(False)
            means.append(float(column.mean()))
            stds.append(std)
        else:
            dropped.append(name)
    return TargetSpec(tuple(keep), tuple(binary), tuple(means), tuple(stds), tuple(dropped))
