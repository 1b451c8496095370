"""The run folder: where each file of a run lives (``docs/runs.md``).

One place for the layout that training writes and that loading, analysis,
summaries, ground truth, the supervised analysis, figures, the workflow tools
and the quick start read::

    <output_base_dir>/<marker>_<UTC time tag>/
        <the config file(s) as given>      copied verbatim
        train.log                          the training log
        images/                            training images, samples, loss curves (PNG)
        models/models.torch                the checkpoint
        models/experiment.toml             the effective experiment config
        analysis_cache/                    logits and latents (dubfiv.explain.cache)
        ground_truth/ground_truth.json     dubfiv_ground_truth's report (+ .png)
        supervised_analysis/               dubfiv_supervised_analysis's report (+ .png)
        figures/                           dubfiv_generate_figures's output

The paper's released run has the same ``models/`` files; a flat folder with
``models.torch`` (and ``experiment.toml``) beside each other is read too.
This module imports nothing heavy (no torch), so anything may use it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from dubfiv.errors import DubfivError

__all__ = [
    "ANALYSIS_CACHE",
    "CHECKPOINT",
    "EXPERIMENT",
    "FIGURES",
    "FLAT_CHECKPOINT",
    "GROUND_TRUTH",
    "GROUND_TRUTH_REPORT",
    "IMAGES",
    "LAYOUT",
    "LOG",
    "SUPERVISED_ANALYSIS",
    "SUPERVISED_ANALYSIS_REPORT",
    "RunDirError",
    "RunPaths",
    "copy_configs",
    "experiment_beside",
    "find_checkpoint",
    "is_run_dir",
    "make_run_dir",
    "time_tag",
]

CHECKPOINT = Path("models") / "models.torch"
"""The checkpoint, relative to the run folder."""
FLAT_CHECKPOINT = Path("models.torch")
"""The checkpoint of a flat run folder (read, never written)."""
EXPERIMENT = Path("models") / "experiment.toml"
"""The effective experiment config, beside the checkpoint."""
LOG = Path("train.log")
IMAGES = Path("images")
ANALYSIS_CACHE = Path("analysis_cache")
GROUND_TRUTH = Path("ground_truth")
GROUND_TRUTH_REPORT = GROUND_TRUTH / "ground_truth.json"
SUPERVISED_ANALYSIS = Path("supervised_analysis")
SUPERVISED_ANALYSIS_REPORT = SUPERVISED_ANALYSIS / "supervised_analysis.json"
FIGURES = Path("figures")


class RunDirError(DubfivError, FileNotFoundError):
    """A run folder or its checkpoint is missing (the message names the path)."""


LAYOUT: dict[str, Path] = {
    "checkpoint": CHECKPOINT, "experiment": EXPERIMENT, "log": LOG, "images": IMAGES,
    "analysis_cache": ANALYSIS_CACHE, "ground_truth": GROUND_TRUTH,
    "ground_truth_report": GROUND_TRUTH_REPORT, "supervised_analysis": SUPERVISED_ANALYSIS,
    "supervised_analysis_report": SUPERVISED_ANALYSIS_REPORT, "figures": FIGURES,
}
"""Each :class:`RunPaths` field and its path relative to the run folder."""


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """The paths of one run folder ``root`` (:data:`LAYOUT`; nothing is checked or created).

    ``RunPaths(run_dir).checkpoint`` is ``run_dir/models/models.torch``, and so on:
    ``experiment`` (``models/experiment.toml``), ``log``, ``images``, ``analysis_cache``,
    ``ground_truth`` (the folder) and ``ground_truth_report`` (its JSON),
    ``supervised_analysis`` and ``supervised_analysis_report``, ``figures``.
    """

    root: Path
    checkpoint: Path = dataclasses.field(init=False)
    experiment: Path = dataclasses.field(init=False)
    log: Path = dataclasses.field(init=False)
    images: Path = dataclasses.field(init=False)
    analysis_cache: Path = dataclasses.field(init=False)
    ground_truth: Path = dataclasses.field(init=False)
    ground_truth_report: Path = dataclasses.field(init=False)
    supervised_analysis: Path = dataclasses.field(init=False)
    supervised_analysis_report: Path = dataclasses.field(init=False)
    figures: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        root = Path(self.root)
        object.__setattr__(self, "root", root)
        for name, relative in LAYOUT.items():
            object.__setattr__(self, name, root / relative)


def is_run_dir(path: str | os.PathLike) -> bool:
    """A folder with ``models/models.torch``, ``models.torch`` or ``models/experiment.toml``."""
    path = Path(path)
    return any((path / name).is_file() for name in (CHECKPOINT, FLAT_CHECKPOINT, EXPERIMENT))


def find_checkpoint(run_dir: str | os.PathLike,
                    error: type[DubfivError] = RunDirError) -> Path:
    """``<run_dir>/models/models.torch`` (or a flat folder's ``<run_dir>/models.torch``).

    Raises:
        error: the folder or the checkpoint is missing (the message names the path).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise error(f"{run_dir}: run directory not found.")
    for candidate in (run_dir / CHECKPOINT, run_dir / FLAT_CHECKPOINT):
        if candidate.is_file():
            return candidate
    raise error(
        f"{run_dir / CHECKPOINT}: checkpoint not found; is {run_dir} a run "
        "directory written by dubfiv_train (or the paper's released model)?"
    )


def experiment_beside(checkpoint: str | os.PathLike) -> Path:
    """The ``experiment.toml`` that belongs to a checkpoint (same folder)."""
    return Path(checkpoint).parent / EXPERIMENT.name


def time_tag(now: datetime.datetime | None = None) -> str:
    """UTC time tag of a run directory, e.g. ``2024-05-01_12-30-45``."""
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%d_%H-%M-%S")


def make_run_dir(output_base_dir: str | os.PathLike, marker: str,
                 error: type[DubfivError] = RunDirError) -> Path:
    """Create ``<output_base_dir>/<marker>_<UTC time tag>`` (``_2``, ``_3``... if taken)
    with its ``images/`` and ``models/`` folders."""
    base = Path(output_base_dir)
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{marker}_{time_tag()}"
    for n in range(1, 1000):
        run_dir = base / (stem if n == 1 else f"{stem}_{n}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        (run_dir / IMAGES).mkdir()
        (run_dir / CHECKPOINT.parent).mkdir()
        return run_dir
    raise error(f"{base}: cannot create a new run directory {stem}_N.")


def copy_configs(run_dir: Path, sources: Sequence[str | os.PathLike]) -> list[Path]:
    """Copy the given config files into ``run_dir`` verbatim (names kept, made unique)."""
    copied = []
    for source in sources:
        source = Path(source)
        target = run_dir / source.name
        n = 2
        while target.exists():
            target = run_dir / f"{source.stem}_{n}{source.suffix}"
            n += 1
        shutil.copyfile(source, target)
        copied.append(target)
    return copied
