"""Quick looks at scenes with matplotlib: one render, or a grid of Peaky and Stretchy columns.

Upstream two4two's ``two4two.plotvis`` (``docs/two4two_api.md``)::

    from two4two.plotvis import render_grid
    fig, axes = render_grid([two4two.Sampler().sample() for _ in range(6)])

Both functions render with :func:`two4two.blender.render` (looked up at call
time; extra keyword arguments such as ``samples=16`` or ``n_processes=1`` are
passed to it) and return the matplotlib figure and its axes. pyplot is
imported here, not by ``import two4two``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from two4two.scene_parameters import SceneParameters, split_peaky_stretchy

__all__ = ["CLASS_TITLES", "render_grid", "render_single_param"]

CLASS_TITLES: dict[str, str] = {"peaky": "Peaky", "stretchy": "Stretchy"}
"""Column titles / labels of the two classes."""


def _render(params: Sequence[SceneParameters], render_kwargs: dict[str, Any]
            ) -> list[np.ndarray]:
    """The RGB images (uint8 ``[H, W, 3]``) of ``params``, in order."""
    from two4two import blender

    return [image for image, _mask, _params in blender.render(list(params), **render_kwargs)]


def _show(show: bool) -> None:
    if not show:
        return
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():  # a non-interactive backend (Agg) only warns
        warnings.simplefilter("ignore", UserWarning)
        plt.show()


def _plain(ax: Any) -> None:
    """No ticks or frame, but keep the axis labels visible."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def render_single_param(param: SceneParameters, show: bool = True,
                        **render_kwargs: Any) -> tuple[Any, Any]:
    """Render one scene and draw it in a new figure (titled with its class).

    Args:
        param: the scene.
        show: call ``plt.show()`` (a no-op on non-interactive backends).
        render_kwargs: passed to :func:`two4two.blender.render`.

    Returns:
        ``(figure, axes)``.
    """
    import matplotlib.pyplot as plt

    (image,) = _render([param], render_kwargs)
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(image)
    _plain(ax)
    ax.set_title(CLASS_TITLES.get(param.obj_name, param.obj_name))
    _show(show)
    return fig, ax


def _layout(params: Sequence[SceneParameters], num_cols_per_class: int,
            equal_class_distribution: bool) -> list[list[SceneParameters | None]]:
    """Rows of ``2 * num_cols_per_class`` cells (None: an empty cell)."""
    n_cols = 2 * num_cols_per_class
    if not equal_class_distribution:
        cells: list[SceneParameters | None] = list(params)
        n_rows = math.ceil(len(cells) / n_cols)
        cells += [None] * (n_rows * n_cols - len(cells))
        return [cells[r * n_cols:(r + 1) * n_cols] for r in range(n_rows)]
    peakies, stretchies = split_peaky_stretchy(params)
    n_rows = max(1, math.ceil(max(len(peakies), len(stretchies)) / num_cols_per_class))
    rows = []
    for r in range(n_rows):
        row: list[SceneParameters | None] = []
        for group in (peakies, stretchies):
            chunk = group[r * num_cols_per_class:(r + 1) * num_cols_per_class]
            row += chunk + [None] * (num_cols_per_class - len(chunk))
        rows.append(row)
    return rows


def render_grid(
    params: Sequence[SceneParameters],
    num_cols_per_class: int = 3,
    equal_class_distribution: bool = True,
    label_class_axis: bool = False,
    **render_kwargs: Any,
) -> tuple[Any, np.ndarray]:
    """Render scenes into a grid of ``2 * num_cols_per_class`` columns.

    Args:
        params: the scenes.
        num_cols_per_class: columns per class.
        equal_class_distribution: the left ``num_cols_per_class`` columns
            hold the peakies, the right ones the stretchies (each in the
            order given), titled 'Peaky' and 'Stretchy'; a class with fewer
            scenes leaves its last cells empty. False: the scenes fill the
            grid row by row in the order given, without column titles.
        label_class_axis: also write each image's class ('Peaky' /
            'Stretchy') under it.
        render_kwargs: passed to :func:`two4two.blender.render` (e.g.
            ``samples=16``).

    Returns:
        ``(figure, axes)``; ``axes`` is a numpy array ``[rows, 2 * num_cols_per_class]``.

    Raises:
        ValueError: no scenes, or ``num_cols_per_class < 1``.
    """
    import matplotlib.pyplot as plt

    params = list(params)
    if not params:
        raise ValueError("render_grid: params is empty; pass at least one scene")
    if isinstance(num_cols_per_class, bool) or not isinstance(num_cols_per_class, int) \
            or num_cols_per_class < 1:
        raise ValueError(f"render_grid: num_cols_per_class must be a positive integer, "
                         f"got {num_cols_per_class!r}")
    rows = _layout(params, num_cols_per_class, equal_class_distribution)
    scenes = [p for row in rows for p in row if p is not None]
    images = dict(zip((p.id for p in scenes), _render(scenes, render_kwargs), strict=True))
    n_rows, n_cols = len(rows), 2 * num_cols_per_class
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.6 * n_rows + 0.3),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c, scene in enumerate(row):
            ax = axes[r, c]
            if scene is None:
                ax.axis("off")
                continue
            ax.imshow(images[scene.id])
            _plain(ax)
            if label_class_axis:
                ax.set_xlabel(CLASS_TITLES.get(scene.obj_name, scene.obj_name))
    if equal_class_distribution:
        for c in range(n_cols):
            axes[0, c].set_title("Peaky" if c < num_cols_per_class else "Stretchy")
    fig.tight_layout()
    return fig, axes
