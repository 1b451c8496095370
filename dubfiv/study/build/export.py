"""Export a trained run as a ready-to-run user study (``dubfiv_export_user_study``).

:func:`export_user_study` turns a run directory into one folder::

    public/<hex>.png          every image a participant loads, neutrally named: the only
                              folder to put on a web server (IMAGE_BASE_URL/<hex>.png)
    study.json                the study (dubfiv.study.content.Study)
    study.qsf                 the Qualtrics survey
    index.html                researcher preview of the whole study (with the answers)
    README.md                 what the folder holds; what to host
    export.json               settings, run, data, ground truth, duration estimate, notes
    figures/<cond>.png        each condition's whole figure (print quality, labelled)
    records/<cond>.json       what each image shows (ids, logits, bins, scene parameters)
    records/task.json         attribute questions with their answers; prediction tasks
    records/tutorial.json     the tutorial's scenes and checks
    records/image_names.json  the private table: neutral name -> what the image is, and
                              the random secret the names are made with
    manifest.json             every file with its sha256, run, config, command line, version

The survey has a consent page (with the estimated duration and a device
question), a tutorial rendered with two4two (:mod:`dubfiv.study.build.tutorial`)
ending in comprehension checks, one randomly assigned condition, the attribute
questions with the explanation shown again above them (only the attributes
with a ground truth, when there is one), prediction tasks with an attention
check among them, and, with a Prolific completion code, Prolific's URL
parameters and completion redirect (:mod:`dubfiv.study.qsf.writer`).

Everything is checked before anything is written (:func:`preflight`: the
condition, the image base URL, the run and its head, the output folder), the
folder is built beside the destination and renamed into place
(:func:`dubfiv.study.build.bundle.build_atomically`), so a failed export leaves the
destination as it was and a rerun replaces an earlier export in one step.
``manifest.json`` is written last. Errors name the :class:`ExportConfig`
field (``ExportError.parameter``); the command maps it to its flag.

The image names are keyed by a random secret kept in ``records/`` (never
hosted); a re-export into the same folder reuses it, so the names stay the
same (:mod:`dubfiv.study.build.names`). Participants see a neutral survey title
(:attr:`~dubfiv.study.content.Study.title`), never the study's internal name.
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

from dubfiv.errors import DubfivError, ParameterError
from dubfiv.explain.records import write_json
from dubfiv.files import atomic_write_text
from dubfiv.rundir import experiment_beside
from dubfiv.study.build.bundle import BundleError, build_atomically, check_writable, write_manifest
from dubfiv.study.content import (
    CONDITION_KEYS,
    Attribute,
    Study,
    StudyError,
    consent_with_duration,
    default_attention_checks,
    default_attributes,
)
from dubfiv.study.build.duration import estimate
from dubfiv.study.build.material import (
    Material,
    MaterialError,
    RenderSettings,
    baseline_material,
    concepts_material,
    inn_material,
)
from dubfiv.study.build.names import PUBLIC_DIR, ImageNamer, read_secret
from dubfiv.study.build.preview import write_preview
from dubfiv.study.qsf.reader import QsfError, validate_qsf
from dubfiv.study.qsf.writer import write_qsf
from dubfiv.study.build.task import answer_attributes, prediction_tasks, read_ground_truth
from dubfiv.study.build.tutorial import TutorialError, TutorialSettings, build_tutorial
from two4two.errors import Two4TwoError

if TYPE_CHECKING:
    from dubfiv.analysis import Analysis

__all__ = [
    "CONDITION_CHOICES",
    "DEFAULT_OUTPUT_NAME",
    "PLACEHOLDER_BASE_URL",
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "asked_attributes",
    "check_public_folder",
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


class ExportError(ParameterError):
    """The export cannot run as asked; the message names the setting or path and the fix.

    ``parameter`` is the :class:`ExportConfig` field the message starts with (e.g.
    ``rows``), if any, so a command can name its own flag for it.
    """


@dataclasses.dataclass
class ExportConfig:
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
        seed: seed of every random draw (``--seed``).
        dataset_dir: folder holding the run's dataset.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``None`` (CUDA if available).
        rows: rows of the baseline grid and of the interpolations (``--rows``).
        n_tasks: prediction tasks (``--n_tasks``).
        head: index of the explained head.
        n_samples: images sampled per split for the explanations (0: all).
        p_hi: percentile of |logit| of the outer interpolation targets.
        concept_method, n_concepts, concepts_per_sign, concept_images,
        concept_fit_images, concept_eval_images, concept_resolution: see
            :meth:`dubfiv.analysis.Analysis.concepts` (resolution ``None``: 8, else 4).
        dpi, cell_pixels: PNG resolution (:class:`~dubfiv.study.build.material.RenderSettings`).
        batch_size: images per forward pass.
        cache: use the run's analysis cache (``<run_dir>/analysis_cache``).
        progress: progress bars and step messages.
        name: the survey's internal name, for the researcher only (records, README,
            Qualtrics' project list; default ``dubfiv study <run name>``); participants
            see :attr:`~dubfiv.study.content.Study.title` instead.
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
    prolific_completion_code: str | None = None
    tutorial: bool = True
    tutorial_resolution: int = 128
    tutorial_samples: int = 32
    comprehension_checks: int = 2
    attention_checks: bool = True

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
    param = "image_base_url"
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ExportError(f"image_base_url {url!r} must be an http(s) URL such as "
                          "https://user.github.io/my-study (where the folder public/ will be "
                          "hosted)", param)
    if any(ch.isspace() or ch in '"<>\\' for ch in url):
        raise ExportError(f"image_base_url {url!r} contains spaces, quotes or angle "
                          "brackets; percent-encode them (a space is %20)", param)
    if parsed.query or parsed.fragment:
        raise ExportError(f"image_base_url {url!r} must not have a query or fragment: image "
                          "names are appended to it", param)


def preflight(config: ExportConfig) -> Path:
    """Check everything that can be checked without loading the model; return the checkpoint.

    Raises:
        ExportError: a bad setting, a missing run or checkpoint, or an output
            folder that cannot be written (the message names the setting and path).
    """
    from dubfiv.runs import RunError, find_checkpoint

    if config.concept_method not in ("nmf", "pca"):
        raise ExportError(f"concept_method {config.concept_method!r} must be nmf or pca",
                          "concept_method")
    if config.condition not in CONDITION_CHOICES:
        raise ExportError(f"condition {config.condition!r} is not one of "
                          f"{', '.join(CONDITION_CHOICES)}", "condition")
    _check_base_url(config.image_base_url)
    for name, value, low in (("rows", config.rows, 1), ("n_tasks", config.n_tasks, 1),
                             ("dpi", config.dpi, 72), ("n_concepts", config.n_concepts, 1),
                             ("concept_images", config.concept_images, 1),
                             ("concepts_per_sign", config.concepts_per_sign, 1),
                             ("cell_pixels", config.cell_pixels, 1),
                             ("head", config.head, 0), ("n_samples", config.n_samples, 0)):
        if value < low:
            raise ExportError(f"{name} must be at least {low}, got {value}", name)
    code = config.prolific_completion_code
    if code is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", code):
        raise ExportError(f"prolific_completion_code {code!r} must be the code Prolific shows "
                          "(letters, digits, '_' or '-', at most 64)", "prolific_completion_code")
    if config.tutorial:
        try:
            _tutorial_settings(config).check()
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


def _tutorial_settings(config: ExportConfig, color_maps: tuple[str, str] | None = None
                       ) -> TutorialSettings:
    device = "auto" if config.device is None else (
        "cpu" if config.device == "cpu" else "gpu")
    obj_map, bg_map = color_maps or ("coolwarm", "coolwarm")
    return TutorialSettings(resolution=config.tutorial_resolution,
                            samples=config.tutorial_samples, device=device,
                            obj_color_map=obj_map, bg_color_map=bg_map,
                            n_checks=config.comprehension_checks)


def _load(config: ExportConfig) -> Analysis:
    """The run's :class:`~dubfiv.analysis.Analysis` (after checking it has the head)."""
    from dubfiv.analysis import Analysis, AnalysisError
    from dubfiv.runs import load_run, resolve_device

    try:
        run = load_run(config.run_dir, device=resolve_device(config.device))
    except (DubfivError, Two4TwoError) as exc:
        raise ExportError(f"run_dir: {exc}", "run_dir") from exc
    if not run.heads:
        raise ExportError(f"run_dir {config.run_dir}: the run has no head (no [[classifiers]] "
                          "in its checkpoint), so there is no prediction to explain; train it "
                          "with a [[classifiers]] table", "run_dir")
    if config.head >= len(run.heads):
        raise ExportError(f"head {config.head}: the run has {len(run.heads)} head(s)", "head")
    try:
        return Analysis.from_run(
            run, dataset_dir=config.dataset_dir,
            n_samples=config.n_samples, seed=config.seed, head=config.head,
            batch_size=config.batch_size, cache=config.cache, progress=config.progress)
    except AnalysisError as exc:
        raise ExportError(f"dataset_dir: {exc}", "dataset_dir") from exc
    except (DubfivError, Two4TwoError) as exc:
        raise ExportError(f"dataset_dir: {exc} (the run's data, from run_dir or dataset_dir)",
                          "dataset_dir") from exc


