"""A matplotlib style for two-column papers that needs no LaTeX installation.

Text is drawn by matplotlib itself (``text.usetex = False``; formulas with
mathtext in the DejaVu fonts that ship with matplotlib), fonts are embedded as
TrueType (``pdf.fonttype = 42``: selectable text, accepted by publishers), and
sizes fit a two-column layout: :data:`COLUMN_WIDTH` (one column) and
:data:`TEXT_WIDTH` (both columns), in inches, with 8 pt text and 7 pt ticks.

Use :func:`paper_style` around both building and saving a figure (some
settings are read when the figure is saved)::

    with paper_style():
        figure = make_figure()
        save_figure(figure, "out/figure", ["pdf", "png"])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from dubfiv.errors import ParameterError

__all__ = [
    "COLUMN_WIDTH",
    "FORMATS",
    "PAPER_RC",
    "TEXT_WIDTH",
    "new_figure",
    "paper_style",
    "save_figure",
]

COLUMN_WIDTH = 3.3
"""Width of one column of a two-column paper (inches)."""

TEXT_WIDTH = 6.9
"""Width of the text block of a two-column paper, both columns (inches)."""

FORMATS = ("pdf", "png", "svg")
"""Formats :func:`save_figure` writes (all rendered by matplotlib, without LaTeX)."""

PAPER_RC: dict[str, Any] = {
    "text.usetex": False,
    "mathtext.fontset": "dejavuserif",
    "font.family": "serif",
    "font.serif": ["DejaVu Serif"],
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "legend.fontsize": 7.0,
    "figure.titlesize": 9.0,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "lines.linewidth": 1.0,
    "lines.markersize": 3.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "legend.frameon": False,
    "figure.dpi": 100.0,
    "savefig.dpi": 300.0,
    "savefig.bbox": None,  # keep the figure's width: COLUMN_WIDTH / TEXT_WIDTH exactly
    "savefig.transparent": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "image.interpolation": "nearest",
}
"""The rcParams of :func:`paper_style`."""


@contextlib.contextmanager
def paper_style(**overrides: Any) -> Iterator[None]:
    """Context in which matplotlib uses :data:`PAPER_RC` (plus ``overrides``).

    Global settings (e.g. a user's ``text.usetex = True``) are replaced inside
    the context and restored after it.
    """
    with matplotlib.rc_context({**PAPER_RC, **overrides}):
        yield


def new_figure(width: float, height: float) -> Figure:
    """An empty figure ``width`` x ``height`` inches with the Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, stem: str | os.PathLike, formats: Sequence[str],
                dpi: float | None = None) -> list[Path]:
    """Write ``<stem>.<format>`` for each format, each atomically (temporary file, rename).

    PDFs carry no creation date, so the same figure gives the same bytes.

    Args:
        figure: the figure (its size is kept: no tight bounding box).
        stem: path without suffix.
        formats: a subset of :data:`FORMATS`.
        dpi: dots per inch of raster output (default ``savefig.dpi``).

    Returns:
        The written paths, in the order of ``formats``.

    Raises:
        ValueError: an unknown format.
    """
    from dubfiv.files import atomic_write

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ParameterError(f"unknown figure `formats` {unknown}; use {', '.join(FORMATS)}")
    written = []
    for fmt in formats:
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        path = Path(f"{stem}.{fmt}")
        written.append(atomic_write(path, lambda tmp, fmt=fmt, metadata=metadata: figure.savefig(
            tmp, format=fmt, dpi=dpi or matplotlib.rcParams["savefig.dpi"], metadata=metadata)))
    return written
