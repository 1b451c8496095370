"""The explanation material of a user study: print-quality figures, cell images, records.

For each condition (``docs/explanations.md``) this module computes the
explanation with :class:`dubfiv.analysis.Analysis` and writes, into a study
folder:

* ``figures/<condition>.png`` -- the whole figure (labels, logits) at
  ``dpi`` dots per inch (stored in the PNG's ``pHYs`` chunk, read back by PIL as
  ``info["dpi"]`` of at least ``dpi``);
* every cell of the grid as its own file, enlarged by an integer factor
  (nearest neighbour, no new detail) to at least ``cell_pixels`` pixels on the
  long side, with the same dpi; these are the images the survey shows, in an
  HTML table (:class:`GridLayout`). With an :class:`~dubfiv.study.build.names.ImageNamer`
  they get neutral names in ``public/`` (the record keeps the descriptive
  ``key``, e.g. ``baseline/row1_bin2``); without one they are written to
  ``images/<key>.png``;
* ``records/<condition>.json`` -- what each image shows: its file, row and
  column, the split, dataset index and scene id of the real image, the head's
  logit (for counterfactuals: target and measured logit), the logit bin it
  falls in (index, bin value, bin range), and the scene parameters of the real
  image (``parameters.jsonl``; for counterfactuals those of the source image).

Logits are raw logits of the linear head: ``> 0`` predicts ``class_names[1]``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from dubfiv.errors import ParameterError
from dubfiv.explain.concepts import NoConceptLayerError
from dubfiv.explain.figures import to_hwc
from dubfiv.explain.records import write_json
from dubfiv.study.content import Condition, GridLayout, Page, StudyImage

if TYPE_CHECKING:
    from dubfiv.analysis import Analysis
    from dubfiv.explain.bins import LogitBins
    from dubfiv.study.build.names import ImageNamer

__all__ = [
    "FIGURES_DIR",
    "IMAGES_DIR",
    "RECORDS_DIR",
    "Material",
    "MaterialError",
    "RenderSettings",
    "baseline_material",
    "bin_column_labels",
    "cell_path",
    "concepts_material",
    "inn_material",
    "png_dpi",
    "save_cell",
    "save_figure",
]

FIGURES_DIR = "figures"
IMAGES_DIR = "images"
RECORDS_DIR = "records"
_INCH = 0.0254  # metres


class MaterialError(ParameterError):
    """An explanation cannot be turned into study material (e.g. nothing to show).

    ``parameter`` names the export setting (:class:`~dubfiv.study.build.export.ExportConfig`
    field) the message starts with, if any, so a command can name its flag instead.
    """


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """How images are written.

    Attributes:
        dpi: dots per inch stored in every PNG (figures are rendered at it).
        cell_pixels: minimal long side of a cell image in pixels (integer upscaling).
        class_names: names of label 0 and label 1 (``logit > 0`` -> ``class_names[1]``).
    """

    dpi: int = 300
    cell_pixels: int = 256
    class_names: tuple[str, str] = ("Peaky", "Stretchy")

    def scale(self, height: int, width: int) -> int:
        """Integer enlargement factor of a ``height`` x ``width`` image."""
        return max(1, math.ceil(self.cell_pixels / max(height, width, 1)))


@dataclasses.dataclass
class Material:
    """One condition's material: what the survey shows and what was written."""

    condition: Condition
    record: dict[str, Any]
    figure: str
    record_path: str


# ---------------------------------------------------------------------- files


def png_dpi(dpi: float) -> tuple[float, float]:
    """The ``dpi`` to give PIL so that the PNG reads back as at least ``dpi``.

    PNG stores whole pixels per metre; 300 dpi = 11811.02 px/m would round down
    to 11811 = 299.9994 dpi, so round the pixels per metre up instead.
    """
    ppm = math.ceil(dpi / _INCH)
    return (ppm * _INCH, ppm * _INCH)


