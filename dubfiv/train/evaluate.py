"""Evaluation of a flow with heads on a split: bits/dim and head accuracy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dubfiv import data as D
from dubfiv.config import TrainConfig
from dubfiv.losses import head_bce
from dubfiv.train.model import FlowWithHeads

__all__ = ["evaluation_sums", "sums_to_record"]


@torch.no_grad()
def evaluation_sums(
    module: FlowWithHeads,
    split: Dataset,
    indices: Sequence[int],
    train: TrainConfig,
    label_index: Sequence[int],
    device: torch.device,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """Sums over the items ``indices`` of ``split`` (float64 ``[2 + 2k]`` for ``k`` heads):
    bits/dim, count, then per head BCE (clean labels) and correct predictions.

    Images are dequantised (if ``train.dequantize``) with noise that depends only
    on ``(seed, item index)``, so the result does not depend on batching or on
    how the items are shared between processes. ``module`` is put in eval mode
    and back in train mode.
    """
    loader = DataLoader(Subset(split, list(indices)), batch_size=batch_size, shuffle=False,
                        num_workers=train.num_workers)
    k = len(label_index)
    sums = torch.zeros(2 + 2 * k, dtype=torch.float64)
    position = 0
    module.eval()
    try:
        for images, labels in loader:
            x = D.to_unit(images)
            if train.dequantize:
                batch = indices[position:position + x.shape[0]]
                x = D.dequantize(x, torch.stack([D.dequantization_noise(
                    train.seed, j, x.shape[1:], stream=D.STREAM_VALIDATION) for j in batch]))
            position += x.shape[0]
            x, labels = x.to(device), labels.to(device).float()
            with autocast():
                bpd, logits = module(x)
            values = [bpd.float().sum(), torch.tensor(float(x.shape[0]))]
            ys = [labels[:, index] for index in label_index]
            values += [head_bce(logits[:, i].float(), y) * x.shape[0] for i, y in enumerate(ys)]
            values += [((logits[:, i] > 0).float() == y).sum() for i, y in enumerate(ys)]
            sums += torch.stack([v.double().cpu() for v in values])
    finally:
        module.train()
    return sums


def sums_to_record(sums: torch.Tensor, n_heads: int) -> dict[str, float]:
    """Means of :func:`evaluation_sums` (summed over processes): ``bits_per_dim``, ``n``,
    ``head_<i>_bce`` and ``head_<i>_accuracy``."""
    n = max(float(sums[1]), 1.0)
    record: dict[str, float] = {"bits_per_dim": float(sums[0]) / n, "n": int(sums[1])}
    for i in range(n_heads):
        record[f"head_{i}_bce"] = float(sums[2 + i]) / n
        record[f"head_{i}_accuracy"] = float(sums[2 + n_heads + i]) / n
    return record
