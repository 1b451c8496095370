"""Load a trained supervised run and read the attributes of any images with it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dubfiv.supervised.model import network_input, resize_images
from dubfiv.supervised.targets import TargetSpec
from dubfiv.supervised.train import CHECKPOINT, SupervisedConfig, read_checkpoint

__all__ = ["SupervisedModel", "load_supervised", "resize_images"]


@dataclasses.dataclass
class SupervisedModel:
    """A trained supervised CNN with its targets.

    Attributes:
        model: the network (eval mode) with one output per target.
        spec: target names and training statistics (:class:`TargetSpec`).
        config: the run's settings.
        image_shape: ``(C, H, W)`` of its training images.
        history: the per-epoch records.
        epoch: completed epochs.
    """

    model: nn.Module
    spec: TargetSpec
    config: SupervisedConfig
    image_shape: tuple[int, int, int]
    history: list[dict[str, Any]]
    epoch: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 100) -> np.ndarray:
        """Attributes of images ``[B, C, H, W]`` in [0, 1] (any size; resized to the
        training size): float64 ``[B, spec.n]``, obj_name as P(stretchy), the rest in
        attribute units."""
        if images.dim() != 4 or images.shape[1] != self.image_shape[0]:
            raise ValueError(f"images must be [B, {self.image_shape[0]}, H, W], got "
                             f"{tuple(images.shape)}")
        out = []
        for start in range(0, images.shape[0], batch_size):
            x = network_input(images[start:start + batch_size].to(self.device, torch.float32),
                              self.image_shape[1:])
            out.append(self.spec.decode(self.model(x).float()).double().cpu())
        if not out:
            return np.zeros((0, self.spec.n))
        return torch.cat(out).numpy()


def load_supervised(directory: str | os.PathLike,
                    device: str | torch.device | None = None) -> SupervisedModel:
    """Load ``<directory>/checkpoint.pt`` written by ``dubfiv_supervised``.

    Raises:
        CheckpointError: missing or foreign checkpoint (the message names the path).
    """
    from dubfiv.checkpoint import CheckpointError
    from dubfiv.runs import resolve_device

    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: not found; `supervised_dir` must be a directory "
                              "written by dubfiv_supervised")
    run = read_checkpoint(path)
    run.model.to(resolve_device(device)).eval()
    return SupervisedModel(model=run.model, spec=run.spec, config=run.config,
                           image_shape=run.image_shape, history=run.history, epoch=run.epoch)
