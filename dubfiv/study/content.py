"""The content of a user study: a data model the exporter fills in.

A :class:`Study` holds everything a participant sees -- consent text, one
:class:`Condition` per explanation technique (``baseline``, ``inn``,
``concepts``) made of :class:`Page` objects with :class:`StudyImage` figures,
the attribute-relevance questions (:class:`Attribute`, with the ground truth
where it is known), the prediction tasks (:class:`PredictionTask`) and the end
text. The format writers (:mod:`dubfiv.study.qsf.writer`,
:mod:`dubfiv.study.build.preview`) and the results reader
(:mod:`dubfiv.study.results.analysis`) only read this model.

Image paths are POSIX paths relative to the study folder (``images/a.png``);
the study is saved as ``study.json`` in that folder (:meth:`Study.save`).
Model logits are raw logits of the linear head (``logit > 0`` predicts
``class_names[1]``, Stretchy; Two4Two labels peaky 0, stretchy 1).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from dubfiv.errors import DubfivError
from dubfiv.files import atomic_write_text

__all__ = [
    "CONDITION_KEYS",
    "DEFAULT_TITLE",
    "EARLY_END_REASONS",
    "STUDY_JSON",
    "Attribute",
    "CheckQuestion",
    "Condition",
    "GridLayout",
    "Page",
    "PredictionTask",
    "Study",
    "StudyError",
    "StudyImage",
    "consent_with_duration",
    "default_attention_checks",
    "default_attributes",
]

STUDY_JSON = "study.json"
FORMAT_VERSION = 1
#: The survey title participants see by default (:attr:`Study.title`): says nothing of the
#: study's conditions or its internal name.
DEFAULT_TITLE = "A study on how a computer sorts images"
#: The conditions of the paper's study (others are allowed, with the same key rules).
CONDITION_KEYS = ("baseline", "inn", "concepts")
_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class StudyError(DubfivError, ValueError):
    """A study description is inconsistent or cannot be read."""


def _check_keys(data: Mapping[str, Any], cls: type, where: str) -> None:
    if not isinstance(data, Mapping):
        raise StudyError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    required = {
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - set(data))
    if missing:
        raise StudyError(f"{where}: missing key(s) {missing}")


@dataclasses.dataclass
class StudyImage:
    """One image file of the study.

    ``path`` is relative to the study folder (POSIX, no ``..``); ``width`` and
    ``height`` are the file's size in pixels (``None`` if unknown).
    """

    path: str
    caption: str = ""
    alt: str = ""
    width: int | None = None
    height: int | None = None

    @classmethod
    def from_file(cls, folder: str | os.PathLike[str], path: str, caption: str = "",
                  alt: str = "") -> StudyImage:
        """Describe ``folder/path``, reading its pixel size with PIL."""
        from PIL import Image

        full = Path(folder) / path
        try:
            with Image.open(full) as im:
                width, height = im.size
        except (OSError, ValueError) as exc:
            raise StudyError(f"cannot read image {full}: {exc}") from exc
        return cls(path=path, caption=caption, alt=alt or caption, width=width, height=height)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "image") -> StudyImage:
        _check_keys(data, cls, where)
        return cls(**data)


@dataclasses.dataclass
class GridLayout:
    """Images of a page laid out row-major in ``rows`` x ``cols`` cells.

    ``col_labels`` are e.g. the logit bins of the baseline grid, ``row_labels``
    e.g. the source image of an interpolation row; either may be empty.
    """

    rows: int
    cols: int
    row_labels: list[str] = dataclasses.field(default_factory=list)
    col_labels: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "grid") -> GridLayout:
        _check_keys(data, cls, where)
        return cls(**data)


@dataclasses.dataclass
class Page:
    """One page of a condition's explanation: a title, HTML text and images."""

    title: str
    text: str = ""
    images: list[StudyImage] = dataclasses.field(default_factory=list)
    grid: GridLayout | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "page") -> Page:
        _check_keys(data, cls, where)
        grid = data.get("grid")
        return cls(
            title=data["title"], text=data.get("text", ""),
            images=[StudyImage.from_dict(d, f"{where}.images[{i}]")
                    for i, d in enumerate(data.get("images", []))],
            grid=None if grid is None else GridLayout.from_dict(grid, f"{where}.grid"),
        )


