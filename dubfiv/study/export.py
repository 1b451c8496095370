"""Export a trained run as a ready-to-run user study (``dubfiv_export_user_study``).

:func:`export_user_study` turns a run directory into one folder::

    study.json            the study (dubfiv.study.content.Study)
    study.qsf             the Qualtrics survey (images at IMAGE_BASE_URL/<path>)
    index.html            offline preview of the whole study
    README.md             what the folder holds; how to host the images
    export.json           settings, run, data, ground-truth source, notes
    figures/<cond>.png    each condition's whole figure (print quality)
    images/<cond>/*.png   every cell as its own image (what the survey shows)
    images/tasks/*.png    the prediction-task images
    records/<cond>.json   what each image shows (ids, logits, bins, scene parameters)
    records/task.json     attribute questions with their answers; prediction tasks
    manifest.json         every file with its sha256, run, config, command line, version

Everything is checked before anything is written (:func:`preflight`: the
condition, the image base URL, the run and its head, the output folder), the
folder is built beside the destination and renamed into place
(:func:`dubfiv.study.bundle.build_atomically`), so a failed export leaves the
destination as it was and a rerun replaces an earlier export in one step.
``manifest.json`` is written last.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from dubfiv.errors import DubfivError
from dubfiv.explain.records import write_json
from dubfiv.study.bundle import BundleError, build_atomically, check_writable, write_manifest
from dubfiv.study.content import (
    CONDITION_KEYS,
    Study,
    StudyError,
    default_attributes,
    write_text_atomic,
)
from dubfiv.study.figures import (
    Material,
    MaterialError,
    RenderSettings,
    baseline_material,
    concepts_material,
    inn_material,
)
from dubfiv.study.preview import write_preview
from dubfiv.study.qualtrics import QsfError, validate_qsf, write_qsf
from dubfiv.study.task import answer_attributes, prediction_tasks, read_ground_truth

if TYPE_CHECKING:
    from dubfiv.analysis import Analysis

__all__ = [
    "CONDITION_CHOICES",
    "DEFAULT_OUTPUT_NAME",
    "PLACEHOLDER_BASE_URL",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "export_user_study",
    "preflight",
    "replace_image_urls",
]

PLACEHOLDER_BASE_URL = "https://example.org/dubfiv_study"
"""Default ``--image-base-url``: a placeholder to be replaced by where the images are hosted."""
CONDITION_CHOICES = ("all", *CONDITION_KEYS)
DEFAULT_OUTPUT_NAME = "user_study"
"""Default output: ``<run_dir>/user_study``."""
EXPORT_JSON = "export.json"
README = "README.md"


class ExportError(DubfivError, ValueError):
    """The export cannot run as asked; the message names the flag or path and the fix."""


@dataclasses.dataclass
class ExportConfig:
    """What to export and how (the CLI's flags in parentheses).

    Attributes:
        run_dir: the run directory (``--model``).
        output: the study folder (``--output``; default ``<run_dir>/user_study``).
        condition: ``all`` or one of ``baseline``, ``inn``, ``concepts`` (``--condition``).
        image_base_url: http(s) URL the images will be hosted under, keeping the
            folder layout (``--image-base-url``).
        seed: seed of every random draw (``--seed``).
        dataset_dir: folder holding the run's dataset (``--dataset_dir``).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``None`` (CUDA if available).
        rows: rows of the baseline grid and of the interpolations (``--rows``).
        n_tasks: prediction tasks (``--n_tasks``).
        head: index of the explained head.
        n_samples: images sampled per split for the explanations (0: all).
        p_hi: percentile of |logit| of the outer interpolation targets.
        concept_method, n_concepts, concepts_per_sign, concept_images,
        concept_fit_images, concept_eval_images, concept_resolution: see
            :meth:`dubfiv.analysis.Analysis.concepts` (resolution ``None``: 8, else 4).
        dpi, cell_pixels: PNG resolution (:class:`~dubfiv.study.figures.RenderSettings`).
        batch_size: images per forward pass.
        cache: use the run's analysis cache (``<run_dir>/analysis_cache``).
        progress: progress bars and step messages.
        name: the survey's name (default ``dubfiv study <run name>``).
    """

    run_dir: Path
    output: Path | None = None
    condition: str = "all"
    image_base_url: str = PLACEHOLDER_BASE_URL
    seed: int = 0
    dataset_dir: Path | None = None
    device: str | None = None
    rows: int = 6
    n_tasks: int = 10
    head: int = 0
    n_samples: int = 3000
    p_hi: float = 90.0
    concept_method: str = "nmf"
    n_concepts: int = 8
    concepts_per_sign: int = 2
    concept_images: int = 6
    concept_fit_images: int = 1000
    concept_eval_images: int = 1000
    concept_resolution: int | None = None
    dpi: int = 300
    cell_pixels: int = 256
    batch_size: int = 32
    cache: bool = True
    progress: bool = True
    name: str | None = None

    @property
    def conditions(self) -> tuple[str, ...]:
        return CONDITION_KEYS if self.condition == "all" else (self.condition,)

    @property
    def destination(self) -> Path:
        out = self.output if self.output is not None else Path(self.run_dir) / DEFAULT_OUTPUT_NAME
        return Path(out).absolute()


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
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ExportError(f"--image-base-url {url!r} must be an http(s) URL such as "
                          "https://user.github.io/my-study (where the exported folder will be "
                          "hosted)")
    if any(ch.isspace() or ch in '"<>\\' for ch in url):
        raise ExportError(f"--image-base-url {url!r} contains spaces, quotes or angle "
                          "brackets; percent-encode them (a space is %20)")
    if parsed.query or parsed.fragment:
        raise ExportError(f"--image-base-url {url!r} must not have a query or fragment: image "
                          "paths are appended to it")


def preflight(config: ExportConfig) -> Path:
    """Check everything that can be checked without loading the model; return the checkpoint.

    Raises:
        ExportError: a bad flag value, a missing run or checkpoint, or an output
            folder that cannot be written (the message names the flag and path).
    """
    from dubfiv.runs import RunError, find_checkpoint

    if config.concept_method not in ("nmf", "pca"):
        raise ExportError(f"--concept_method {config.concept_method!r} must be nmf or pca")
    if config.condition not in CONDITION_CHOICES:
        raise ExportError(f"--condition {config.condition!r} is not one of "
                          f"{', '.join(CONDITION_CHOICES)}")
    _check_base_url(config.image_base_url)
    for flag, value, low in (("--rows", config.rows, 1), ("--n_tasks", config.n_tasks, 1),
                             ("--dpi", config.dpi, 72), ("--n_concepts", config.n_concepts, 1),
                             ("--concept_images", config.concept_images, 1),
                             ("--concepts_per_sign", config.concepts_per_sign, 1),
                             ("--cell_pixels", config.cell_pixels, 1),
                             ("--head", config.head, 0), ("--n_samples", config.n_samples, 0)):
        if value < low:
            raise ExportError(f"{flag} must be at least {low}, got {value}")
    if config.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", config.device):
        raise ExportError(f"--device {config.device!r} must be cpu, cuda or cuda:N")
    if config.device is not None and config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ExportError(f"--device {config.device}: CUDA is not available here; use "
                              "--device cpu")
    if config.dataset_dir is not None and not Path(config.dataset_dir).is_dir():
        raise ExportError(f"--dataset_dir {config.dataset_dir}: folder not found")
    try:
        checkpoint = find_checkpoint(config.run_dir)
    except RunError as exc:
        raise ExportError(f"--model: {exc}") from exc
    try:
        check_writable(config.destination)
    except BundleError as exc:
        raise ExportError(f"--output: {exc}") from exc
    return checkpoint


def _load(config: ExportConfig) -> Analysis:
    """The run's :class:`~dubfiv.analysis.Analysis` (after checking it has the head)."""
    from dubfiv.analysis import Analysis, AnalysisError
    from dubfiv.cli._oneline import user_errors
    from dubfiv.runs import load_run, resolve_device

    try:
        run = load_run(config.run_dir, device=resolve_device(config.device))
    except user_errors() as exc:
        raise ExportError(f"--model: {exc}") from exc
    if not run.heads:
        raise ExportError(f"--model {config.run_dir}: the run has no head (no [[classifiers]] "
                          "in its checkpoint), so there is no prediction to explain; train it "
                          "with a [[classifiers]] table")
    if config.head >= len(run.heads):
        raise ExportError(f"--head {config.head}: the run has {len(run.heads)} head(s)")
    try:
        return Analysis.from_run(
            run, dataset_dir=config.dataset_dir,
            n_samples=config.n_samples, seed=config.seed, head=config.head,
            batch_size=config.batch_size, cache=config.cache, progress=config.progress)
    except AnalysisError as exc:
        raise ExportError(f"--dataset_dir: {exc}") from exc
    except user_errors() as exc:
        raise ExportError(f"--model/--dataset_dir: {exc}") from exc


def _class_names(label_attribute: str) -> tuple[str, str]:
    if label_attribute in ("obj_name", "label"):
        from two4two.scene_parameters import OBJ_NAMES

        return (OBJ_NAMES[0].capitalize(), OBJ_NAMES[1].capitalize())
    return (f"{label_attribute} 0", f"{label_attribute} 1")


# ---------------------------------------------------------------------- the export


def _readme(study: Study, config: ExportConfig, placeholder: bool) -> str:
    warning = (
        f"\n**The images are referenced under the placeholder `{config.image_base_url}`.** "
        "Host this folder somewhere and export again with `--image-base-url` set to its "
        "address before importing `study.qsf` into Qualtrics.\n" if placeholder else "")
    conditions = ", ".join(f"`{c.key}`" for c in study.conditions)
    return f"""# {study.name}

Exported by `dubfiv_export_user_study` from the run `{Path(config.run_dir).absolute()}`.
Conditions: {conditions}; {len(study.attributes)} attribute questions;
{len(study.tasks)} prediction tasks.
{warning}
- `index.html` -- open it in a browser to preview the whole study offline.
- `study.qsf` -- import it into Qualtrics ("Create project" > "Survey" > "Import a QSF
  file"). Every image is referenced as `{config.image_base_url}/<path in this folder>`,
  e.g. `{config.image_base_url}/images/baseline/row1_bin1.png`: upload this folder (at
  least `images/`) to a static web host that keeps the folder layout (GitHub Pages, an
  S3 bucket, a university web server).
- `figures/` -- each condition's whole figure at print quality; `images/` -- the single
  images the survey shows; `records/` -- JSON records of what every image shows, the
  ground truth of the attribute questions and the prediction tasks.
- `manifest.json` -- every file with its sha256, the run, its config and the command.

After the survey ran, export the responses from Qualtrics as CSV and run
`dubfiv_study_results --responses RESPONSES.csv --study THIS_FOLDER`.
See `docs/user_study.md` in the dubfiv repository for details.
"""


def export_user_study(config: ExportConfig, command_line: Sequence[str] | None = None,
                      log: Callable[[str], None] | None = None) -> ExportResult:
    """Export the study of ``config`` (see the module docstring).

    Args:
        config: what to export.
        command_line: recorded in the manifest (default: a Python call).
        log: receives one line per step (e.g. ``print``); ``None``: silent.

    Raises:
        ExportError: bad input; nothing was written at the destination.
    """
    say = log or (lambda _msg: None)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    checkpoint = preflight(config)
    say(f"loading {config.run_dir} and its data")
    analysis = _load(config)
    seconds["load"] = time.perf_counter() - start
    settings = RenderSettings(config.dpi, config.cell_pixels,
                              _class_names(analysis.label_attribute))
    verdicts, gt_info = read_ground_truth(config.run_dir)
    attributes, gt_sources = answer_attributes(default_attributes(), verdicts)
    notes = []
    placeholder = config.image_base_url.rstrip("/") == PLACEHOLDER_BASE_URL
    if placeholder:
        notes.append(f"images are referenced under the placeholder {PLACEHOLDER_BASE_URL}; "
                     "host the study folder and export again with --image-base-url set to "
                     "its address (see docs/user_study.md)")
    if gt_info["status"] != "read":
        notes.append(f"no ground truth ({gt_info['status']}: {gt_info['path']}); the "
                     "attribute answers are left open (run dubfiv_ground_truth first)")
    elif any(a.relevant is None for a in attributes):
        open_keys = [a.key for a in attributes if a.relevant is None]
        notes.append(f"ground truth has no verdict for {', '.join(open_keys)}; left open")
    config_path = checkpoint.parent / "experiment.toml"
    args = list(command_line) if command_line is not None else [
        "dubfiv.study.export.export_user_study", json.dumps(
            {k: str(v) for k, v in dataclasses.asdict(config).items()})]

    def build(folder: Path) -> Study:
        materials: list[Material] = []
        for key in config.conditions:
            t0 = time.perf_counter()
            say(f"condition {key}")
            if key == "baseline":
                materials.append(baseline_material(analysis, folder, config.rows,
                                                   config.seed, settings))
            elif key == "inn":
                materials.append(inn_material(analysis, folder, config.rows, config.seed,
                                              config.p_hi, settings))
            else:
                materials.append(concepts_material(
                    analysis, folder, config.seed, settings, config.concept_method,
                    config.n_concepts, config.concepts_per_sign, config.concept_images,
                    config.concept_fit_images, config.concept_eval_images,
                    config.concept_resolution))
            seconds[key] = time.perf_counter() - t0
        t0 = time.perf_counter()
        say("task material")
        tasks, task_record = prediction_tasks(analysis, folder, config.n_tasks, config.seed,
                                              settings)
        study = Study(
            name=config.name or f"dubfiv study {Path(config.run_dir).absolute().name}",
            conditions=[m.condition for m in materials], attributes=attributes, tasks=tasks,
            image_base_url=config.image_base_url.rstrip("/"),
            class_names=list(settings.class_names), seed=config.seed)
        write_json(folder / "records" / "task.json", {
            "attribute_question": study.relevance_question, "ground_truth": gt_info,
            "attributes": gt_sources, "prediction": task_record})
        study.save(folder)
        say("study.qsf, index.html")
        qsf = write_qsf(folder / "study.qsf", study)
        problems = validate_qsf(qsf, folder, study.image_base_url)
        if problems:
            raise ExportError("the survey failed its own check (a bug): " + "; ".join(problems))
        write_preview(study, folder)
        write_text_atomic(folder / README, _readme(study, config, placeholder))
        summary = analysis.summary(print_summary=False)
        write_text_atomic(folder / EXPORT_JSON, json.dumps({
            "run_dir": str(Path(config.run_dir).absolute()),
            "config": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in dataclasses.asdict(config).items()},
            "conditions": list(config.conditions), "class_names": list(settings.class_names),
            "model": {k: summary[k] for k in ("dataset", "head", "splits", "bins",
                                              "config_source")},
            "ground_truth": gt_info, "notes": notes,
            "files": {m.condition.key: {"figure": m.figure, "record": m.record_path}
                      for m in materials},
        }, indent=2, default=str) + "\n")
        seconds["task_and_survey"] = time.perf_counter() - t0
        write_manifest(folder, config.run_dir, config_path if config_path.is_file() else None,
                       args)
        return study

    from dubfiv.explain.baseline import BinTooSmallError

    try:
        study = build_atomically(config.destination, build)
    except BundleError as exc:
        raise ExportError(f"--output: {exc}") from exc
    except MaterialError as exc:
        raise ExportError(str(exc)) from exc
    except BinTooSmallError as exc:
        raise ExportError(f"--rows {config.rows}: {exc}") from exc
    except (StudyError, QsfError) as exc:
        raise ExportError(f"the study failed its own check (a bug): {exc}") from exc
    manifest = json.loads((config.destination / "manifest.json").read_text(encoding="utf-8"))
    seconds["total"] = time.perf_counter() - start
    return ExportResult(config.destination, study, manifest, seconds, notes)


