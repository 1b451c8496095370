"""Train the supervised CNN baseline on a Two4Two dataset; checkpoint, resume, evaluate.

An output directory ``DIR`` holds

* ``checkpoint.pt`` -- config, targets (names and training statistics), image
  shape, model and optimiser state, completed epochs and the history; written
  atomically every ``ckpt_freq`` epochs and after the last epoch;
* ``history.json`` -- one record per epoch (train loss, validation loss and
  per-attribute validation metrics), the constant-predictor baseline on the
  validation split and, at the end, the metrics on the test split;
* ``metrics.png`` -- the validation metrics per attribute against the epoch.

Every random choice is a pure function of ``(seed, epoch)``: the model's
initialisation (``seed``), the order of epoch ``e`` (:func:`dubfiv.data.epoch_permutation`)
and the global torch generator at the start of epoch ``e`` (dropout). The
learning rate follows a cosine over all steps. So a run resumed from the
checkpoint of epoch ``e`` computes the same epochs ``e+1, ...`` as an
uninterrupted run (bit for bit on the CPU).

Images are fed as ``2 x - 1`` with ``x = k / 255`` in [0, 1], resized (bilinear,
antialiased) to ``image_size`` if that is set (e.g. a cheaper 32x32 model).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dubfiv.schedules import cosine
from dubfiv.supervised.metrics import attribute_metrics, constant_baseline
from dubfiv.supervised.model import SupervisedError, build_model, network_input
from dubfiv.supervised.targets import TargetSpec, fit_target_spec, scene_values

__all__ = [
    "CHECKPOINT",
    "HISTORY",
    "PLOT",
    "SupervisedConfig",
    "SupervisedRun",
    "epoch_batches",
    "evaluate_split",
    "learning_rate",
    "read_checkpoint",
    "train_supervised",
]

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
PLOT = "metrics.png"
FORMAT = "dubfiv.supervised/1"
STREAM_SUPERVISED = 11


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
    """Settings of one supervised run (stored in the checkpoint)."""

    dataset: str
    dataset_dir: str = "data"
    model_name: str = "mobilenet_v2"
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int = 50
    num_epochs: int = 61
    ckpt_freq: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    num_workers: int = 0
    image_size: int | None = None

    def check(self) -> None:
        """Raise :class:`SupervisedError` naming the parameter of an invalid value."""
        for name, value in (("batch_size", self.batch_size), ("num_epochs", self.num_epochs),
                            ("ckpt_freq", self.ckpt_freq)):
            if value < 1:
                raise SupervisedError(f"`{name}` must be >= 1, got {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SupervisedError(f"`lr` must be a positive number, got {self.lr}")
        if self.image_size is not None and self.image_size < 8:
            raise SupervisedError(f"`image_size` must be >= 8, got {self.image_size}")
        if self.num_workers < 0:
            raise SupervisedError(f"`num_workers` must be >= 0, got {self.num_workers}")


# --------------------------------------------------------------------------- schedule, batches


def learning_rate(base: float, step: int, total_steps: int) -> float:
    """Cosine decay from ``base`` to 0 over ``total_steps`` optimiser steps
    (:func:`dubfiv.schedules.cosine`, counted in steps instead of samples)."""
    return cosine(base, step, max(total_steps, 1))


def epoch_batches(seed: int, epoch: int, n: int, batch_size: int) -> list[list[int]]:
    """The batches (dataset indices) of epoch ``epoch``: its permutation cut into
    ``batch_size`` pieces; a last piece of a single image joins the previous batch
    (batch norm needs two)."""
    from dubfiv.data import epoch_permutation

    order = epoch_permutation(seed, epoch, n).tolist()
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2].extend(batches.pop())
    return batches


def _inputs(images: torch.Tensor, device: torch.device, size: tuple[int, int]) -> torch.Tensor:
    """uint8 images ``[B, 3, H, W]`` -> the network's input ``2 x - 1`` at ``size``."""
    return network_input(images.to(device), size)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_split(model: nn.Module, spec: TargetSpec, data: Any, device: torch.device,
                   size: tuple[int, int], batch_size: int = 100, num_workers: int = 0
                   ) -> tuple[dict[str, float], float]:
    """Per-attribute metrics and the mean loss of ``model`` on a split (eval mode; images
    resized to ``size``).

    Returns:
        ``({"<attr>_accuracy" | "<attr>_r2": value}, loss)``.
    """
    was_training = model.training
    model.eval()
    true, predicted, loss_sum = [], [], 0.0
    for images, labels in DataLoader(data, batch_size=batch_size, shuffle=False,
                                     num_workers=num_workers):
        outputs = model(_inputs(images, device, size)).float()
        labels = labels.to(device).float()
        loss_sum += float(spec.loss(outputs, spec.encode(labels))) * images.shape[0]
        true.append(labels.double().cpu().numpy())
        predicted.append(spec.decode(outputs).double().cpu().numpy())
    model.train(was_training)
    n = sum(len(t) for t in true)
    return attribute_metrics(spec, np.concatenate(true), np.concatenate(predicted)), loss_sum / n


