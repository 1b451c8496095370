"""Two4Two data for training: splits, deterministic resumable batches, noise.

Every random choice of training is a pure function of ``(seed, step)``:

* the data order: epoch ``e`` visits the split in the permutation drawn from
  ``(seed, e)``; step ``k`` takes positions ``[k*B, (k+1)*B)`` of the endless
  concatenation of those permutations (``B`` = global batch size);
* the dequantisation noise and the label noise of step ``k`` are drawn from a
  generator seeded with ``(seed, k, stream)`` for the whole global batch.

A process of a distributed run takes its slice ``[r*B/W, (r+1)*B/W)`` of the
global batch and of its noise, so the result does not depend on the number of
processes, and a resumed run (which restarts at step ``k``) sees exactly what an
uninterrupted run would have seen.

Images are ``uint8 [3, H, W]`` from the dataset and become floats in ``[0, 1]``
(``k / 255``); training adds uniform noise of width 1/256 (``docs/flow.md``, "Bits per dimension").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dubfiv.errors import DubfivError, ParameterError

__all__ = [
    "DatasetError",
    "StepBatchSampler",
    "apply_label_noise",
    "check_image_shape",
    "dequantization_noise",
    "dequantize",
    "epoch_permutation",
    "eval_indices",
    "global_batch_indices",
    "label_noise_draws",
    "open_split",
    "rank_slice",
    "split_dir",
    "step_generator",
    "step_seed",
    "to_unit",
    "train_loader",
]

STREAM_ORDER = 1
STREAM_DEQUANTIZE = 2
STREAM_LABEL_NOISE = 3
STREAM_SAMPLES = 4
STREAM_VALIDATION = 5
STREAM_INIT = 6


class DatasetError(DubfivError, RuntimeError):
    """A dataset split is missing, unreadable or does not fit the model."""


# --------------------------------------------------------------------------- splits


def split_dir(dataset_dir: str | Path, dataset: str, split: str) -> Path:
    """``<dataset_dir>/<dataset>/<split>``."""
    return Path(dataset_dir) / dataset / split


def open_split(
    dataset_dir: str | Path, dataset: str, split: str, labels: Sequence[str]
) -> Dataset:
    """A split whose items are ``(image uint8 [3, H, W], labels float [len(labels)])``.

    ``obj_name`` is 0 for peaky and 1 for stretchy. Uses
    :class:`two4two.pytorch.Two4Two`.

    Raises:
        DatasetError: the split folder or its ``parameters.jsonl`` is missing or empty.
    """
    root = split_dir(dataset_dir, dataset, split)
    if not (root / "parameters.jsonl").is_file():
        raise DatasetError(
            f"{root}: dataset split not found (no parameters.jsonl). Render it with "
            "`python -m two4two CONFIG`, or point `dataset_dir`/`dataset` (train.dataset_dir/"
            "train.dataset) at an existing Two4Two dataset."
        )
    from torchvision.transforms import PILToTensor

    from two4two.pytorch import Two4Two, Two4TwoDatasetError

    try:
        data = Two4Two(
            str(Path(dataset_dir) / dataset), split=split, transform=PILToTensor(),
            return_attributes=list(labels), return_segmentation_mask=False,
        )
    except (Two4TwoDatasetError, ValueError, KeyError) as error:
        raise DatasetError(f"{root}: cannot open the split: {error}") from error
    if len(data) == 0:  # type: ignore[arg-type]
        raise DatasetError(f"{root}: the split has no images.")
    return data


def check_image_shape(data: Dataset, shape: tuple[int, int, int], where: str) -> None:
    """Raise :class:`DatasetError` unless the first image has ``shape`` ``(C, H, W)``."""
    try:
        image = data[0][0]
    except (OSError, ValueError, KeyError) as error:
        raise DatasetError(f"{where}: cannot read the first image: {error}") from error
    if tuple(image.shape) != tuple(shape):
        raise DatasetError(
            f"{where}: images have shape {tuple(image.shape)} but the model expects "
            f"{tuple(shape)} (model.image_size / model.in_channels). Use a dataset rendered "
            "at that resolution or change the model config."
        )


# --------------------------------------------------------------------------- randomness


def step_seed(seed: int, step: int, stream: int, extra: int = 0) -> int:
    """A well-mixed 63-bit seed for ``(seed, step, stream, extra)``."""
    state = np.random.SeedSequence([seed, step, stream, extra]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def step_generator(seed: int, step: int, stream: int, extra: int = 0) -> torch.Generator:
    """A CPU generator seeded deterministically from ``(seed, step, stream, extra)``."""
    return torch.Generator().manual_seed(step_seed(seed, step, stream, extra))


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order (int64 ``[n]``) in which epoch ``epoch`` visits the ``n`` items."""
    return torch.randperm(n, generator=step_generator(seed, epoch, STREAM_ORDER))


