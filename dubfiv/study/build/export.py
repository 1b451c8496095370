"""Export a trained run as a ready-to-run user study (``dubfiv_export_user_study``).

:func:`export_user_study` turns a run directory into one folder::

    public/<hex>.png          every image a participant loads, neutrally named: the only
                              folder to put on a web server (IMAGE_BASE_URL/<hex>.png)
    public/index.html, dubfiv-study.js, experiment.json (, jspsych/...)
                              the jsPsych page (runtime ``jspsych``; dubfiv.study.jspsych)
    study.json                the study (dubfiv.study.content.Study)
    study.qsf                 the Qualtrics survey (runtime ``qualtrics``)
    index.html                researcher preview of the whole study (with the answers)
    README.md                 what the folder holds; what to host
    export.json               settings, run, data, ground truth, duration estimate, notes
    figures/<cond>.png        each condition's whole figure (print quality, labelled)
    records/<cond>.json       what each image shows (ids, logits, bins, scene parameters)
    records/task.json         attribute questions with their answers; prediction tasks
    records/tutorial.json     the tutorial's scenes and checks
    records/image_names.json  the private table: neutral name -> what the image is, and
                              the random secret the names are made with
    records/jatos_study_input.json
                              JATOS' study input (runtime ``jspsych``; the completion URL)
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dubfiv.errors import DubfivError
from dubfiv.explain.records import write_json
from dubfiv.files import atomic_write_text
from dubfiv.rundir import experiment_beside
from dubfiv.study.build.bundle import BundleError, build_atomically, write_manifest
from dubfiv.study.build.duration import Estimate, settle_consent
from dubfiv.study.build.export_config import (
    PLACEHOLDER_BASE_URL,
    ExportConfig,
    ExportError,
    ExportResult,
    preflight,
    tutorial_settings,
)
from dubfiv.study.build.material import (
    Material,
    MaterialError,
    RenderSettings,
    baseline_material,
    concepts_material,
    inn_material,
)
from dubfiv.study.build.names import NAMES_RECORD, PUBLIC_DIR, ImageNamer, read_secret
from dubfiv.study.build.preview import write_preview
from dubfiv.study.build.readme import readme_text
from dubfiv.study.build.task import answer_attributes, prediction_tasks, read_ground_truth
from dubfiv.study.build.tutorial import (
    Tutorial,
    TutorialError,
    build_tutorial,
)
from dubfiv.study.content import (
    Attribute,
    PredictionTask,
    Study,
    StudyError,
    default_attention_checks,
    default_attributes,
)
from dubfiv.study.jspsych.experiment import read_salt
from dubfiv.study.jspsych.packages import JsPsychPackageError
from dubfiv.study.jspsych.writer import write_jspsych
from dubfiv.study.qsf.reader import QsfError
from dubfiv.study.qsf.validate import validate_qsf
from dubfiv.study.qsf.writer import write_qsf
from two4two.errors import Two4TwoError

if TYPE_CHECKING:
    from dubfiv.analysis import Analysis

__all__ = [
    "EXPORT_JSON",
    "asked_attributes",
    "check_public_folder",
    "export_user_study",
]

EXPORT_JSON = "export.json"
README = "README.md"


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


def asked_attributes(attributes: Sequence[Attribute]) -> tuple[list[Attribute], list[str]]:
    """The attributes to ask about: those with a ground truth; all if none has one.

    Returns the asked attributes and the keys of those left out.
    """
    known = [a for a in attributes if a.relevant is not None]
    if not known:
        return list(attributes), []
    return known, [a.key for a in attributes if a.relevant is None]


def check_public_folder(folder: Path, study: Study, page: Sequence[str] = ()) -> None:
    """Raise :class:`ExportError` unless ``folder/public`` holds exactly the study's images,
    all PNGs whose names say nothing (16 hex digits), and the jsPsych ``page``'s files
    (paths below ``public/``, :func:`dubfiv.study.jspsych.writer.write_jspsych`), which
    must not reveal anything private (:func:`~dubfiv.study.jspsych.writer.hosted_leaks`)."""
    from dubfiv.study.jspsych.writer import PAGE_FILES, hosted_leaks

    public = Path(folder) / study.public_dir
    on_disk = sorted(p.relative_to(folder).as_posix() for p in public.rglob("*")
                     if not p.is_dir())
    page_paths = {f"{study.public_dir}/{rel}" for rel in page}
    wanted = sorted({img.path for img in study.images()} | page_paths)
    bad = [p for p in on_disk if p not in page_paths and not re.fullmatch(
        rf"{re.escape(study.public_dir)}/[0-9a-f]{{16}}\.png", p)]
    if on_disk != wanted or bad:
        extra = sorted(set(on_disk) - set(wanted))
        missing = sorted(set(wanted) - set(on_disk))
        raise ExportError(f"the hosted folder {public} is not just the neutral-named images "
                          f"(a bug): extra {extra[:3]}, missing {missing[:3]}, badly named "
                          f"{bad[:3]}")
    leaks = hosted_leaks(study, folder, [rel for rel in page if rel in PAGE_FILES],
                         _private_names(folder))
    if leaks:
        raise ExportError(f"the hosted folder {public} reveals what must stay private (a "
                          f"bug): {'; '.join(leaks[:3])}")


def _private_names(folder: Path) -> list[str]:
    """The image-name table's descriptive keys and its secret (what the hosted page's
    files must never show); empty without a readable table."""
    try:
        table = json.loads((Path(folder) / NAMES_RECORD).read_text(encoding="utf-8"))
        return [str(e["key"]) for e in table["images"]] + [str(table.get("secret") or "")]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return []


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


@dataclasses.dataclass
class _Export:
    """One export in progress: what every step reads, and the time each took."""

    config: ExportConfig
    analysis: Analysis
    settings: RenderSettings
    attributes: list[Attribute]
    ground_truth: dict[str, Any]  # where the verdicts came from (read_ground_truth)
    answers: dict[str, Any]  # per attribute, the verdicts behind its answer
    not_asked: list[str]  # attributes without a verdict
    notes: list[str]
    secret: bytes | None
    say: Callable[[str], None]
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def timed(self, step: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = work()
        self.seconds[step] = time.perf_counter() - start
        return result


def _notes(config: ExportConfig, ground_truth: dict[str, Any], left_out: list[str],
           secret: bytes | None) -> list[str]:
    """What the researcher should know about this export (printed, and in ``export.json``)."""
    notes = []
    if config.placeholder and "qualtrics" in config.runtimes:
        notes.append(f"images are referenced under the placeholder {PLACEHOLDER_BASE_URL}; "
                     "host the folder public/ and export again into the same folder (the "
                     "image names stay the same) with --image-base-url set to its address "
                     "(see docs/user_study.md)")
    if ground_truth["status"] != "read":
        notes.append(f"no ground truth ({ground_truth['status']}: {ground_truth['path']}); "
                     "all attributes are asked and their answers left open (run "
                     "dubfiv_ground_truth first)")
    elif left_out:
        notes.append(f"ground truth has no verdict for {', '.join(left_out)}; not asked")
    if config.prolific_completion_code is None:
        notes.append("no Prolific completion code: the survey neither reads Prolific's URL "
                     "parameters nor redirects to Prolific (--prolific-completion-code)")
    if secret is None and (config.destination / "manifest.json").is_file():
        notes.append("the earlier export in the output folder has no naming secret, so the "
                     "images got new names: upload public/ again")
    return notes


def _start(config: ExportConfig, say: Callable[[str], None]) -> _Export:
    """Load the run and its data, read the ground truth, choose the asked attributes."""
    start = time.perf_counter()
    say(f"loading {config.run_dir} and its data")
    analysis = _load(config)
    settings = RenderSettings(config.dpi, config.cell_pixels,
                              _class_names(analysis.label_attribute))
    verdicts, gt_info = read_ground_truth(config.run_dir)
    answered, gt_sources = answer_attributes(default_attributes(), verdicts)
    attributes, left_out = asked_attributes(answered)
    secret = read_secret(config.destination)
    export = _Export(config, analysis, settings, attributes, gt_info, gt_sources, left_out,
                     _notes(config, gt_info, left_out, secret), secret, say)
    export.seconds["load"] = time.perf_counter() - start
    return export


def _condition_material(export: _Export, key: str, folder: Path, namer: ImageNamer
                        ) -> Material:
    """The material of condition ``key`` (``baseline``, ``inn`` or ``concepts``)."""
    config, analysis, settings = export.config, export.analysis, export.settings
    export.say(f"condition {key}")
    if key == "baseline":
        return baseline_material(analysis, folder, config.rows, config.seed, settings, namer)
    if key == "inn":
        return inn_material(analysis, folder, config.rows, config.seed, config.p_hi, settings,
                            namer)
    return concepts_material(
        analysis, folder, config.seed, settings, config.concept_method, config.n_concepts,
        config.concepts_per_sign, config.concept_images, config.concept_fit_images,
        config.concept_eval_images, config.concept_resolution, namer)


def _tutorial(export: _Export, folder: Path, namer: ImageNamer) -> Tutorial | None:
    """The tutorial rendered with two4two, and its record; ``None`` without one."""
    config = export.config
    if not config.tutorial:
        return None
    tutorial = build_tutorial(folder, default_attributes(),
                              tutorial_settings(config, _infer_color_maps(export.analysis)),
                              export.settings, config.seed, namer, export.say)
    write_json(folder / "records" / "tutorial.json", tutorial.record)
    return tutorial


def _study(export: _Export, materials: list[Material], tasks: list[PredictionTask],
           tutorial: Tutorial | None) -> tuple[Study, Estimate]:
    """The :class:`Study` of the material, with the consent naming its duration."""
    config = export.config
    checks = list(tutorial.checks) if tutorial is not None else []
    if config.attention_checks:
        checks += default_attention_checks()
    study = Study(
        name=config.name or f"dubfiv study {Path(config.run_dir).absolute().name}",
        conditions=[m.condition for m in materials], attributes=export.attributes,
        tasks=tasks, image_base_url=config.image_base_url.rstrip("/"),
        class_names=list(export.settings.class_names), seed=config.seed, checks=checks,
        public_dir=PUBLIC_DIR, prolific_completion_code=config.prolific_completion_code)
    if tutorial is not None:
        study.tutorial_intro = tutorial.intro
        study.tutorial = tutorial.pages
        study.comprehension_page = tutorial.comprehension_page
    return study, settle_consent(study, tutorial is not None, config.attention_checks)


def _write_survey(folder: Path, study: Study, config: ExportConfig) -> None:
    """``study.json``, per runtime ``study.qsf`` (checked against the folder) and the
    jsPsych page in ``public/``, and ``index.html``; then the hosted folder is checked."""
    study.save(folder)
    if "qualtrics" in config.runtimes:
        qsf = write_qsf(folder / "study.qsf", study)
        problems = validate_qsf(qsf, folder / study.public_dir, study.image_base_url)
        if problems:
            raise ExportError("the survey failed its own check (a bug): " + "; ".join(problems))
    page: list[str] = []
    if "jspsych" in config.runtimes:
        try:
            page = write_jspsych(study, folder, config.jspsych_dir,
                                 read_salt(config.destination / study.public_dir))
        except JsPsychPackageError as exc:
            raise ExportError(str(exc), exc.parameter) from exc
    write_preview(study, folder)
    check_public_folder(folder, study, page)


def _export_record(export: _Export, study: Study, materials: list[Material],
                   duration: Estimate) -> dict[str, Any]:
    """``export.json``: the settings, the run and its data, notes, duration, files."""
    config = export.config
    summary = export.analysis.summary(print_summary=False)
    return {
        "run_dir": str(Path(config.run_dir).absolute()),
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(config).items()},
        "conditions": list(config.conditions),
        "class_names": list(export.settings.class_names),
        "model": {k: summary[k] for k in ("dataset", "head", "splits", "bins", "config_source")},
        "ground_truth": export.ground_truth, "notes": export.notes,
        "duration": duration.to_dict(), "hosted_folder": study.public_dir,
        "files": {m.condition.key: {"figure": m.figure, "record": m.record_path}
                  for m in materials},
    }


def _build(export: _Export, folder: Path, command_line: list[str], checkpoint: Path) -> Study:
    """Write the whole study into ``folder`` (the temporary folder of the atomic build)."""
    config = export.config
    namer = ImageNamer(export.secret)
    tutorial = export.timed("tutorial", lambda: _tutorial(export, folder, namer))
    materials = [export.timed(key, lambda key=key: _condition_material(export, key, folder,
                                                                       namer))
                 for key in config.conditions]
    start = time.perf_counter()
    export.say("task material")
    tasks, task_record = prediction_tasks(export.analysis, folder, config.n_tasks, config.seed,
                                          export.settings, namer)
    study, duration = _study(export, materials, tasks, tutorial)
    namer.write(folder)
    write_json(folder / "records" / "task.json", {
        "attribute_question": study.relevance_question, "ground_truth": export.ground_truth,
        "attributes": export.answers, "asked": [a.key for a in study.attributes],
        "not_asked": export.not_asked, "prediction": task_record})
    export.say(f"{' and '.join(config.runtimes)} runtime, index.html")
    _write_survey(folder, study, config)
    atomic_write_text(folder / README, readme_text(study, config.run_dir, config.image_base_url,
                                                   config.placeholder, duration.minutes,
                                                   config.runtimes))
    atomic_write_text(folder / EXPORT_JSON, json.dumps(
        _export_record(export, study, materials, duration), indent=2, default=str) + "\n")
    export.seconds["task_and_survey"] = time.perf_counter() - start
    config_path = experiment_beside(checkpoint)
    write_manifest(folder, config.run_dir, config_path if config_path.is_file() else None,
                   command_line)
    return study


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
    from dubfiv.explain.baseline import BinTooSmallError

    start = time.perf_counter()
    checkpoint = preflight(config)
    export = _start(config, log or (lambda _msg: None))
    args = list(command_line) if command_line is not None else [
        "dubfiv.study.build.export.export_user_study", json.dumps(
            {k: str(v) for k, v in dataclasses.asdict(config).items()})]
    try:
        study = build_atomically(config.destination,
                                 lambda folder: _build(export, folder, args, checkpoint))
    except BundleError as exc:
        raise ExportError(f"output: {exc}", "output") from exc
    except (MaterialError, TutorialError) as exc:
        raise ExportError(str(exc), exc.parameter) from exc
    except BinTooSmallError as exc:
        raise ExportError(f"rows {config.rows}: {exc}", "rows") from exc
    except (StudyError, QsfError) as exc:
        raise ExportError(f"the study failed its own check (a bug): {exc}") from exc
    manifest = json.loads((config.destination / "manifest.json").read_text(encoding="utf-8"))
    export.seconds["total"] = time.perf_counter() - start
    return ExportResult(config.destination, study, manifest, export.seconds, export.notes)