# --------------------------------------------------------------------------- files


def _write_json(path: Path, data: Any) -> None:
    from dubfiv.files import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n",
                                                  encoding="utf-8"))


def _open(config: SupervisedConfig, split: str, names: list[str]) -> Any:
    from dubfiv.data import open_split

    return open_split(config.dataset_dir, config.dataset, split, names)


def _split_exists(config: SupervisedConfig, split: str) -> bool:
    return (Path(config.dataset_dir) / config.dataset / split / "parameters.jsonl").is_file()


def _load_state(path: Path) -> dict[str, Any]:
    from dubfiv.checkpoint import CheckpointError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of dubfiv_supervised")
    return state


@dataclasses.dataclass
class SupervisedRun:
    """The state of a supervised run between epochs.

    Attributes:
        config: the run's settings.
        spec: target names and training statistics.
        image_shape: ``(C, H, W)`` of the network's input.
        model: the network with its current weights.
        optimizer_state: the optimiser's ``state_dict`` (``None`` before the first epoch).
        epoch: completed epochs.
        history: one record per completed epoch.
    """

    config: SupervisedConfig
    spec: TargetSpec
    image_shape: tuple[int, int, int]
    model: nn.Module
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_checkpoint(self, optimizer_state: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint's plain dictionary (format ``dubfiv.supervised/1``) with the
        given optimiser state."""
        return {
            "format": FORMAT,
            "config": dataclasses.asdict(self.config),
            "targets": self.spec.to_dict(),
            "image_shape": list(self.image_shape),
            "model_state": self.model.state_dict(),
            "optimizer_state": optimizer_state,
            "epoch": self.epoch,
            "history": self.history,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], check_shape: bool = False
                        ) -> SupervisedRun:
        """The run stored in a checkpoint's dictionary (:meth:`to_checkpoint`): the model is
        built on the CPU (with ``check_shape`` after a dry run at ``image_shape``) and
        given the stored weights."""
        config = SupervisedConfig(**state["config"])
        spec = TargetSpec.from_dict(state["targets"])
        c, h, w = (int(s) for s in state["image_shape"])
        image_shape = (c, h, w)
        model = build_model(config.model_name, config.model_kwargs, spec.n,
                            image_shape if check_shape else None)
        model.load_state_dict(state["model_state"])
        return cls(config=config, spec=spec, image_shape=image_shape, model=model,
                   optimizer_state=state["optimizer_state"], epoch=int(state["epoch"]),
                   history=list(state["history"]))


def read_checkpoint(path: Path, check_shape: bool = False) -> SupervisedRun:
    """A ``dubfiv_supervised`` checkpoint as a :class:`SupervisedRun` (the model on the
    CPU; with ``check_shape`` after a dry run at the stored image size).

    Raises:
        CheckpointError: unreadable or foreign checkpoint (the message names the path).
    """
    return SupervisedRun.from_checkpoint(_load_state(path), check_shape)


# --------------------------------------------------------------------------- training


def _start(config: SupervisedConfig) -> SupervisedRun:
    """A fresh training state (epoch 0)."""
    from two4two.pytorch import Two4Two

    config.check()
    train = _open(config, "train", ["obj_name"])
    assert isinstance(train, Two4Two)
    spec = fit_target_spec(train.params)
    c, h, w = (int(s) for s in train[0][0].shape)
    if config.image_size is not None:
        h = w = config.image_size
    image_shape = (c, h, w)
    torch.manual_seed(config.seed)
    model = build_model(config.model_name, config.model_kwargs, spec.n, image_shape)
    return SupervisedRun(config=config, spec=spec, image_shape=image_shape, model=model)


def _resume(output_dir: Path) -> SupervisedRun:
    path = output_dir / CHECKPOINT
    if not path.is_file():
        raise SupervisedError(f"{path}: no checkpoint to resume from; start a new run without "
                              "`resume`")
    return read_checkpoint(path, check_shape=True)


def _save(output_dir: Path, run: SupervisedRun, optimizer: torch.optim.Optimizer) -> None:
    from dubfiv.checkpoint import save_checkpoint

    save_checkpoint(run.to_checkpoint(optimizer.state_dict()), output_dir / CHECKPOINT)


def train_supervised(
    config: SupervisedConfig | None,
    output_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
    progress: bool = True,
) -> Path:
    """Train (or, with ``resume``, continue) a supervised run in ``output_dir``.

    Args:
        config: the run's settings (ignored when resuming: the checkpoint's are used).
        output_dir: the run directory (created; must not hold a checkpoint
            unless ``resume``).
        device: ``cpu``/``cuda`` (default: cuda when available).
        resume: continue from ``output_dir/checkpoint.pt``.
        stop_after_epochs: stop (with a checkpoint) once this many epochs are
            complete, e.g. for a time-limited job; continue later with ``resume``.
        progress: show progress bars.

    Returns:
        ``output_dir``.

    Raises:
        SupervisedError: bad settings, an existing run without ``resume``, or a
            NaN loss. DatasetError / Two4TwoDatasetError: missing dataset.
    """
    from tqdm import tqdm

    from dubfiv.data import step_seed
    from dubfiv.runs import resolve_device
    from dubfiv.supervised.plots import plot_history

    output_dir = Path(output_dir)
    target = resolve_device(device)
    if resume:
        run = _resume(output_dir)
    else:
        if config is None:
            raise SupervisedError("a new run needs a config")
        if (output_dir / CHECKPOINT).exists():
            raise SupervisedError(f"{output_dir} already holds a supervised run; continue it "
                                  "with `resume` or choose another `output_dir`")
        run = _start(config)
    config, spec = run.config, run.spec
    model = run.model.to(target)
    names = list(spec.names)
    train = _open(config, "train", names)
    validation = _open(config, "validation", names)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    if run.optimizer_state is not None:
        optimizer.load_state_dict(run.optimizer_state)
    output_dir.mkdir(parents=True, exist_ok=True)
    baseline = constant_baseline(spec, scene_values(validation.params, names))
    size = run.image_shape[1:]
    n = len(train)
    steps_per_epoch = len(epoch_batches(config.seed, 0, n, config.batch_size))
    total_steps = steps_per_epoch * config.num_epochs

    def write_history(extra: dict[str, Any] | None = None) -> None:
        _write_json(output_dir / HISTORY, {
            "config": dataclasses.asdict(config), "targets": spec.to_dict(),
            "baseline_validation": baseline, "epochs": run.history, **(extra or {})})
        plot_history(run.history, baseline, spec, output_dir / PLOT)

    last = config.num_epochs if stop_after_epochs is None \
        else min(config.num_epochs, stop_after_epochs)
    for epoch in range(run.epoch, last):
        start = time.time()
        torch.manual_seed(step_seed(config.seed, epoch, STREAM_SUPERVISED))
        model.train()
        batches = epoch_batches(config.seed, epoch, n, config.batch_size)
        loader = DataLoader(train, batch_sampler=batches, num_workers=config.num_workers)
        loss_sum, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.num_epochs}", disable=not progress,
                   leave=False)
        for k, (images, labels) in enumerate(bar):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config.lr, epoch * steps_per_epoch + k, total_steps)
            outputs = model(_inputs(images, target, size))
            loss = spec.loss(outputs.float(), spec.encode(labels.to(target)))
            if not torch.isfinite(loss):
                raise SupervisedError(f"the loss became {float(loss)} in epoch {epoch + 1}; "
                                      "lower `lr` (the last checkpoint is kept)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * images.shape[0]
            seen += images.shape[0]
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        metrics, val_loss = evaluate_split(model, spec, validation, target, size,
                                           num_workers=config.num_workers)
        run.history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen,
                               "validation_loss": val_loss, **metrics,
                               "seconds": time.time() - start})
        run.epoch = epoch + 1
        if run.epoch % config.ckpt_freq == 0 or run.epoch in (last, config.num_epochs):
            _save(output_dir, run, optimizer)
        write_history()
    if run.epoch == config.num_epochs and _split_exists(config, "test"):
        test = _open(config, "test", names)
        test_metrics, test_loss = evaluate_split(model, spec, test, target, size,
                                                 num_workers=config.num_workers)
        write_history({"test": {"loss": test_loss, **test_metrics},
                       "baseline_test": constant_baseline(spec, scene_values(test.params,
                                                                             names))})
    return output_dir
