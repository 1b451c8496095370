"""What a study export is asked to do (:class:`ExportConfig`), checked before any work.

:func:`preflight` checks every setting that can be checked without loading the
model (the explanations' settings, the condition, the image base URL, the run,
its checkpoint and the output folder), so that a bad flag fails in a second,
not after minutes of rendering. Errors name the :class:`ExportConfig` field
(``ExportError.parameter``); the command maps it to its flag.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from dubfiv.errors import ParameterError
from dubfiv.explain.settings import ExplanationSettings
from dubfiv.study.build.bundle import BundleError, check_writable
from dubfiv.study.build.tutorial import TutorialError, TutorialSettings
from dubfiv.study.content import CONDITION_KEYS, Study
from dubfiv.study.qsf.reader import QsfError
from dubfiv.study.qsf.writer import check_base_url

__all__ = [
    "CONDITION_CHOICES",
    "DEFAULT_OUTPUT_NAME",
    "PLACEHOLDER_BASE_URL",
    "RUNTIMES",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "check_runtimes",
    "preflight",
    "tutorial_settings",
]

PLACEHOLDER_BASE_URL = "https://example.org/dubfiv_study"
"""Default ``--image-base-url``: a placeholder to be replaced by where the images are hosted."""
CONDITION_CHOICES = ("all", *CONDITION_KEYS)
DEFAULT_OUTPUT_NAME = "user_study"
"""Default output: ``<run_dir>/user_study``."""
RUNTIMES = ("qualtrics", "jspsych")
"""Where a study can run: ``qualtrics`` (``study.qsf``), ``jspsych`` (the page in ``public/``,
:mod:`dubfiv.study.jspsych`)."""


class ExportError(ParameterError):
    """The export cannot run as asked; the message names the setting or path and the fix.

    ``parameter`` is the :class:`ExportConfig` field the message starts with (e.g.
    ``rows``), if any, so a command can name its own flag for it.
    """


@dataclasses.dataclass
class ExportConfig(ExplanationSettings):
    """What to export and how (the CLI's flags in parentheses).

    Attributes:
        run_dir: the run directory.
        output: the study folder (``--output``; default ``<run_dir>/user_study``).
        condition: ``all`` or one of ``baseline``, ``inn``, ``concepts`` (``--condition``).
        image_base_url: http(s) URL the folder ``public/`` will be hosted at
            (``--image-base-url``); an image's URL is ``<image_base_url>/<name>.png``.
        prolific_completion_code: Prolific's completion code; adds the Prolific
            URL parameters and the completion redirect (``--prolific-completion-code``).
        tutorial: render the tutorial and its comprehension checks (``--no_tutorial``).
        tutorial_resolution, tutorial_samples: size (px) and Cycles samples of the
            tutorial renders (``--tutorial_resolution``, ``--tutorial_samples``).
        comprehension_checks: comprehension questions after the tutorial.
        attention_checks: add the two instructional attention checks.
        dataset_dir: folder holding the run's dataset.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``None`` (CUDA if available).
        n_tasks: prediction tasks (``--n_tasks``).
        head: index of the explained head.
        n_samples: images sampled per split for the explanations (0: all).
        dpi, cell_pixels: PNG resolution (:class:`~dubfiv.study.build.material.RenderSettings`).
        batch_size: images per forward pass.
        cache: use the run's analysis cache (``<run_dir>/analysis_cache``).
        progress: progress bars and step messages.
        name: the survey's internal name, for the researcher only (records, README,
            Qualtrics' project list; default ``dubfiv study <run name>``); participants
            see :attr:`~dubfiv.study.content.Study.title` instead.
        runtimes: where the study runs, a subset of :data:`RUNTIMES` (``--runtime``):
            ``qualtrics`` writes ``study.qsf``, ``jspsych`` the jsPsych page into
            ``public/`` and ``records/jatos_study_input.json`` (``docs/jspsych.md``).
        jspsych_dir: a ``node_modules`` folder with the pinned jsPsych packages
            (``--jspsych-dir``): the page loads its copies instead of the CDN's.

    The explanations' settings (``seed``, ``rows`` (``--rows``), ``p_hi``, the
    ``concept_*`` settings, ...) are those of
    :class:`~dubfiv.explain.settings.ExplanationSettings`, keyword-only.
    """

    run_dir: Path
    output: Path | None = None
    condition: str = "all"
    image_base_url: str = PLACEHOLDER_BASE_URL
    dataset_dir: Path | None = None
    device: str | None = None
    n_tasks: int = 10
    head: int = 0
    n_samples: int = 3000
    dpi: int = 300
    cell_pixels: int = 256
    batch_size: int = 32
    cache: bool = True
    progress: bool = True
    name: str | None = None
    prolific_completion_code: str | None = None
    tutorial: bool = True
    tutorial_resolution: int = 128
    tutorial_samples: int = 32
    comprehension_checks: int = 2
    attention_checks: bool = True
    runtimes: tuple[str, ...] = RUNTIMES
    jspsych_dir: Path | None = None

    @property
    def conditions(self) -> tuple[str, ...]:
        return CONDITION_KEYS if self.condition == "all" else (self.condition,)

    @property
    def destination(self) -> Path:
        out = self.output if self.output is not None else Path(self.run_dir) / DEFAULT_OUTPUT_NAME
        return Path(out).absolute()

    @property
    def placeholder(self) -> bool:
        """Whether the images are referenced under :data:`PLACEHOLDER_BASE_URL`."""
        return self.image_base_url.rstrip("/") == PLACEHOLDER_BASE_URL


@dataclasses.dataclass
class ExportResult:
    """What an export wrote."""

    output: Path
    study: Study
    manifest: dict[str, Any]
    seconds: dict[str, float]
    notes: list[str]


# ---------------------------------------------------------------------- checks


def _check_base_url(url: str) -> None:
    """The shared check of the image base URL, as an error naming ``image_base_url``."""
    try:
        check_base_url(url)
    except QsfError as exc:
        raise ExportError(str(exc), "image_base_url") from exc


def preflight(config: ExportConfig) -> Path:
    """Check everything that can be checked without loading the model; return the checkpoint.

    Raises:
        ExportError: a bad setting, a missing run or checkpoint, or an output
            folder that cannot be written (the message names the setting and path).
    """
    from dubfiv.runs import RunError, find_checkpoint

    try:
        config.check_explanations()
    except ParameterError as exc:
        raise ExportError(str(exc), exc.parameter) from exc
    if config.condition not in CONDITION_CHOICES:
        raise ExportError(f"condition {config.condition!r} is not one of "
                          f"{', '.join(CONDITION_CHOICES)}", "condition")
    _check_base_url(config.image_base_url)
    for name, value, low in (("n_tasks", config.n_tasks, 1), ("dpi", config.dpi, 72),
                             ("cell_pixels", config.cell_pixels, 1),
                             ("head", config.head, 0), ("n_samples", config.n_samples, 0)):
        if value < low:
            raise ExportError(f"{name} must be at least {low}, got {value}", name)
    check_runtimes(config)
    code = config.prolific_completion_code
    if code is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", code):
        raise ExportError(f"prolific_completion_code {code!r} must be the code Prolific shows "
                          "(letters, digits, '_' or '-', at most 64)", "prolific_completion_code")
    if config.tutorial:
        try:
            tutorial_settings(config).check()
        except TutorialError as exc:
            raise ExportError(str(exc), exc.parameter) from exc
    if config.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", config.device):
        raise ExportError(f"device {config.device!r} must be cpu, cuda or cuda:N", "device")
    if config.device is not None and config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExportError(f"device {config.device}: CUDA is not available here; use "
                              "cpu", "device")
    if config.dataset_dir is not None and not Path(config.dataset_dir).is_dir():
        raise ExportError(f"dataset_dir {config.dataset_dir}: folder not found", "dataset_dir")
    try:
        checkpoint = find_checkpoint(config.run_dir)
    except RunError as exc:
        raise ExportError(f"run_dir: {exc}", "run_dir") from exc
    try:
        check_writable(config.destination)
    except BundleError as exc:
        raise ExportError(f"output: {exc}", "output") from exc
    return checkpoint


def check_runtimes(config: ExportConfig) -> None:
    """Check ``runtimes`` and ``jspsych_dir`` (the pinned files, by version and hash).

    Raises:
        ExportError: an unknown or repeated runtime, none at all, ``jspsych_dir``
            without the ``jspsych`` runtime, or a ``jspsych_dir`` without the pinned files.
    """
    from dubfiv.study.jspsych.packages import JsPsychPackageError, check_local

    runtimes = tuple(config.runtimes)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if not runtimes or unknown or len(set(runtimes)) != len(runtimes):
        raise ExportError(f"runtimes {','.join(runtimes) or '(none)'}: give one or more of "
                          f"{', '.join(RUNTIMES)}, each once", "runtimes")
    if config.jspsych_dir is None:
        return
    if "jspsych" not in runtimes:
        raise ExportError(f"jspsych_dir {config.jspsych_dir}: only used with the jspsych "
                          "runtime (`runtimes`)", "jspsych_dir")
    try:
        check_local(config.jspsych_dir)
    except JsPsychPackageError as exc:
        raise ExportError(str(exc), exc.parameter) from exc


def tutorial_settings(config: ExportConfig, color_maps: tuple[str, str] | None = None
                       ) -> TutorialSettings:
    device = "auto" if config.device is None else (
        "cpu" if config.device == "cpu" else "gpu")
    obj_map, bg_map = color_maps or ("coolwarm", "coolwarm")
    return TutorialSettings(resolution=config.tutorial_resolution,
                            samples=config.tutorial_samples, device=device,
                            obj_color_map=obj_map, bg_color_map=bg_map,
                            n_checks=config.comprehension_checks)