def _class_names(label_attribute: str) -> tuple[str, str]:
    if label_attribute in ("obj_name", "label"):
        from two4two.scene_parameters import OBJ_NAMES

        return (OBJ_NAMES[0].capitalize(), OBJ_NAMES[1].capitalize())
    return (f"{label_attribute} 0", f"{label_attribute} 1")


# ---------------------------------------------------------------------- the export


def _readme(study: Study, config: ExportConfig, placeholder: bool, minutes: int) -> str:
    warning = (
        f"\n**The images are referenced under the placeholder `{config.image_base_url}`.** "
        "Host the folder `public/` somewhere and export again into this folder (so the image "
        "names stay the same) with `--image-base-url` set to its address before importing "
        "`study.qsf` into Qualtrics.\n" if placeholder else "")
    conditions = ", ".join(f"`{c.key}`" for c in study.conditions)
    prolific = (f"Prolific: completion code `{study.prolific_completion_code}` (the survey "
                "reads PROLIFIC_PID, STUDY_ID and SESSION_ID from the URL and redirects to "
                "Prolific at the end).\n" if study.prolific else "")
    return f"""# {study.name}

Exported by `dubfiv_export_user_study` from the run `{Path(config.run_dir).absolute()}`.
Conditions: {conditions}; {len(study.attributes)} attribute questions;
{len(study.tasks)} prediction tasks; {len(study.tutorial)} tutorial pages;
{len(study.checks_of("comprehension"))} comprehension and
{len(study.checks_of("attention"))} attention checks; about {minutes} minutes.
{prolific}{warning}
## What to host

Only the folder **`public/`**: it holds every image a participant's browser loads, with
neutral names (`<16 hex digits>.png`), and nothing else. Upload its files to a static
HTTPS host (GitHub Pages, an S3 bucket, a university web server) so that
`{config.image_base_url}/<name>.png` serves them. **Do not host anything else of this
folder**: `records/`, `figures/`, `study.json` and `index.html` hold the answers (ground
truth, logits, labels, which image is which).

## The rest (private)

- `study.qsf` -- import it into Qualtrics ("Create project" > "Survey" > "Import a QSF
  file").
- `index.html` -- the researcher preview of the whole study, with the answers; open it in
  a browser.
- `figures/` -- each condition's whole figure at print quality; `records/` -- JSON records
  of what every image shows, the ground truth, the prediction tasks, the tutorial and
  `image_names.json`, the table from neutral names to what each image is.
- `study.json`, `export.json`, `manifest.json` -- the study, the export's settings and
  duration estimate, and every file with its sha256.

After the survey ran, export the responses from Qualtrics as CSV and run
`dubfiv_study_results --responses RESPONSES.csv --study THIS_FOLDER`.
See `docs/user_study.md` in the dubfiv repository for details.
"""


