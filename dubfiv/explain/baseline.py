"""The baseline explanation: a logit-binned grid of real images (``docs/explanations.md``).

One column per logit bin (``[-P_hi, -P_lo, 0, P_lo, P_hi]``, edges at the
midpoints), one row per draw; each cell is a real image whose logit falls in
the column's bin, drawn without replacement (seeded) from a data split.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from dubfiv.errors import DubfivError, ParameterError
from dubfiv.explain.bins import LogitBins
from dubfiv.explain.figures import image_grid
from dubfiv.explain.records import save_png, write_json

__all__ = ["Baseline", "BinTooSmallError", "draw_binned_grid", "label_name"]


class BinTooSmallError(DubfivError, ValueError):
    """A logit bin holds fewer images than the grid has rows."""


def label_name(label: float, attribute: str = "obj_name") -> str:
    """``peaky``/``stretchy`` for ``obj_name``, else ``<attribute>=<0|1>``; ``?`` if unknown."""
    if not np.isfinite(float(label)):
        return "?"
    if attribute in ("obj_name", "label"):
        from two4two.scene_parameters import OBJ_NAMES

        return str(OBJ_NAMES[round(float(label))])
    return f"{attribute}={round(float(label))}"


def draw_binned_grid(
    logits: np.ndarray | torch.Tensor, bins: LogitBins, n_rows: int, seed: int
) -> np.ndarray:
    """Positions ``[n_rows, n_bins]`` into ``logits``; column ``k`` holds items of bin ``k``.

    Each column is a seeded draw without replacement from the items whose logit
    lies in bin ``k``; no position appears twice in the grid (bins are disjoint).

    Raises:
        BinTooSmallError: a bin holds fewer than ``n_rows`` items (the message
            gives every bin's count and the fixes).
    """
    if n_rows < 1:
        raise ParameterError(f"`n_rows` must be at least 1, got {n_rows}")
    assigned = bins.assign(logits)
    counts = np.bincount(assigned, minlength=len(bins))
    if (counts < n_rows).any():
        short = [k for k in range(len(bins)) if counts[k] < n_rows]
        raise BinTooSmallError(
            f"logit bin(s) {short} hold only {[int(counts[k]) for k in short]} images, fewer than "
            f"the {n_rows} rows requested (counts per bin: {counts.tolist()}, bin values "
            f"{np.round(bins.values, 3).tolist()}); use fewer rows or more images "
            "(a larger n_samples)."
        )
    rng = np.random.default_rng(seed)
    columns = [rng.choice(np.flatnonzero(assigned == k), size=n_rows, replace=False)
               for k in range(len(bins))]
    return np.stack(columns, axis=1).astype(np.int64)


@dataclasses.dataclass
class Baseline:
    """A logit-binned grid of real images, ``R`` rows by ``K = 5`` bins.

    Attributes:
        positions: ``[R, K]`` positions into the split sample
            (:class:`~dubfiv.explain.cache.SplitData`).
        indices: ``[R, K]`` dataset indices.
        image_ids: ``R x K`` scene ids.
        logits: ``[R, K]`` the images' logits.
        labels: ``[R, K]`` their labels (0/1).
        bins: the bins (values, edges, percentiles).
        split: the split drawn from.
        seed: the seed of the draw.
        label_attribute: the head's label attribute (for naming the classes).
        images: ``[R, K, 3, H, W]`` in [0, 1], or ``None`` if not loaded.
    """

    positions: np.ndarray
    indices: np.ndarray
    image_ids: list[list[str]]
    logits: np.ndarray
    labels: np.ndarray
    bins: LogitBins
    split: str
    seed: int
    label_attribute: str = "obj_name"
    images: torch.Tensor | None = None

    @classmethod
    def draw(
        cls, logits: np.ndarray, labels: np.ndarray, bins: LogitBins, n_rows: int, seed: int,
        indices: np.ndarray | None = None, image_ids: Sequence[str] | None = None,
        split: str = "validation", label_attribute: str = "obj_name",
    ) -> Baseline:
        """Draw the grid from a split sample (``logits``, ``labels``: ``[N]``); no images yet."""
        logits = np.asarray(logits, dtype=np.float64)
        positions = draw_binned_grid(logits, bins, n_rows, seed)
        indices = np.arange(len(logits)) if indices is None else np.asarray(indices)
        ids = [str(i) for i in indices] if image_ids is None else list(image_ids)
        return cls(
            positions=positions,
            indices=indices[positions].astype(np.int64),
            image_ids=[[ids[p] for p in row] for row in positions],
            logits=logits[positions],
            labels=np.asarray(labels)[positions],
            bins=bins, split=split, seed=seed, label_attribute=label_attribute,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.positions.shape)  # type: ignore[return-value]

    def figure(self, title: str | None = None) -> Figure:
        """The grid with bin titles and each cell's logit and label."""
        if self.images is None:
            raise ValueError("Baseline.images is not loaded; use Analysis.baseline() or set "
                             "images [R, K, 3, H, W]")
        cells = [[f"{logit:+.2f} {label_name(label, self.label_attribute)}"
                  for logit, label in zip(row_l, row_y, strict=True)]
                 for row_l, row_y in zip(self.logits, self.labels, strict=True)]
        return image_grid(
            self.images, row_labels=[f"row {r}" for r in range(self.shape[0])],
            col_labels=[f"bin {v}" for v in self.bins.labels()],
            title=title or f"Baseline: real images binned by logit ({self.split})",
            cell_labels=cells)

    def record(self) -> dict[str, Any]:
        """JSON-ready description of every cell and of the bins."""
        return {
            "kind": "baseline",
            "split": self.split,
            "seed": self.seed,
            "label_attribute": self.label_attribute,
            "bins": self.bins.to_dict(),
            "n_rows": self.shape[0],
            "cells": [[{"row": r, "bin": k, "position": int(self.positions[r, k]),
                        "index": int(self.indices[r, k]), "image_id": self.image_ids[r][k],
                        "logit": float(self.logits[r, k]), "label": float(self.labels[r, k])}
                       for k in range(self.shape[1])] for r in range(self.shape[0])],
        }

    def save(self, directory: str | os.PathLike, name: str = "baseline") -> dict[str, Path]:
        """Write ``<name>.png`` and ``<name>.json`` into ``directory`` (atomically)."""
        directory = Path(directory)
        paths = {"json": write_json(directory / f"{name}.json", self.record())}
        if self.images is not None:
            paths["png"] = save_png(self.figure(), directory / f"{name}.png")
        return paths