# ---------------------------------------------------------------------- URLs


def replace_image_urls(qsf: Mapping[str, Any], url_for: Mapping[str, str] | Callable[[str], str]
                       ) -> dict[str, Any]:
    """A copy of a survey with every ``<img src="URL">`` replaced.

    ``url_for`` maps an old URL to the new one (a dict, e.g. built from the
    image library's URLs of each uploaded file, or a function). With a dict,
    every image URL of the survey must be in it (:class:`ExportError` lists the
    missing ones), so no image is left pointing to the old host.
    """
    from dubfiv.study.qualtrics import parse_qsf

    urls = parse_qsf(qsf).image_urls
    if isinstance(url_for, Mapping):
        missing = [u for u in urls if u not in url_for]
        if missing:
            raise ExportError(f"no new URL for {len(missing)} image(s), e.g. {missing[0]}")
        mapping = dict(url_for)
    else:
        mapping = {u: url_for(u) for u in urls}
    out = json.loads(json.dumps(qsf))
    pattern = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*["'])([^"']*)(["'])""", re.IGNORECASE)

    def swap(match: re.Match[str]) -> str:
        import html

        old = html.unescape(match.group(2))
        new = mapping.get(old, old)
        return match.group(1) + html.escape(new, quote=True) + match.group(3)

    for element in out["SurveyElements"]:
        payload = element.get("Payload")
        if element.get("Element") == "SQ" and isinstance(payload, dict):
            payload["QuestionText"] = pattern.sub(swap, str(payload.get("QuestionText", "")))
    return out