def asked_attributes(attributes: Sequence[Attribute]) -> tuple[list[Attribute], list[str]]:
    """The attributes to ask about: those with a ground truth; all if none has one.

    Returns the asked attributes and the keys of those left out.
    """
    known = [a for a in attributes if a.relevant is not None]
    if not known:
        return list(attributes), []
    return known, [a.key for a in attributes if a.relevant is None]


def check_public_folder(folder: Path, study: Study) -> None:
    """Raise :class:`ExportError` unless ``folder/public`` holds exactly the study's images,
    all PNGs whose names say nothing (16 hex digits)."""
    public = Path(folder) / study.public_dir
    on_disk = sorted(p.relative_to(folder).as_posix() for p in public.rglob("*")
                     if not p.is_dir())
    wanted = sorted({img.path for img in study.images()})
    bad = [p for p in on_disk if not re.fullmatch(rf"{re.escape(study.public_dir)}/"
                                                  r"[0-9a-f]{16}\.png", p)]
    if on_disk != wanted or bad:
        extra = sorted(set(on_disk) - set(wanted))
        missing = sorted(set(wanted) - set(on_disk))
        raise ExportError(f"the hosted folder {public} is not just the neutral-named images "
                          f"(a bug): extra {extra[:3]}, missing {missing[:3]}, badly named "
                          f"{bad[:3]}")


