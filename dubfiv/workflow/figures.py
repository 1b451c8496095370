"""The paper-style figures of a run (``dubfiv_generate_figures``).

Six figures, each written as ``<output>/<name>.<format>`` (PDF and PNG by
default) in the style of :mod:`dubfiv.workflow.paper_style` (no LaTeX needed):

============== ==================================================================
name           what it shows, and what it needs
============== ==================================================================
baseline       the logit-binned grid of real validation images (needs the dataset)
counterfactual real images moved along the head's weight to the five bin values
               (needs the dataset)
concepts       the top concepts of a 1x1 convolution, their images, active
               region outlined (needs the dataset)
ground_truth   per attribute the linear effect of interventions on the logit and
               the share of flipped predictions, 95% intervals (needs
               ``<run>/ground_truth/ground_truth.json`` from ``dubfiv_ground_truth``)
regression     one panel per attribute: attribute change (read by the supervised
               model) against logit change of the counterfactuals, with the
               fitted line (needs ``<run>/supervised_analysis/supervised_analysis.json``
               from ``dubfiv_supervised_analysis``)
training       bits/dim and head accuracy against training samples (the run's history)
============== ==================================================================

A figure whose input is missing is skipped with a note that names the missing
file and the command that makes it; ``figures.json`` in the output lists what
was written and what was skipped. Each file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from dubfiv.errors import ParameterError
from dubfiv.explain.settings import ExplanationSettings
from dubfiv.ground_truth import interval_tuple
from dubfiv.rundir import RunPaths
from dubfiv.train.plots import series
from dubfiv.workflow.paper_style import (
    FORMATS,
    TEXT_WIDTH,
    new_figure,
    paper_style,
    save_figure,
)

if TYPE_CHECKING:
    from dubfiv.analysis import Analysis
    from dubfiv.runs import Run

__all__ = [
    "FIGURES",
    "FigureError",
    "FigureOptions",
    "FigureOutcome",
    "generate_figures",
    "ground_truth_figure",
    "moving_average",
    "regression_figure",
    "training_figure",
]

FIGURES = ("baseline", "counterfactual", "concepts", "ground_truth", "regression", "training")
"""The figures :func:`generate_figures` can draw, in the order it draws them."""

IMAGE_FIGURES = ("baseline", "counterfactual", "concepts")
"""Figures that need the run's dataset (through :class:`dubfiv.analysis.Analysis`)."""

INDEX = "figures.json"
RELEVANT_COLOR = "#c0392b"
IRRELEVANT_COLOR = "#7f8c8d"


class FigureError(ParameterError):
    """Bad arguments or an unusable run/output folder (raised before anything is written);
    ``parameter`` names the option at fault, if one is."""


@dataclasses.dataclass
class FigureOptions(ExplanationSettings):
    """What to draw and how.

    The explanations' settings (``seed``, ``rows`` of the baseline and
    counterfactual grids, default 5 here, ``p_hi``, the ``concept_*`` settings)
    are those of :class:`~dubfiv.explain.settings.ExplanationSettings`,
    keyword-only.

    Attributes:
        figures: a subset of :data:`FIGURES`.
        formats: a subset of :data:`~dubfiv.workflow.paper_style.FORMATS`.
        device: ``None`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        dataset_dir: folder holding the run's dataset (default: the run's).
        ground_truth: the ``ground_truth.json`` (default ``<run>/ground_truth/``).
        supervised_analysis: the ``supervised_analysis.json`` (default
            ``<run>/supervised_analysis/``).
        progress: progress bars.
    """

    figures: tuple[str, ...] = FIGURES
    formats: tuple[str, ...] = ("pdf", "png")
    device: str | None = None
    dataset_dir: Path | None = None
    ground_truth: Path | None = None
    supervised_analysis: Path | None = None
    progress: bool = True
    rows: int = dataclasses.field(default=5, kw_only=True)


@dataclasses.dataclass
class FigureOutcome:
    """One figure: the files written, or why it was skipped (``note``)."""

    name: str
    files: list[Path]
    note: str = ""

    @property
    def written(self) -> bool:
        return bool(self.files)


