"""The figure helper shared by the explanations: an image grid with row/column labels.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, so
nothing touches pyplot's global state or needs a display (works headless and
inside notebooks alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["image_grid", "to_hwc"]


def to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """One image ``[3, H, W]`` (floats in [0, 1] or uint8) -> ``[H, W, 3]`` floats in [0, 1]."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    return np.clip(np.moveaxis(array.astype(np.float32), 0, -1), 0.0, 1.0)


def image_grid(
    images: torch.Tensor | np.ndarray | Sequence[Sequence[torch.Tensor | np.ndarray | None]],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_labels: Sequence[Sequence[str]] | None = None,
    outlines: torch.Tensor | np.ndarray | Sequence[Sequence[np.ndarray | None]] | None = None,
    cell_size: float = 1.4,
    outline_color: str = "red",
) -> Figure:
    """A grid of images, ``R`` rows by ``K`` columns.

    Args:
        images: ``[R, K, 3, H, W]`` in [0, 1] (or uint8), or nested lists with
            ``None`` for an empty cell.
        row_labels: ``R`` strings written left of the rows.
        col_labels: ``K`` strings written above the columns.
        title: the figure title.
        cell_labels: ``R x K`` strings written under each image (e.g. its logit).
        outlines: ``R x K`` maps ``[H, W]`` (bool or 0/1) whose boundary is drawn
            on the image (contour at 0.5), or ``None`` per cell.
        cell_size: inches per image.
        outline_color: colour of the outline.

    Returns:
        The figure (Agg canvas attached; save it with :func:`dubfiv.explain.records.save_png`).
    """
    rows = [list(row) for row in images]
    n_rows = len(rows)
    n_cols = max((len(row) for row in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("image_grid needs at least one image")
    for name, labels, n in (("row_labels", row_labels, n_rows), ("col_labels", col_labels, n_cols)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries for {n} {name[:3]}s")
    extra_h = 0.25 if cell_labels is not None else 0.0
    figure = Figure(figsize=(cell_size * n_cols + (1.2 if row_labels else 0.2),
                             (cell_size + extra_h) * n_rows + (0.6 if title else 0.1)
                             + (0.35 if col_labels else 0.0)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        for k in range(n_cols):
            ax = axes[r][k]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[k], fontsize=8)
            if k == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=7, rotation=0, ha="right", va="center",
                              labelpad=4)
            image = rows[r][k] if k < len(rows[r]) else None
            if image is None:
                for spine in ax.spines.values():
                    spine.set_visible(False)
                continue
            ax.imshow(to_hwc(image), interpolation="nearest")
            outline = None if outlines is None else outlines[r][k]
            if outline is not None:
                mask = np.asarray(torch.as_tensor(outline).detach().cpu(), dtype=np.float32)
                if mask.min() < 0.5 <= mask.max():
                    ax.contour(mask, levels=[0.5], colors=outline_color, linewidths=1.0)
            if cell_labels is not None:
                ax.set_xlabel(cell_labels[r][k], fontsize=7, labelpad=2)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
