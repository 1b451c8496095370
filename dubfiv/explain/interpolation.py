"""Counterfactual interpolations: each row a real image, each column one target logit.

For ``R`` real images and the five bin values ``[-P_hi, -P_lo, 0, P_lo, P_hi]``
(``P_lo = 50``, ``P_hi`` in ``{80, 90, 95, 99}`` percentiles of |logit|), every
image is moved along the head's weight to each target logit and inverted
(:func:`dubfiv.explain.counterfactual.counterfactuals`, batched over all
``R x 5`` pairs). The result keeps the logits measured by re-encoding, their
deviation from the targets and the fraction of pixel values clipped to [0, 1].
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

from dubfiv.errors import ParameterError
from dubfiv.explain.baseline import label_name
from dubfiv.explain.bins import LogitBins
from dubfiv.explain.counterfactual import counterfactuals
from dubfiv.explain.figures import image_grid
from dubfiv.explain.precision import full_precision
from dubfiv.explain.records import save_png, write_json
from dubfiv.flow import SequentialFlow
from dubfiv.heads import LinearHead

__all__ = ["CounterfactualInterpolation", "InterpolationGrid", "WeightInterpolation",
           "select_rows"]


def select_rows(
    logits: np.ndarray | torch.Tensor, bins: LogitBins, n_rows: int, seed: int
) -> np.ndarray:
    """Positions of ``n_rows`` distinct images whose logits cover the bins evenly.

    Row ``r`` takes an image from bin ``r mod 5`` (drawn without replacement,
    seeded); when a bin runs out, the row takes an image from the remaining ones.
    The rows are returned ordered by the images' logits.

    Raises:
        ValueError: fewer than ``n_rows`` images.
    """
    logits = np.asarray(torch.as_tensor(logits).detach().cpu(), dtype=np.float64)
    if not 1 <= n_rows <= len(logits):
        raise ParameterError(f"`n_rows` must be between 1 and the {len(logits)} images, "
                             f"got {n_rows}")
    rng = np.random.default_rng(seed)
    assigned = bins.assign(logits)
    pools = [list(rng.permutation(np.flatnonzero(assigned == k))) for k in range(len(bins))]
    chosen: list[int] = []
    for r in range(n_rows):
        pool = pools[r % len(bins)]
        if pool:
            chosen.append(int(pool.pop()))
            continue
        rest = [p for q in pools for p in q]
        pick = int(rest[rng.integers(len(rest))])
        for q in pools:
            if pick in q:
                q.remove(pick)
        chosen.append(pick)
    chosen_arr = np.asarray(chosen, dtype=np.int64)
    return chosen_arr[np.argsort(logits[chosen_arr], kind="stable")]


@dataclasses.dataclass
class InterpolationGrid:
    """Counterfactuals of ``R`` real images at ``T`` target logits.

    Attributes:
        images: ``[R, T, 3, H, W]`` counterfactuals, clipped to [0, 1] (the flow's dtype).
        originals: ``[R, 3, H, W]`` the real images (as given).
        targets: ``[T]`` target logits (the bin values).
        logits: ``[R, T]`` logits measured by re-encoding the unclipped counterfactuals.
        original_logits: ``[R]`` logits of the real images.
        clipped_fraction: ``[R, T]`` fraction of pixel values outside [0, 1] before clipping.
        bins: the bins the targets come from.
        indices: ``[R]`` dataset indices; ``image_ids``: ``R`` scene ids; ``labels``: ``[R]``.
        split: the split the images come from.
        label_attribute: the head's label attribute.
    """

    images: torch.Tensor
    originals: torch.Tensor
    targets: np.ndarray
    logits: np.ndarray
    original_logits: np.ndarray
    clipped_fraction: np.ndarray
    bins: LogitBins
    indices: np.ndarray
    image_ids: list[str]
    labels: np.ndarray
    split: str = "validation"
    label_attribute: str = "obj_name"

    @property
    def deviation(self) -> np.ndarray:
        """``[R, T]`` |measured - target| logit."""
        return np.abs(self.logits - self.targets[None, :])

    @property
    def mean_deviation(self) -> float:
        return float(self.deviation.mean())

    @property
    def max_deviation(self) -> float:
        return float(self.deviation.max())

    def figure(self, title: str | None = None) -> Figure:
        """Original image, then one column per target; cells show the measured logit."""
        rows = [[self.originals[r], *self.images[r]] for r in range(len(self.indices))]
        names = [label_name(y, self.label_attribute) for y in self.labels]
        cells = [[f"{self.original_logits[r]:+.2f} {names[r]}",
                  *(f"{v:+.2f}" for v in self.logits[r])] for r in range(len(self.indices))]
        return image_grid(
            rows, row_labels=[str(i)[:8] for i in self.image_ids],
            col_labels=["original", *self.bins.labels()], cell_labels=cells,
            title=title or (f"Counterfactual interpolations ({self.split}; P{self.bins.p_lo:g}/"
                            f"P{self.bins.p_hi:g} of |logit|; max |dev| "
                            f"{self.max_deviation:.1e})"))

    def record(self) -> dict[str, Any]:
        """JSON-ready: per row the image, its logit, the targets and measured logits."""
        return {
            "kind": "counterfactual_interpolation",
            "split": self.split,
            "label_attribute": self.label_attribute,
            "bins": self.bins.to_dict(),
            "targets": self.targets,
            "mean_abs_logit_deviation": self.mean_deviation,
            "max_abs_logit_deviation": self.max_deviation,
            "mean_clipped_fraction": float(self.clipped_fraction.mean()),
            "max_clipped_fraction": float(self.clipped_fraction.max()),
            "rows": [{"index": int(self.indices[r]), "image_id": self.image_ids[r],
                      "label": float(self.labels[r]),
                      "original_logit": float(self.original_logits[r]),
                      "targets": self.targets, "logits": self.logits[r],
                      "deviation": self.deviation[r],
                      "clipped_fraction": self.clipped_fraction[r]}
                     for r in range(len(self.indices))],
        }

    def save(self, directory: str | os.PathLike, name: str = "interpolation") -> dict[str, Path]:
        """Write ``<name>.png`` and ``<name>.json`` into ``directory`` (atomically)."""
        directory = Path(directory)
        return {"json": write_json(directory / f"{name}.json", self.record()),
                "png": save_png(self.figure(), directory / f"{name}.png")}


class CounterfactualInterpolation:
    """Moves real images along the head's weight to the bin values of ``bins``.

    Args:
        flow: the invertible network (eval mode).
        head: the linear head that defines the direction and the logit.
        bins: the targets are ``bins.values``.
        batch_size: (image, target) pairs per pass through the network.
    """

    def __init__(self, flow: SequentialFlow, head: LinearHead, bins: LogitBins,
                 batch_size: int = 16) -> None:
        self.flow, self.head, self.bins, self.batch_size = flow, head, bins, batch_size

    def __call__(
        self, images: torch.Tensor, indices: Sequence[int] | None = None,
        image_ids: Sequence[str] | None = None, labels: Sequence[float] | None = None,
        split: str = "validation", label_attribute: str = "obj_name",
    ) -> InterpolationGrid:
        """Counterfactuals of ``images`` ``[R, 3, H, W]`` (in [0, 1]) at every bin value."""
        n = images.shape[0]
        with full_precision():
            result = counterfactuals(self.flow, self.head, images, self.bins.values,
                                     batch_size=self.batch_size, clip=True)
        indices = np.arange(n) if indices is None else np.asarray(indices)
        return InterpolationGrid(
            images=result.images,
            originals=images.detach().cpu(),
            targets=np.asarray(self.bins.values, dtype=np.float64),
            logits=result.logits.double().numpy(),
            original_logits=result.original_logits.double().numpy(),
            clipped_fraction=result.clipped_fraction.double().numpy(),
            bins=self.bins,
            indices=indices.astype(np.int64),
            image_ids=[str(i) for i in (indices if image_ids is None else image_ids)],
            labels=np.full(n, np.nan) if labels is None else np.asarray(labels, dtype=np.float64),
            split=split, label_attribute=label_attribute,
        )


WeightInterpolation = CounterfactualInterpolation
"""The name the original code used for :class:`CounterfactualInterpolation`."""