# --------------------------------------------------------------------------- checks


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def preflight(run_dir: Path, output: Path, options: FigureOptions) -> None:
    """Fail (:class:`FigureError`) on bad options, a missing checkpoint or an unwritable
    output, before anything is written."""
    from dubfiv.checkpoint import CheckpointError
    from dubfiv.runs import RunError, find_checkpoint, resolve_device

    unknown = [f for f in options.figures if f not in FIGURES]
    if unknown or not options.figures:
        raise FigureError(f"unknown figure(s) {unknown or '(none chosen)'}; choose from "
                          f"{', '.join(FIGURES)}")
    bad = [f for f in options.formats if f not in FORMATS]
    if bad or not options.formats:
        raise FigureError(f"unknown format(s) {bad or '(none chosen)'}; choose from "
                          f"{', '.join(FORMATS)}")
    try:
        options.check_explanations()
    except ParameterError as error:
        raise FigureError(str(error), error.parameter) from error
    if not run_dir.is_dir():
        raise FigureError(f"{run_dir}: no such run directory")
    try:
        find_checkpoint(run_dir)
    except CheckpointError as error:
        raise FigureError(str(error)) from error
    try:
        resolve_device(options.device)
    except RunError as error:
        raise FigureError(str(error)) from error
    existing = _nearest_existing(output)
    if not existing.is_dir():
        raise FigureError(f"{output}: cannot create the output folder ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FigureError(f"{output}: output folder is not writable ({existing}); choose "
                          "another with `output_dir`")


# --------------------------------------------------------------------------- figures from JSON


def _bars(ax: Any, labels: Sequence[str], values: np.ndarray, colors: Sequence[str]) -> None:
    """Horizontal bars ``values`` ``[k, 3]`` (estimate, low, high), first label on top."""
    ys = np.arange(len(labels))[::-1]
    err = np.abs(np.stack([values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]]))
    ax.barh(ys, np.nan_to_num(values[:, 0]), color=colors, height=0.65,
            xerr=np.nan_to_num(err), error_kw={"elinewidth": 0.6, "capsize": 1.5})
    ax.set_yticks(ys, [label.replace("_", " ") for label in labels])
    ax.axvline(0, color="black", linewidth=0.5)
    ax.tick_params(axis="y", length=0)


def ground_truth_figure(report: Mapping[str, Any]) -> Figure:
    """Two panels from a ``ground_truth.json``: the linear effect of each attribute's
    interventions on the logit (threshold dashed; relevant attributes in red) and the share
    of predictions an intervention flips, each with its 95% bootstrap interval."""
    attributes = report["attributes"]
    labels = list(attributes)
    colors = [RELEVANT_COLOR if attributes[a].get("relevant") else IRRELEVANT_COLOR
              for a in labels]
    figure = new_figure(TEXT_WIDTH, 0.45 + 0.22 * len(labels))
    axes = figure.subplots(1, 2, sharey=True)
    effect = np.array([interval_tuple(attributes[a].get("linear_effect")) for a in labels])
    flips = np.array([interval_tuple(attributes[a].get("flip_share")) for a in labels])
    _bars(axes[0], labels, effect, colors)
    threshold = (report.get("rule") or {}).get("relative_threshold")
    if threshold is not None:
        axes[0].axvline(float(threshold), color=RELEVANT_COLOR, linestyle="--", linewidth=0.7,
                        label="relevance threshold")
        axes[0].legend(loc="lower right")
    axes[0].set_xlabel("linear effect on the logit (logit std)")
    _bars(axes[1], labels, flips, colors)
    axes[1].set_xlim(0, 1)
    axes[1].set_xlabel("share of flipped predictions")
    figure.tight_layout(pad=0.3)
    return figure