def global_batch_indices(seed: int, step: int, batch_size: int, n: int) -> torch.Tensor:
    """Dataset indices (int64 ``[batch_size]``) of global batch ``step``."""
    start = step * batch_size
    positions = torch.arange(start, start + batch_size)
    epochs = positions // n
    out = torch.empty(batch_size, dtype=torch.int64)
    for epoch in epochs.unique().tolist():
        chosen = epochs == epoch
        out[chosen] = epoch_permutation(seed, epoch, n)[positions[chosen] % n]
    return out


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """This process's slice of a global batch."""
    if batch_size % world_size:
        raise ParameterError(
            f"train.batch_size = {batch_size} must be divisible by the number of processes "
            f"({world_size})."
        )
    local = batch_size // world_size
    return slice(rank * local, (rank + 1) * local)


class StepBatchSampler(Sampler[list[int]]):
    """Yields this process's indices of steps ``start_step, ..., end_step - 1``."""

    def __init__(
        self, n: int, batch_size: int, seed: int, start_step: int, end_step: int,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start_step, self.end_step = start_step, end_step
        self.part = rank_slice(batch_size, rank, world_size)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            indices = global_batch_indices(self.seed, step, self.batch_size, self.n)
            yield indices[self.part].tolist()


def train_loader(
    data: Dataset, batch_size: int, seed: int, start_step: int, end_step: int,
    rank: int = 0, world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """Batches ``(images uint8 [B/W, 3, H, W], labels [B/W, n])`` of the given steps."""
    sampler = StepBatchSampler(len(data), batch_size, seed, start_step, end_step,  # type: ignore[arg-type]
                               rank, world_size)
    return DataLoader(data, batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False,
                      worker_init_fn=ignore_stop_signals if num_workers > 0 else None)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """In a DataLoader worker: ignore SIGTERM, SIGINT and SIGUSR1.

    A scheduler (SLURM) or a terminal sends them to every process of the job or
    group; the training process then finishes its step, writes a checkpoint and
    shuts the workers down (:mod:`dubfiv.train.signals`). A worker that died on
    the signal first would instead fail that last step.
    """
    import signal

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(number, signal.SIG_IGN)


def eval_indices(n: int, limit: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """This process's share of the first ``limit`` items (all if ``limit`` is 0)."""
    total = n if limit <= 0 else min(n, limit)
    return list(range(rank, total, world_size))


# --------------------------------------------------------------------------- noise


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` -> float32 in ``[0, 1]`` (``k / 255``); floats pass through."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


def dequantization_noise(
    seed: int, step: int, shape: Sequence[int], part: slice = slice(None),
    stream: int = STREAM_DEQUANTIZE,
) -> torch.Tensor:
    """Uniform noise in ``[0, 1/256)`` for the global batch of ``step``; this process's ``part``.

    ``shape`` is the global batch shape ``[B, C, H, W]``.
    """
    noise = torch.rand(tuple(shape), generator=step_generator(seed, step, stream))
    return noise[part] / 256.0


def dequantize(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``x + noise``: images in ``[0, 1]`` plus noise of width 1/256 (same shape)."""
    return x + noise.to(device=x.device, dtype=x.dtype)


def label_noise_draws(
    seed: int, step: int, batch_size: int, head: int, part: slice = slice(None)
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uniform [B], random bits [B])`` of ``step`` and ``head``; this process's ``part``."""
    generator = step_generator(seed, step, STREAM_LABEL_NOISE, head)
    uniform = torch.rand(batch_size, generator=generator)
    bits = torch.randint(0, 2, (batch_size,), generator=generator).float()
    return uniform[part], bits[part]


def apply_label_noise(
    labels: torch.Tensor, probability: float, uniform: torch.Tensor, bits: torch.Tensor
) -> torch.Tensor:
    """Replace each label by a random bit with ``probability`` (labels float ``[B]``)."""
    if probability <= 0:
        return labels
    replace = (uniform < probability).to(labels.device)
    return torch.where(replace, bits.to(labels.device, labels.dtype), labels)