def _infer_color_maps(analysis: Analysis) -> tuple[str, str]:
    """The colour maps of the run's scenes (object, background), default ``coolwarm``."""
    from dubfiv.study.build.tutorial import infer_color_map

    try:
        params = getattr(analysis.open("validation"), "params", None)
    except (DubfivError, Two4TwoError, OSError, KeyError):
        params = None
    if not params:
        return "coolwarm", "coolwarm"
    scenes = list(params)[:100]
    return infer_color_map(scenes, "obj_color"), infer_color_map(scenes, "bg_color")


def export_user_study(config: ExportConfig, command_line: Sequence[str] | None = None,
                      log: Callable[[str], None] | None = None) -> ExportResult:
    """Export the study of ``config`` (see the module docstring).

    Args:
        config: what to export.
        command_line: recorded in the manifest (default: a Python call).
        log: receives one line per step (e.g. ``print``); ``None``: silent.

    Raises:
        ExportError: bad input; nothing was written at the destination.
        two4two.errors.Two4TwoError: rendering the tutorial failed (e.g. no ``bpy``);
            nothing was written at the destination.
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
    answered, gt_sources = answer_attributes(default_attributes(), verdicts)
    attributes, left_out = asked_attributes(answered)
    notes = []
    placeholder = config.image_base_url.rstrip("/") == PLACEHOLDER_BASE_URL
    if placeholder:
        notes.append(f"images are referenced under the placeholder {PLACEHOLDER_BASE_URL}; "
                     "host the folder public/ and export again into the same folder (the "
                     "image names stay the same) with --image-base-url set to its address "
                     "(see docs/user_study.md)")
    if gt_info["status"] != "read":
        notes.append(f"no ground truth ({gt_info['status']}: {gt_info['path']}); all "
                     "attributes are asked and their answers left open (run "
                     "dubfiv_ground_truth first)")
    elif left_out:
        notes.append(f"ground truth has no verdict for {', '.join(left_out)}; not asked")
    if config.prolific_completion_code is None:
        notes.append("no Prolific completion code: the survey neither reads Prolific's URL "
                     "parameters nor redirects to Prolific (--prolific-completion-code)")
    name = config.name or f"dubfiv study {Path(config.run_dir).absolute().name}"
    secret = read_secret(config.destination)
    if secret is None and (config.destination / "manifest.json").is_file():
        notes.append("the earlier export in the output folder has no naming secret (an "
                     "older version), so the images got new names: upload public/ again")
    config_path = experiment_beside(checkpoint)
    args = list(command_line) if command_line is not None else [
        "dubfiv.study.build.export.export_user_study", json.dumps(
            {k: str(v) for k, v in dataclasses.asdict(config).items()})]

    def build(folder: Path) -> Study:
        namer = ImageNamer(secret)
        tutorial = None
        if config.tutorial:
            t0 = time.perf_counter()
            tutorial = build_tutorial(folder, default_attributes(),
                                      _tutorial_settings(config, _infer_color_maps(analysis)),
                                      settings, config.seed, namer, say)
            write_json(folder / "records" / "tutorial.json", tutorial.record)
            seconds["tutorial"] = time.perf_counter() - t0
        materials: list[Material] = []
        for key in config.conditions:
            t0 = time.perf_counter()
            say(f"condition {key}")
            if key == "baseline":
                materials.append(baseline_material(analysis, folder, config.rows,
                                                   config.seed, settings, namer))
            elif key == "inn":
                materials.append(inn_material(analysis, folder, config.rows, config.seed,
                                              config.p_hi, settings, namer))
            else:
                materials.append(concepts_material(
                    analysis, folder, config.seed, settings, config.concept_method,
                    config.n_concepts, config.concepts_per_sign, config.concept_images,
                    config.concept_fit_images, config.concept_eval_images,
                    config.concept_resolution, namer))
            seconds[key] = time.perf_counter() - t0
        t0 = time.perf_counter()
        say("task material")
        tasks, task_record = prediction_tasks(analysis, folder, config.n_tasks, config.seed,
                                              settings, namer)
        checks = list(tutorial.checks) if tutorial is not None else []
        if config.attention_checks:
            checks += default_attention_checks()
        study = Study(
            name=name, conditions=[m.condition for m in materials], attributes=attributes,
            tasks=tasks, image_base_url=config.image_base_url.rstrip("/"),
            class_names=list(settings.class_names), seed=config.seed, checks=checks,
            public_dir=PUBLIC_DIR, prolific_completion_code=config.prolific_completion_code)
        if tutorial is not None:
            study.tutorial_intro = tutorial.intro
            study.tutorial = tutorial.pages
            study.comprehension_page = tutorial.comprehension_page
        duration = estimate(study)
        for _ in range(5):  # the consent's own words count too: settle on a fixed point
            study.consent_text = consent_with_duration(
                duration.minutes, study.prolific, tutorial is not None, config.attention_checks)
            previous, duration = duration.minutes, estimate(study)
            if duration.minutes == previous:
                break
        study.consent_text = consent_with_duration(
            duration.minutes, study.prolific, tutorial is not None, config.attention_checks)
        study.estimated_minutes = duration.minutes
        namer.write(folder)
        write_json(folder / "records" / "task.json", {
            "attribute_question": study.relevance_question, "ground_truth": gt_info,
            "attributes": gt_sources, "asked": [a.key for a in attributes],
            "not_asked": left_out, "prediction": task_record})
        study.save(folder)
        say("study.qsf, index.html")
        qsf = write_qsf(folder / "study.qsf", study)
        problems = validate_qsf(qsf, folder / study.public_dir, study.image_base_url)
        if problems:
            raise ExportError("the survey failed its own check (a bug): " + "; ".join(problems))
        write_preview(study, folder)
        check_public_folder(folder, study)
        atomic_write_text(folder / README, _readme(study, config, placeholder,
                                                   duration.minutes))
        summary = analysis.summary(print_summary=False)
        atomic_write_text(folder / EXPORT_JSON, json.dumps({
            "run_dir": str(Path(config.run_dir).absolute()),
            "config": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in dataclasses.asdict(config).items()},
            "conditions": list(config.conditions), "class_names": list(settings.class_names),
            "model": {k: summary[k] for k in ("dataset", "head", "splits", "bins",
                                              "config_source")},
            "ground_truth": gt_info, "notes": notes, "duration": duration.to_dict(),
            "hosted_folder": study.public_dir,
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
        raise ExportError(f"output: {exc}", "output") from exc
    except (MaterialError, TutorialError) as exc:
        raise ExportError(str(exc), exc.parameter) from exc
    except BinTooSmallError as exc:
        raise ExportError(f"rows {config.rows}: {exc}", "rows") from exc
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
    from dubfiv.study.qsf.reader import parse_qsf

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