@dataclasses.dataclass
class Condition:
    """One explanation technique; each participant sees exactly one condition."""

    key: str
    title: str
    intro: str = ""
    pages: list[Page] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "condition") -> Condition:
        _check_keys(data, cls, where)
        return cls(
            key=data["key"], title=data["title"], intro=data.get("intro", ""),
            pages=[Page.from_dict(d, f"{where}.pages[{i}]")
                   for i, d in enumerate(data.get("pages", []))],
        )


@dataclasses.dataclass
class Attribute:
    """An attribute participants judge as relevant or irrelevant to the model.

    ``parameters`` are the Two4Two scene parameters it stands for; ``relevant``
    is the ground truth (``None``: unknown).
    """

    key: str
    label: str
    parameters: list[str] = dataclasses.field(default_factory=list)
    relevant: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "attribute") -> Attribute:
        _check_keys(data, cls, where)
        return cls(**data)


def default_attributes() -> list[Attribute]:
    """The seven attributes of the paper's study, ground truth unknown."""
    return [
        Attribute("arm_position", "legs / arm position", ["arm_position"]),
        Attribute("obj_color", "object colour", ["obj_color"]),
        Attribute("bg_color", "background colour", ["bg_color"]),
        Attribute("spherical", "spherical / cubic shape", ["spherical"]),
        Attribute("rotation", "rotation",
                  ["obj_rotation_roll", "obj_rotation_pitch", "obj_rotation_yaw"]),
        Attribute("bending", "bending", ["bending"]),
        Attribute("position", "position", ["position_x", "position_y"]),
    ]


@dataclasses.dataclass
class PredictionTask:
    """Show ``image``, ask which class the model will predict.

    ``model_logit`` is the head's logit for the image, ``true_label`` the
    image's class name (one of :attr:`Study.class_names`).
    """

    key: str
    image: StudyImage
    model_logit: float
    true_label: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "task") -> PredictionTask:
        _check_keys(data, cls, where)
        return cls(key=data["key"], image=StudyImage.from_dict(data["image"], f"{where}.image"),
                   model_logit=float(data["model_logit"]), true_label=data["true_label"])


@dataclasses.dataclass
class CheckQuestion:
    """A single-choice question with one right answer that screens participants.

    ``kind`` is ``"attention"`` (an instructional attention check placed inside
    the survey's questions) or ``"comprehension"`` (a question on the tutorial).
    ``tag`` is its export tag (the responses CSV column), ``correct`` the
    1-based index of the right choice in ``choices`` (the value Qualtrics
    records for it). A participant who answers any check wrongly is excluded
    from the analysis; a failed comprehension check also ends the survey.
    """

    tag: str
    kind: str
    text: str
    choices: list[str]
    correct: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "check") -> CheckQuestion:
        _check_keys(data, cls, where)
        return cls(**data)


def default_attention_checks() -> list[CheckQuestion]:
    """Two instructional attention checks: the instruction sits inside the question text.

    The survey puts the first between the two matrices of the attribute page and
    the second among the prediction tasks (:func:`dubfiv.study.layout.attention_slots`).
    """
    return [
        CheckQuestion(
            "attention_1", "attention",
            "<p>How did you decide on your answers above? People often answer questions "
            "like this without reading them to the end. To show that you read this one, "
            "please ignore the question and choose <b>None of these</b>.</p>",
            ["I looked at the explanation again", "I answered from memory", "I guessed",
             "None of these"], 4),
        CheckQuestion(
            "attention_2", "attention",
            "<p>Which colour do you think suits the animals best? This question is not about "
            "the model. To show that you are reading the instructions, please choose "
            "<b>orange</b>, whatever your opinion.</p>",
            ["blue", "green", "orange", "purple", "I have no opinion"], 3),
    ]


def consent_with_duration(minutes: int, prolific: bool = False, tutorial: bool = True,
                          attention: bool = True) -> str:
    """The consent text naming the estimated duration, the device, the tutorial and checks."""
    parts = []
    if tutorial:
        parts.append("First a short tutorial shows what the images look like, with a few "
                     "questions on it; if an answer is wrong, the study ends early.")
    if attention:
        parts.append("Some questions check that you read the instructions.")
    if prolific:
        parts.append("At the end you are sent back to Prolific with the completion code.")
    return (
        "<p>This study is part of a research project on explanations of image classifiers. "
        f"It takes about <b>{minutes} minutes</b>. Participation is voluntary and anonymous; "
        "you may stop at any time.</p>"
        "<p>Please take part on a <b>desktop or laptop computer</b> with a screen at least "
        "1024 pixels wide: the study shows rows of images that are too small on a phone or "
        "tablet.</p>"
        + (f"<p>{' '.join(parts)}</p>" if parts else ""))