def regression_figure(report: Mapping[str, Any], columns: int = 4) -> Figure:
    """One panel per attribute from a ``supervised_analysis.json``: the change of the
    attribute against the change of the logit over the counterfactuals (points, if the
    report has them) and the least-squares line, titled with slope and R^2."""
    attributes = report["attributes"]
    names = list(attributes)
    points = report.get("points") or {}
    x = np.asarray(points.get("delta_logit", []), dtype=np.float64).reshape(-1)
    if x.size:
        span = (float(x.min()), float(x.max()))
    else:
        targets = np.asarray(report.get("target_logits", [-1.0, 1.0]), dtype=np.float64)
        span = (float(targets.min() - targets.mean()), float(targets.max() - targets.mean()))
    columns = min(columns, len(names))
    rows = math.ceil(len(names) / columns)
    width = TEXT_WIDTH / columns
    figure = new_figure(TEXT_WIDTH, rows * width * 0.85)
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False)).reshape(-1)
    grid = np.linspace(*span, 2)
    for ax, name in zip(axes, names, strict=False):
        entry = attributes[name]
        y = np.asarray(points.get("delta_attributes", {}).get(name, []), np.float64).reshape(-1)
        if x.size and y.size == x.size:
            ax.scatter(x, y, s=1.5, alpha=0.3, color="#2c7fb8", linewidths=0, rasterized=True)
        slope, intercept, r2 = (entry.get(k) for k in ("slope", "intercept", "r2"))
        if slope is not None and intercept is not None:
            ax.plot(grid, intercept + slope * grid, color=RELEVANT_COLOR, linewidth=0.9)
        r2_text = "n/a" if r2 is None else f"{float(r2):.2f}"
        slope_text = "n/a" if slope is None else f"{float(slope):+.3g}"
        ax.set_title(f"{name.replace('_', ' ')}\nslope {slope_text}, $R^2$ {r2_text}",
                     fontsize=7)
        ax.axhline(0, color="black", linewidth=0.4)
        ax.tick_params(labelsize=6)
    for ax in axes[len(names):]:
        ax.axis("off")
    for index, ax in enumerate(axes[:len(names)]):
        if index + columns >= len(names):  # no panel below it
            ax.set_xlabel(r"$\Delta$ logit")
    for ax in axes[::columns]:
        ax.set_ylabel(r"$\Delta$ attribute")
    figure.tight_layout(pad=0.3, h_pad=0.6, w_pad=0.4)
    return figure


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    array = np.asarray(values, dtype=np.float64)
    if window <= 1 or array.size == 0:
        return array
    sums = np.cumsum(np.concatenate([[0.0], array]))
    ends = np.arange(1, array.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def training_figure(history: Mapping[str, Any], n_heads: int) -> Figure | None:
    """Bits/dim and head accuracy against training samples, from a run's history: train
    records (one per logged batch) as a moving average over 1/20 of them, validation records
    with markers; ``None`` if the history has no such records."""
    train = [r for r in history.get("train", []) if isinstance(r, Mapping)]
    val = [r for r in history.get("validation", []) if isinstance(r, Mapping)]
    if not series(train + val, "bits_per_dim")[0]:
        return None
    figure = new_figure(TEXT_WIDTH, 2.0)
    bpd, accuracy = figure.subplots(1, 2)
    for records, label, style in ((train, "train (moving avg.)", {"linewidth": 0.7, "alpha": 0.7}),
                                  (val, "validation", {"marker": "o", "linewidth": 1.0})):
        window = max(1, len(records) // 20) if records is train else 1
        xs, ys = series(records, "bits_per_dim")
        if xs:
            bpd.plot(xs, moving_average(ys, window), label=label, **style)
        for head in range(n_heads):
            xs, ys = series(records, f"head_{head}_accuracy")
            if xs:
                accuracy.plot(xs, moving_average(ys, window),
                              label=f"head {head}, {label}" if n_heads > 1 else label, **style)
    bpd.set_ylabel("bits / dim")
    accuracy.set_ylabel("head accuracy")
    accuracy.set_ylim(0, 1)
    for ax in (bpd, accuracy):
        ax.set_xlabel("training samples")
        ax.grid(True)
        if ax.lines:
            ax.legend()
    figure.tight_layout(pad=0.3)
    return figure


# --------------------------------------------------------------------------- the command


def _read_json(path: Path, hint: str) -> tuple[Mapping[str, Any] | None, str]:
    if not path.is_file():
        return None, f"no {path}; {hint}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path} is not readable JSON ({error}); rerun: {hint}"
    if not isinstance(data, Mapping) or not isinstance(data.get("attributes"), Mapping) \
            or not data["attributes"]:
        return None, f"{path} has no 'attributes' table; rerun: {hint}"
    return data, ""


def _image_figure(analysis: Analysis, name: str, options: FigureOptions) -> Figure:
    if name == "baseline":
        return analysis.baseline(n_rows=options.rows, seed=options.seed, save=False).figure()
    if name == "counterfactual":
        return analysis.interpolation(n_rows=options.rows, p_hi=options.p_hi,
                                      seed=options.seed, save=False).figure()
    return analysis.concepts(
        method=options.concept_method,  # type: ignore[arg-type]
        n_concepts=options.n_concepts, resolution=options.concept_resolution or 8,
        n_fit_images=options.concept_fit_images, n_eval_images=options.concept_eval_images,
        n_per_sign=options.concepts_per_sign, n_images=options.concept_images,
        seed=options.seed, save=False).figure()


class _Drawer:
    """Draws the requested figures of one run, loading the run and data only when needed."""

    def __init__(self, run_dir: Path, output: Path, options: FigureOptions) -> None:
        self.run_dir, self.output, self.options = run_dir, output, options
        self._analysis: Analysis | None = None
        self._analysis_error = ""
        self._run: Run | None = None

    def analysis(self) -> Analysis | None:
        from dubfiv.analysis import Analysis, AnalysisError
        from dubfiv.data import DatasetError
        from two4two.pytorch import Two4TwoDatasetError

        if self._analysis is None and not self._analysis_error:
            try:
                self._analysis = Analysis.from_run(
                    self.run(), dataset_dir=self.options.dataset_dir, seed=self.options.seed,
                    progress=self.options.progress)
            except (AnalysisError, DatasetError, Two4TwoDatasetError) as error:
                self._analysis_error = (f"{' '.join(str(error).split())} (give the dataset "
                                        "folder with `dataset_dir`)")
        return self._analysis

    def run(self) -> Run:
        """The run, loaded once (on the requested device: the image figures need it)."""
        from dubfiv.runs import load_run, resolve_device

        if self._run is None:
            self._run = load_run(self.run_dir, device=resolve_device(self.options.device))
        return self._run

    def save(self, name: str, figure: Figure) -> FigureOutcome:
        with paper_style():
            files = save_figure(figure, self.output / name, self.options.formats)
        return FigureOutcome(name, files)

    def draw(self, name: str) -> FigureOutcome:
        from dubfiv.analysis import AnalysisError
        from dubfiv.data import DatasetError
        from two4two.pytorch import Two4TwoDatasetError

        options = self.options
        build: Callable[[], Figure | None]
        if name in IMAGE_FIGURES:
            analysis = self.analysis()
            if analysis is None:
                return FigureOutcome(name, [], self._analysis_error)
            build = lambda: _image_figure(analysis, name, options)  # noqa: E731
        elif name == "ground_truth":
            path = options.ground_truth or RunPaths(self.run_dir).ground_truth_report
            report, note = _read_json(path, f"run dubfiv_ground_truth --model {self.run_dir}")
            if report is None:
                return FigureOutcome(name, [], note)
            build = lambda: ground_truth_figure(report)  # noqa: E731
        elif name == "regression":
            path = options.supervised_analysis or \
                RunPaths(self.run_dir).supervised_analysis_report
            report, note = _read_json(path, "run dubfiv_supervised_analysis --supervised_dir "
                                            f"DIR --model {self.run_dir}")
            if report is None:
                return FigureOutcome(name, [], note)
            build = lambda: regression_figure(report)  # noqa: E731
        else:
            run = self.run()
            history = run.history if isinstance(run.history, Mapping) else {}
            build = lambda: training_figure(history, len(run.heads))  # noqa: E731
        # image grids keep all four spines (a frame per image), plots only the left/bottom
        frame = {"axes.spines.top": True, "axes.spines.right": True} \
            if name in IMAGE_FIGURES else {}
        try:
            with paper_style(**frame):
                figure = build()
        except (ValueError, AnalysisError, DatasetError, Two4TwoDatasetError) as error:
            # e.g. a bin with fewer images than --n_rows, no 1x1 convolution for the concepts,
            # or a missing train split: this figure is skipped, the others are still drawn
            return FigureOutcome(name, [], " ".join(str(error).split()))
        if figure is None:
            return FigureOutcome(name, [], "the run's history has no bits/dim records "
                                 "(e.g. the paper's released run)")
        return self.save(name, figure)


def generate_figures(run_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                     options: FigureOptions | None = None) -> list[FigureOutcome]:
    """Draw ``options.figures`` of ``run_dir`` into ``output_dir`` (default
    ``<run_dir>/figures``) and write ``figures.json`` there.

    Returns:
        One :class:`FigureOutcome` per requested figure, in :data:`FIGURES` order.

    Raises:
        FigureError: bad options, no checkpoint, unwritable output (nothing written).
        RunError / CheckpointError: the checkpoint cannot be loaded.
    """
    from dubfiv.explain.records import write_json

    options = options or FigureOptions()
    run_dir = Path(run_dir)
    output = Path(output_dir) if output_dir is not None else RunPaths(run_dir).figures
    preflight(run_dir, output, options)
    drawer = _Drawer(run_dir, output, options)
    output.mkdir(parents=True, exist_ok=True)
    outcomes = [drawer.draw(name) for name in FIGURES if name in options.figures]
    write_json(output / INDEX, {
        "run_dir": str(run_dir),
        "formats": list(options.formats),
        "figures": [{"name": o.name, "files": [f.name for f in o.files], "note": o.note}
                    for o in outcomes],
    })
    return outcomes