def save_figure(figure: Figure, path: Path, dpi: int) -> tuple[int, int]:
    """Save ``figure`` as a PNG at ``dpi``; return its ``(width, height)`` in pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi, pil_kwargs={"dpi": png_dpi(dpi)})
    with Image.open(path) as im:
        return im.size


def save_cell(image: torch.Tensor | np.ndarray, path: Path, settings: RenderSettings,
              outline: np.ndarray | None = None) -> tuple[int, int]:
    """Write one image ``[3, H, W]`` (floats in [0, 1] or uint8) as an enlarged PNG.

    ``outline`` (bool ``[H, W]``) marks a region whose boundary is drawn in red
    (inside the region, ``scale // 2`` pixels wide; image borders are not drawn).
    Returns the file's ``(width, height)``.
    """
    from scipy import ndimage

    array = np.round(to_hwc(image) * 255.0).astype(np.uint8)
    s = settings.scale(*array.shape[:2])
    array = array.repeat(s, axis=0).repeat(s, axis=1)
    if outline is not None:
        mask = np.asarray(outline, dtype=bool).repeat(s, axis=0).repeat(s, axis=1)
        inner = ndimage.binary_erosion(mask, iterations=max(1, s // 2), border_value=1)
        array[mask & ~inner] = (255, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, "RGB").save(path, format="PNG", dpi=png_dpi(settings.dpi))
    return array.shape[1], array.shape[0]


# ---------------------------------------------------------------------- bins


def bin_column_labels(bins: LogitBins, class_names: tuple[str, str]) -> list[str]:
    """Plain column titles such as ``strongly Peaky (score -3.2)``."""
    c0, c1 = class_names
    words = [f"strongly {c0}", c0, "undecided", c1, f"strongly {c1}"]
    if len(bins) != len(words):
        words = [f"bin {k + 1}" for k in range(len(bins))]
    return [f"{w} (score {'0' if v == 0 else f'{v:+.1f}'})"
            for w, v in zip(words, bins.values, strict=True)]


def cell_path(namer: ImageNamer | None, key: str) -> str:
    """Study-relative path of image ``key``: neutral with a namer, else ``images/<key>.png``."""
    return namer.path(key) if namer is not None else f"{IMAGES_DIR}/{key}.png"


def _image(folder: Path, rel: str, image: torch.Tensor, settings: RenderSettings, alt: str,
           outline: np.ndarray | None = None) -> StudyImage:
    width, height = save_cell(image, folder / rel, settings, outline)
    return StudyImage(rel, alt=alt, width=width, height=height)


def _finish(folder: Path, key: str, title: str, shows: str, page: Page, figure: Figure,
            settings: RenderSettings, **record: Any) -> Material:
    """The condition ``key`` of one ``page``; writes its figure and its records JSON.

    ``shows`` completes the introduction's "On the next page you see ...";
    ``record`` (the kind, the explanation's record, the cells, ...) goes into the
    records JSON beside the grid's layout and the figure's size.
    """
    c0, c1 = settings.class_names
    condition = Condition(
        key, title,
        f"<p>The model sorts images of two abstract animals into {c0} and {c1}. On the "
        f"next page you see {shows}. Study them to find out what the model looks at.</p>",
        [page])
    grid = page.grid
    assert grid is not None
    fig_rel = f"{FIGURES_DIR}/{key}.png"
    width, height = save_figure(figure, folder / fig_rel, settings.dpi)
    record = {"condition": key, "class_names": list(settings.class_names),
              "logit_meaning": f"raw logit of the linear head; > 0 predicts {c1}",
              "grid": dataclasses.asdict(grid), "cell_dpi": settings.dpi, **record,
              "figure": {"path": fig_rel, "dpi": settings.dpi, "width": width,
                         "height": height}}
    rec_rel = f"{RECORDS_DIR}/{key}.json"
    (folder / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    write_json(folder / rec_rel, record)
    return Material(condition, record, fig_rel, rec_rel)


# ---------------------------------------------------------------------- conditions


def baseline_material(analysis: Analysis, folder: Path, rows: int, seed: int,
                      settings: RenderSettings, namer: ImageNamer | None = None) -> Material:
    """The logit-binned grid of real validation images (``rows`` x 5 bins)."""
    result = analysis.baseline(n_rows=rows, seed=seed, save=False)
    assert result.images is not None
    n_rows, n_bins = result.shape
    labels = bin_column_labels(result.bins, settings.class_names)
    images, cells = [], []
    for r in range(n_rows):
        for k in range(n_bins):
            key = f"baseline/row{r + 1}_bin{k + 1}"
            rel = cell_path(namer, key)
            images.append(_image(folder, rel, result.images[r, k], settings,
                                 alt=f"{labels[k]}, example {r + 1}"))
            cells.append({"path": rel, "key": key, "row": r, "col": k, "kind": "real",
                          **analysis.image_record(result.split, result.indices[r, k],
                                                  result.image_ids[r][k], result.logits[r, k],
                                                  result.labels[r, k], result.bins)})
    c0, c1 = settings.class_names
    page = Page(
        "Images sorted by the model's score",
        f"<p>Each column shows real images for which the model computed a similar score. "
        f"Negative scores mean the model predicts {c0}, positive scores {c1}; the further "
        "from zero, the more certain the model is.</p>",
        images, GridLayout(n_rows, n_bins, [], labels))
    return _finish(folder, "baseline", "Example images sorted by the model's score",
                   "real images, grouped by the score the model gave them", page,
                   result.figure(), settings,
                   kind="baseline", explanation=result.record(), cells=cells)


def inn_material(analysis: Analysis, folder: Path, rows: int, seed: int, p_hi: float,
                 settings: RenderSettings, namer: ImageNamer | None = None) -> Material:
    """Counterfactual interpolations of ``rows`` validation images to the 5 bin values."""
    available = len(analysis.split_data("validation"))
    if rows > available:
        raise MaterialError(f"rows {rows}: the counterfactuals need as many validation "
                            f"images, the sample has {available}; use fewer rows",
                            parameter="rows")
    grid = analysis.interpolation(n_rows=rows, p_hi=p_hi, seed=seed, save=False)
    n_rows, n_targets = grid.logits.shape
    labels = ["real image", *bin_column_labels(grid.bins, settings.class_names)]
    images, cells = [], []
    for r in range(n_rows):
        key = f"inn/row{r + 1}_real"
        rel = cell_path(namer, key)
        images.append(_image(folder, rel, grid.originals[r], settings,
                             alt=f"real image {r + 1}"))
        real = analysis.image_record(grid.split, grid.indices[r], grid.image_ids[r],
                                     grid.original_logits[r], grid.labels[r], grid.bins)
        cells.append({"path": rel, "key": key, "row": r, "col": 0, "kind": "real", **real})
        for t in range(n_targets):
            key = f"inn/row{r + 1}_target{t + 1}"
            rel = cell_path(namer, key)
            images.append(_image(folder, rel, grid.images[r, t], settings,
                                 alt=f"image {r + 1} changed to {labels[t + 1]}"))
            cells.append({
                "path": rel, "key": key, "row": r, "col": t + 1, "kind": "counterfactual",
                "source": {k: real[k] for k in ("split", "index", "image_id", "logit",
                                                "label", "label_name")},
                "source_scene": real["scene"],
                "target_logit": float(grid.targets[t]), "logit": float(grid.logits[r, t]),
                "abs_deviation": float(grid.deviation[r, t]),
                "clipped_fraction": float(grid.clipped_fraction[r, t]),
                "target_bin": t, **grid.bins.describe(float(grid.logits[r, t]))})
    c0, c1 = settings.class_names
    page = Page(
        "How the image would have to change",
        "<p>The first image of each row is a real image. The images to its right are "
        "computer-generated versions of it, changed just enough that the model gives the "
        f"score above the column (negative: {c0}, positive: {c1}).</p>",
        images, GridLayout(n_rows, n_targets + 1, [], labels))
    return _finish(folder, "inn", "Counterfactual explanations",
                   "real images and how they would have to look for the model to change "
                   "its score", page, grid.figure(), settings,
                   kind="counterfactual_interpolation", explanation=grid.record(), cells=cells)


def concepts_material(analysis: Analysis, folder: Path, seed: int, settings: RenderSettings,
                      method: str = "nmf", n_concepts: int = 8, n_per_sign: int = 2,
                      n_images: int = 6, n_fit_images: int = 1000,
                      n_eval_images: int = 1000, resolution: int | None = None,
                      namer: ImageNamer | None = None) -> Material:
    """Concepts of an 8x8 (else 4x4) layer: per shown concept its top validation images.

    Raises:
        MaterialError: no concept to show, or no layer at the requested resolution.
    """
    errors = []
    report = None
    for res in (resolution,) if resolution else (8, 4):
        try:
            report = analysis.concepts(method=method, n_concepts=n_concepts, resolution=res,  # type: ignore[arg-type]
                                       n_fit_images=n_fit_images, n_eval_images=n_eval_images,
                                       render_split="validation", n_per_sign=n_per_sign,
                                       n_images=n_images, seed=seed, save=False)
            break
        except NoConceptLayerError as error:
            errors.append(str(error))
    if report is None:
        raise MaterialError("condition concepts: " + "; ".join(errors), parameter="condition")
    if report.images is None or report.outlines is None or not report.shown:
        raise MaterialError("condition concepts: no concept correlates with the logit, "
                            "nothing to show; try another n_concepts or the condition "
                            "baseline or inn", parameter="condition")
    baseline_bins = analysis.bins()
    c0, c1 = settings.class_names
    row_labels, images, cells = [], [], []
    for r, shown in enumerate(report.shown):
        towards = c1 if shown["sign"] > 0 else c0
        row_labels.append(f"concept {r + 1}: points to {towards}")
        for j in range(report.images.shape[1]):
            key = f"concepts/concept{r + 1}_image{j + 1}"
            rel = cell_path(namer, key)
            outline = report.outlines[r, j]
            images.append(_image(folder, rel, report.images[r, j], settings,
                                 alt=f"concept {r + 1}, example {j + 1}", outline=outline))
            cells.append({
                "path": rel, "key": key, "row": r, "col": j, "kind": "concept_example",
                "concept": int(shown["concept"]), "sign": int(shown["sign"]),
                "correlation": float(shown["correlation"]), "score": float(shown["scores"][j]),
                "outlined_fraction": float(np.mean(outline)),
                **analysis.sample_record(report.render_split, shown["positions"][j],
                                         baseline_bins)})
    page = Page(
        "Patterns the model has learned",
        "<p>Each row shows one pattern (a concept) the model has learned, with the real "
        "images that show it most. The red outline marks where the pattern is. The row "
        "title says which class the pattern makes the model predict.</p>",
        images, GridLayout(len(report.shown), report.images.shape[1], row_labels, []))
    return _finish(folder, "concepts", "Concepts the model has learned",
                   "patterns the model has learned to detect and which class each pattern "
                   "points to", page, report.figure(), settings,
                   kind="concepts", explanation=report.record(),
                   baseline_bins=baseline_bins.to_dict(), cells=cells)
