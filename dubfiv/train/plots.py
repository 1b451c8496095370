"""PNG outputs of training: image grids and loss curves (written atomically)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from dubfiv.files import atomic_write

__all__ = ["plot_history", "save_image_grid", "series"]


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save ``images`` ``[N, 3, H, W]`` (floats in [0, 1], clipped) as one PNG grid."""
    from torchvision.utils import save_image

    images = images.detach().float().clamp(0, 1).cpu()
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    return atomic_write(path, lambda tmp: save_image(images, tmp, nrow=nrow, padding=1,
                                                     format="png"))


def series(records: Sequence[Any], key: str) -> tuple[list[float], list[float]]:
    """``(samples, values)`` of the history records that have ``key`` (not None)."""
    pairs = [(r["samples"], r[key]) for r in records
             if isinstance(r, Mapping) and "samples" in r and r.get(key) is not None]
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


def plot_history(history: Mapping[str, Any], path: str | Path, n_heads: int) -> Path:
    """Loss curves of a run as a PNG: loss, bits/dim and head accuracy vs samples seen."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    train = history.get("train", [])
    val = history.get("validation", [])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    xs, ys = series(train, "loss")
    axes[0].plot(xs, ys, label="train")
    axes[0].set_title("total loss")
    for records, name in ((train, "train"), (val, "validation")):
        xs, ys = series(records, "bits_per_dim")
        axes[1].plot(xs, ys, label=name, marker="o" if name == "validation" else None)
        for head in range(n_heads):
            xs, ys = series(records, f"head_{head}_accuracy")
            axes[2].plot(xs, ys, label=f"head {head} {name}",
                         marker="o" if name == "validation" else None)
    axes[1].set_title("bits per dimension")
    axes[2].set_title("head accuracy")
    axes[2].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("training samples")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    written = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return written