_DEFAULT_CONSENT = (
    "<p>This study is part of a research project on explanations of image "
    "classifiers. Participation is voluntary and anonymous; you may stop at any "
    "time.</p>"
)
#: Why a survey can end early (:meth:`Study.early_end_text`).
EARLY_END_REASONS = ("declined", "device", "comprehension")


@dataclasses.dataclass
class Study:
    """A whole study; JSON-serialisable via :meth:`to_dict` / :meth:`from_dict`.

    ``name`` is the researcher's internal name; participants see ``title``.
    """

    name: str
    conditions: list[Condition]
    attributes: list[Attribute] = dataclasses.field(default_factory=default_attributes)
    tasks: list[PredictionTask] = dataclasses.field(default_factory=list)
    consent_text: str = _DEFAULT_CONSENT
    consent_agree: str = "I agree to take part in this study."
    consent_decline: str = "I do not agree."
    end_text: str = "<p>Thank you for taking part!</p>"
    image_base_url: str = ""
    class_names: list[str] = dataclasses.field(default_factory=lambda: ["Peaky", "Stretchy"])
    relevance_question: str = (
        "Does the model use the following attributes for its prediction?"
    )
    relevance_answers: list[str] = dataclasses.field(
        default_factory=lambda: ["relevant", "irrelevant"])
    confidence_question: str = "How confident are you in each of your answers above?"
    confidence_answers: list[str] = dataclasses.field(default_factory=lambda: [
        "not confident at all", "slightly confident", "moderately confident",
        "very confident", "completely confident"])
    prediction_question: str = "Which class will the model predict?"
    checks: list[CheckQuestion] = dataclasses.field(default_factory=list)
    seed: int = 0
    format_version: int = FORMAT_VERSION
    public_dir: str = ""
    """Folder (relative to the study folder) that is hosted; every image lies under it
    and its URL is ``image_base_url/<path below public_dir>``. Empty: the whole
    study folder is hosted (image URL = ``image_base_url/<path>``)."""
    tutorial_intro: str = ""
    """HTML of the tutorial's first page (shown after consent, before the condition)."""
    tutorial: list[Page] = dataclasses.field(default_factory=list)
    """The tutorial's pages, e.g. one row of rendered images per attribute."""
    comprehension_page: Page | None = None
    """The page (text and images) above the comprehension checks (``checks`` of kind
    ``comprehension``); those are asked on the same survey page, after the tutorial."""
    device_question: str = (
        "This study needs a <b>desktop or laptop computer</b> (the images are too small on "
        "a phone or tablet). Which device are you using?")
    """Asked on the consent page; ``device_choices[0]`` is the accepted answer, any
    other one ends the survey (:meth:`early_end_text` ``"device"``). Export tag
    ``device``. Empty ``device_choices``: not asked."""
    device_choices: list[str] = dataclasses.field(default_factory=lambda: [
        "a desktop or laptop computer", "a tablet", "a phone"])
    prolific_completion_code: str | None = None
    """Prolific study: record PROLIFIC_PID, STUDY_ID, SESSION_ID from the URL and
    redirect to Prolific's completion URL with this code at the end."""
    estimated_minutes: int | None = None
    """Estimated minutes to complete (:mod:`dubfiv.study.build.duration`), named in the consent."""
    title: str = DEFAULT_TITLE
    """The title participants see (the browser tab of the survey, Qualtrics' "Survey
    title"); neutral on purpose. :attr:`name` is the researcher's internal name
    (Qualtrics' project list, records) and is never shown to participants."""

    # ------------------------------------------------------------------ helpers

    def model_prediction(self, task: PredictionTask) -> str:
        """The class the model predicts for a task (``logit > 0`` -> ``class_names[1]``)."""
        return self.class_names[1] if task.model_logit > 0 else self.class_names[0]

    def images(self) -> list[StudyImage]:
        """Every image of the study, in the order they appear (duplicates kept)."""
        out = [img for p in self.tutorial_pages() for img in p.images]
        out += [img for c in self.conditions for p in c.pages for img in p.images]
        return out + [t.image for t in self.tasks]

    def tutorial_pages(self) -> list[Page]:
        """The tutorial's pages and, last, the comprehension page (if any)."""
        return self.tutorial + ([self.comprehension_page] if self.comprehension_page else [])

    def checks_of(self, kind: str) -> list[CheckQuestion]:
        """The checks of one kind (``attention`` or ``comprehension``), in order."""
        return [c for c in self.checks if c.kind == kind]

    def hosted_path(self, image: StudyImage) -> str:
        """The image's path below the hosted folder (:attr:`public_dir`)."""
        if not self.public_dir:
            return image.path
        prefix = self.public_dir.rstrip("/") + "/"
        if not image.path.startswith(prefix):
            raise StudyError(f"image {image.path!r} is not in the hosted folder "
                             f"{self.public_dir!r} (public_dir)")
        return image.path[len(prefix):]

    @property
    def prolific(self) -> bool:
        """Whether the survey is set up for Prolific (a completion code is set)."""
        return bool(self.prolific_completion_code)

    def early_end_text(self, reason: str) -> str:
        """HTML shown when the survey ends early, saying why (``reason`` in
        :data:`EARLY_END_REASONS`); on Prolific it asks to return the submission."""
        why = {
            "declined": "You chose not to take part, so the study ends here. Thank you for "
                        "your time.",
            "device": "This study needs a desktop or laptop computer, so it ends here. "
                      "Thank you for your time.",
            "comprehension": "One of your answers to the questions about the tutorial was "
                             "not correct. The study needs a good understanding of the "
                             "tutorial, so it ends here. Thank you for your time; your "
                             "answers have been recorded.",
        }
        if reason not in why:
            raise StudyError(f"unknown early-end reason {reason!r}; one of {EARLY_END_REASONS}")
        text = f"<p>{why[reason]}</p>"
        if self.prolific:
            text += ("<p><b>Please return your submission on Prolific</b> (click "
                     "&ldquo;Stop without completing&rdquo; or &ldquo;Return "
                     "submission&rdquo;): you will not get a completion code.</p>")
        return text

    def condition(self, key: str) -> Condition:
        for cond in self.conditions:
            if cond.key == key:
                return cond
        raise StudyError(f"no condition {key!r}; have {[c.key for c in self.conditions]}")

    # ------------------------------------------------------------------ checks

    def validate(self, folder: str | os.PathLike[str] | None = None) -> list[str]:
        """Problems of the study (empty if none); with ``folder``, also check the files."""
        problems: list[str] = []

        def unique(keys: list[str], what: str) -> None:
            seen: set[str] = set()
            for key in keys:
                if not _KEY_RE.match(key):
                    problems.append(f"{what} key {key!r} must match {_KEY_RE.pattern}")
                if key in seen:
                    problems.append(f"duplicate {what} key {key!r}")
                seen.add(key)

        if not self.conditions:
            problems.append("a study needs at least one condition")
        unique([c.key for c in self.conditions], "condition")
        unique([a.key for a in self.attributes], "attribute")
        unique([t.key for t in self.tasks], "task")
        unique([c.tag for c in self.checks], "check")
        for chk in self.checks:
            if chk.kind not in ("attention", "comprehension"):
                problems.append(f"check {chk.tag!r}: kind must be 'attention' or "
                                f"'comprehension', got {chk.kind!r}")
            if not 1 <= chk.correct <= len(chk.choices):
                problems.append(f"check {chk.tag!r}: correct={chk.correct} is not a 1-based "
                                f"index into its {len(chk.choices)} choices")
        if len(self.class_names) != 2 or len(set(self.class_names)) != 2:
            problems.append(f"class_names must be two distinct names, got {self.class_names}")
        if len(self.relevance_answers) != 2:
            problems.append("relevance_answers must be [relevant, irrelevant]")
        if len(self.confidence_answers) < 2:
            problems.append("confidence_answers needs at least two points")
        for task in self.tasks:
            if task.true_label not in self.class_names:
                problems.append(f"task {task.key!r}: true_label {task.true_label!r} "
                                f"is not one of {self.class_names}")
            if task.model_logit != task.model_logit:
                problems.append(f"task {task.key!r}: model_logit is NaN")
        if self.device_choices and len(self.device_choices) < 2:
            problems.append("device_choices needs the accepted answer and at least one other")
        code = self.prolific_completion_code
        if code is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", code):
            problems.append(f"prolific_completion_code {code!r} must be letters, digits, '_' "
                            "or '-' (as Prolific shows it)")
        if self.comprehension_page is not None and not self.checks_of("comprehension"):
            problems.append("a comprehension_page needs checks of kind 'comprehension'")
        if self.public_dir:
            pure_dir = PurePosixPath(self.public_dir)
            if pure_dir.is_absolute() or ".." in pure_dir.parts or "\\" in self.public_dir:
                problems.append(f"public_dir {self.public_dir!r} must be a relative folder")
        paged = [(f"condition {c.key!r} page {i}", p) for c in self.conditions
                 for i, p in enumerate(c.pages)]
        paged += [(f"tutorial page {i}", p) for i, p in enumerate(self.tutorial_pages())]
        for where, page in paged:
            grid = page.grid
            if grid is None:
                continue
            if grid.rows * grid.cols != len(page.images):
                problems.append(f"{where}: grid {grid.rows}x{grid.cols} needs "
                                f"{grid.rows * grid.cols} images, has {len(page.images)}")
            if grid.row_labels and len(grid.row_labels) != grid.rows:
                problems.append(f"{where}: {len(grid.row_labels)} row labels for "
                                f"{grid.rows} rows")
            if grid.col_labels and len(grid.col_labels) != grid.cols:
                problems.append(f"{where}: {len(grid.col_labels)} column labels for "
                                f"{grid.cols} columns")
        prefix = self.public_dir.rstrip("/") + "/" if self.public_dir else ""
        for img in self.images():
            pure = PurePosixPath(img.path)
            if pure.is_absolute() or ".." in pure.parts or "\\" in img.path or not img.path:
                problems.append(f"image path {img.path!r} must be relative to the study "
                                "folder, with '/' and without '..'")
            elif prefix and not img.path.startswith(prefix):
                problems.append(f"image {img.path!r} is not in the hosted folder "
                                f"{self.public_dir!r}")
            elif folder is not None:
                problems.extend(_check_image_file(Path(folder), img))
        return problems

    def check(self, folder: str | os.PathLike[str] | None = None) -> None:
        """Raise :class:`StudyError` listing all problems of :meth:`validate`."""
        problems = self.validate(folder)
        if problems:
            raise StudyError("invalid study:\n  " + "\n  ".join(problems))

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = STUDY_JSON) -> Study:
        _check_keys(data, cls, where)
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise StudyError(f"{where}: format_version {version} is not supported "
                             f"(this library reads {FORMAT_VERSION})")
        kwargs = dict(data)
        kwargs["conditions"] = [Condition.from_dict(d, f"{where}: conditions[{i}]")
                                for i, d in enumerate(data["conditions"])]
        item_types: dict[str, Any] = {"attributes": Attribute, "tasks": PredictionTask,
                                      "checks": CheckQuestion, "tutorial": Page}
        for key, item in item_types.items():
            if key in data:
                kwargs[key] = [item.from_dict(d, f"{where}: {key}[{i}]")
                               for i, d in enumerate(data[key])]
        if data.get("comprehension_page") is not None:
            kwargs["comprehension_page"] = Page.from_dict(data["comprehension_page"],
                                                          f"{where}: comprehension_page")
        return cls(**kwargs)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/study.json`` (atomically) and return its path."""
        path = Path(folder) / STUDY_JSON
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Study:
        """Read ``folder/study.json``."""
        path = Path(folder) / STUDY_JSON
        if not path.is_file():
            raise StudyError(f"{path} not found: the study folder must be a whole folder "
                             "written by dubfiv_export_user_study (not its public/)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StudyError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data, str(path))


def _check_image_file(folder: Path, img: StudyImage) -> list[str]:
    from PIL import Image

    full = folder / img.path
    if not full.is_file():
        return [f"image {img.path!r} does not exist in {folder}"]
    try:
        with Image.open(full) as im:
            im.verify()
            size = im.size
    except (OSError, ValueError) as exc:
        return [f"image {full} is not a readable image: {exc}"]
    if img.width is not None and img.height is not None and (img.width, img.height) != size:
        return [f"image {img.path!r} is {size[0]}x{size[1]} pixels, the study says "
                f"{img.width}x{img.height}"]
    return []
