"""The participant-facing content of a study as ``experiment.json`` (hosted in ``public/``).

The jsPsych page (``assets/dubfiv-study.js``) builds every page from this file.
It holds what participants see and nothing that gives an answer away:

* no condition keys: each condition is an *arm* under its opaque
  :func:`~dubfiv.study.jspsych.records.arm_id`, with its title, intro and pages;
* no logits, true labels or model predictions: a prediction task is its key and
  its image;
* no right answers of checks: an attention check is its question and choices; a
  comprehension check also carries :func:`~dubfiv.study.jspsych.records.check_hash`
  of its right choice under the export's random ``salt``, so the page can end
  the study at a wrong answer (this hides the answer, it does not make it secret:
  the choices are few);
* no Prolific completion code (the collector or JATOS' study input redirects);
* images by their path below ``public/`` (:meth:`Study.hosted_path`, URL-quoted),
  so the page loads them relative to itself.

Top-level fields (format ``dubfiv-jspsych/1``)::

    format, title, salt, prolific (bool: the page records Prolific's URL fields)
    consent      {text, question, choices: [agree, decline]}
    device       {question, choices} or null (choice 1 is the accepted answer)
    tutorial     {title, intro, pages: [page]} or null
    comprehension {page: page, checks: [check + hash]} or null
    arms         {arm id: {title, intro, pages: [page]}}  (in study order)
    attributes   {labels (study.attributes order), relevance: {question, choices},
                  confidence: {question, choices}}
    attention    {attributes: [check], before_task: [[check], ...] (one list per task)}
    tasks        [{key, image}]
    prediction   {question, choices: class_names}
    end_text, early_end {declined, device, comprehension}
    buttons      {next, finish}

A page is ``{title, text, images: [image], grid: {rows, cols, row_labels,
col_labels} or null}``; an image ``{src, alt, caption, width, height,
display_width}`` (``display_width`` in CSS px, as the survey shows it); a check
``{tag, text, choices}``. ``title``, captions, labels and choices are plain text;
``text``, ``intro``, questions and end texts are HTML.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dubfiv.study.content import EARLY_END_REASONS, CheckQuestion, Page, Study, StudyImage
from dubfiv.study.jspsych.records import EXPERIMENT_JSON, arm_id, check_hash
from dubfiv.study.layout import attention_slots
from dubfiv.study.page_html import display_width

__all__ = ["CONSENT_QUESTION", "FORMAT", "build_experiment", "new_salt", "read_salt"]

FORMAT = "dubfiv-jspsych/1"
CONSENT_QUESTION = "<p>Do you agree to take part?</p>"
"""The consent question (the survey's own wording)."""
BUTTONS = {"next": "Next", "finish": "Finish"}
_SALT_RE = re.compile(r"^[0-9a-f]{16}$")


def new_salt() -> str:
    """A random salt of the comprehension-check hashes (16 hex digits)."""
    return secrets.token_hex(8)


def read_salt(public: str | os.PathLike[str]) -> str | None:
    """The salt of an earlier export's ``experiment.json`` in the hosted folder ``public``,
    or ``None`` (none there, or unreadable): a re-export into the same folder keeps it,
    so the hosted page stays the same."""
    try:
        data = json.loads((Path(public) / EXPERIMENT_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    salt = data.get("salt") if isinstance(data, dict) else None
    return salt if isinstance(salt, str) and _SALT_RE.match(salt) else None


def _image(study: Study, img: StudyImage, cols: int = 1, neutral: str | None = None
           ) -> dict[str, Any]:
    """An image entry; ``neutral``: shown with this alt text and no caption (the
    prediction tasks: their own captions could name the class)."""
    return {"src": quote(study.hosted_path(img)),
            "alt": neutral if neutral is not None else (img.alt or img.caption),
            "caption": img.caption if neutral is None else "",
            "width": img.width, "height": img.height,
            "display_width": display_width(img, cols)}


def _page(study: Study, page: Page) -> dict[str, Any]:
    cols = page.grid.cols if page.grid is not None else 1
    grid = None if page.grid is None else {
        "rows": page.grid.rows, "cols": page.grid.cols,
        "row_labels": list(page.grid.row_labels), "col_labels": list(page.grid.col_labels)}
    return {"title": page.title, "text": page.text,
            "images": [_image(study, img, cols) for img in page.images], "grid": grid}


def _check(chk: CheckQuestion, salt: str | None = None) -> dict[str, Any]:
    """A check without its right answer; with ``salt``, the hash of the right choice."""
    out: dict[str, Any] = {"tag": chk.tag, "text": chk.text, "choices": list(chk.choices)}
    if salt is not None:
        out["hash"] = check_hash(salt, chk.tag, chk.correct)
    return out


def _question(question: str, choices: list[str]) -> dict[str, Any]:
    return {"question": question, "choices": list(choices)}


def _tutorial(study: Study) -> dict[str, Any] | None:
    if not study.tutorial and study.comprehension_page is None:
        return None
    return {"title": "Tutorial", "intro": study.tutorial_intro,
            "pages": [_page(study, p) for p in study.tutorial]}


def _comprehension(study: Study, salt: str) -> dict[str, Any] | None:
    if study.comprehension_page is None:
        return None
    return {"page": _page(study, study.comprehension_page),
            "checks": [_check(c, salt) for c in study.checks_of("comprehension")]}


def _attention(study: Study) -> dict[str, Any]:
    on_attributes, slots = attention_slots(study)
    return {"attributes": [_check(c) for c in on_attributes],
            "before_task": [[_check(c) for c in slots.get(i, [])]
                            for i in range(len(study.tasks))]}


def build_experiment(study: Study, salt: str) -> dict[str, Any]:
    """The content of ``experiment.json`` for ``study`` (see the module docstring).

    ``salt`` keys the comprehension-check hashes (:func:`new_salt`).
    """
    return {
        "format": FORMAT,
        "title": study.title,
        "salt": salt,
        "prolific": study.prolific,
        "consent": {"text": study.consent_text, "question": CONSENT_QUESTION,
                    "choices": [study.consent_agree, study.consent_decline]},
        "device": (_question(f"<p>{study.device_question}</p>", study.device_choices)
                   if study.device_choices else None),
        "tutorial": _tutorial(study),
        "comprehension": _comprehension(study, salt),
        "arms": {arm_id(study, c.key): {"title": c.title, "intro": c.intro,
                                        "pages": [_page(study, p) for p in c.pages]}
                 for c in study.conditions},
        "attributes": {
            "labels": [a.label for a in study.attributes],
            "relevance": _question(f"<p>{study.relevance_question}</p>",
                                   study.relevance_answers),
            "confidence": _question(f"<p>{study.confidence_question}</p>",
                                    study.confidence_answers)},
        "attention": _attention(study),
        "tasks": [{"key": t.key, "image": _image(study, t.image, neutral=f"Image {i + 1}")}
                  for i, t in enumerate(study.tasks)],
        "prediction": _question(f"<p>{study.prediction_question}</p>", study.class_names),
        "end_text": study.end_text,
        "early_end": {reason: study.early_end_text(reason) for reason in EARLY_END_REASONS},
        "buttons": dict(BUTTONS),
    }
