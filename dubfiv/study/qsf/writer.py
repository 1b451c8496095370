"""Write a :class:`Study` as a Qualtrics survey file (``.qsf``).

Reading and validation live in :mod:`dubfiv.study.qsf.reader`, the response
columns in :mod:`dubfiv.study.qsf.columns`. The .qsf facts this module relies
on are written up in ``docs/qualtrics.md``.

The survey (the pages follow :mod:`dubfiv.study.layout`)::

    Flow (Root)
      EmbeddedData   PROLIFIC_PID, STUDY_ID, SESSION_ID from the URL (Prolific only)
      Block   consent            (the Default block, one page: consent text, MC "consent",
                                  MC "device")
      Branch  consent choice 2 selected       -> Block end_declined, EndSurvey (screened)
      Branch  device choice 1 not selected    -> Block end_device, EndSurvey (screened)
      Block   tutorial           (intro, one page per tutorial page, then the comprehension
                                  page: its text and images + one MC per comprehension check)
      Branch  per check: its correct choice not selected -> Block end_<tag>, EndSurvey
                                 (screened)
      BlockRandomizer SubSet=1 EvenPresentation=true
        Group "condition <key>": EmbeddedData condition=<key>; Standard block of <key>
        ... one Group per condition
      Standard relevance         (one page: per condition the explanation again, shown only
                                  to that condition (display logic on the embedded field
                                  condition); Matrix "relevance" (rows randomised), the first
                                  attention check, Matrix "confidence" (rows randomised))
      Standard prediction        (one MC "predict_<task>" per page; the other attention
                                  checks on pages of their own between them)
      Standard end               (end text)
      EndSurvey                  (Prolific: redirect to the completion URL with the code)

The early ends show a page saying why (``Study.early_end_text``; on Prolific:
"please return your submission") before the survey ends, so the answer that
ended it stays in the data; they flag the response ``Screened`` so that Qualtrics
does not count it as complete. Condition blocks hold one DB question per page
(``<key>_intro``, ``<key>_page1``, ...) separated by page breaks; images are
``<img src="BASE/PATH">`` with ``PATH`` the image's path below the hosted folder
(``Study.hosted_path``), URL-quoted. Every question carries ``NextChoiceId`` and
``NextAnswerId`` and ``GradingData``; the blocks are a list; the elements
``SCO``, ``PROJ`` and ``STAT``, the survey options every export has, display logic
without ``_HiddenExpression`` and ASCII JSON are as in Qualtrics' own exports.
``SurveyEntry.SurveyDescription`` is :data:`~dubfiv.study.qsf.reader.WRITER_MARK`,
by which the reader knows a survey of ours and checks it strictly.

Response columns of Qualtrics' CSV export (:func:`dubfiv.study.qsf.columns.response_layout`): the MC
questions are one column named by their DataExportTag (``consent``,
``device``, each check's tag, ``predict_<task key>``), the matrices one column
per row named ``<tag>_<row>`` with ``row`` the 1-based position of the
attribute in ``study.attributes`` (``relevance_1``, ``confidence_1``, ...,
whatever order a participant saw them in), the condition is the embedded-data
column ``condition``, the Prolific ids the columns ``PROLIFIC_PID``,
``STUDY_ID``, ``SESSION_ID``. Values are the choice numbers (numeric export)
or the choice texts (choice-text export).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import os
import re
import string
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from dubfiv.files import atomic_write_text
from dubfiv.study.content import CheckQuestion, Study, StudyImage
from dubfiv.study.layout import attention_slots
from dubfiv.study.page_html import display_width, img_tag, render_page_html
from dubfiv.study.qsf.reader import (
    CONDITION_FIELD,
    PROLIFIC_FIELDS,
    TAG_CONFIDENCE,
    TAG_CONSENT,
    TAG_DEVICE,
    TAG_END,
    TAG_RELEVANCE,
    WRITER_MARK,
    QsfError,
)

__all__ = [
    "PROLIFIC_COMPLETION_URL",
    "build_qsf",
    "check_base_url",
    "image_url",
    "prolific_completion_url",
    "write_qsf",
]

NULL_DATE = "0000-00-00 00:00:00"
PROLIFIC_COMPLETION_URL = "https://app.prolific.com/submissions/complete?cc="
"""Prolific's completion URL; the study's completion code is appended."""
_ALNUM = string.digits + string.ascii_letters


def _ident(prefix: str, *parts: object) -> str:
    """``prefix`` + 15 base-62 characters derived from ``parts`` (deterministic)."""
    value = int.from_bytes(hashlib.sha256(repr(parts).encode()).digest(), "big")
    chars = []
    for _ in range(15):
        value, rem = divmod(value, 62)
        chars.append(_ALNUM[rem])
    return prefix + "".join(chars)


def _plain(text: str, limit: int = 100) -> str:
    """Plain text of an HTML fragment (for SecondaryAttribute / QuestionDescription)."""
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def prolific_completion_url(code: str) -> str:
    """Where Prolific participants are sent at the end: the completion URL with ``code``."""
    return PROLIFIC_COMPLETION_URL + quote(code, safe="")


def image_url(base_url: str, image: StudyImage, study: Study | None = None) -> str:
    """``BASE/PATH`` with the path (below ``study.public_dir``, if given) URL-quoted."""
    path = study.hosted_path(image) if study is not None else image.path
    return base_url.rstrip("/") + "/" + quote(path, safe="/")


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, if image paths can be appended to it.

    It must be an http(s) URL with a host, without spaces, quotes or angle
    brackets (they would break the ``<img src="...">`` of the survey's HTML) and
    without a query or fragment (the image paths are appended to it).

    Raises:
        QsfError: the URL is not usable; the message starts with ``image_base_url``.
    """
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise QsfError(f"image_base_url {base_url!r} must be an http(s) URL such as "
                       "https://user.github.io/my-study (where the study's folder public/ "
                       "is hosted)")
    if any(ch.isspace() or ch in '"<>\\' for ch in base_url):
        raise QsfError(f"image_base_url {base_url!r} contains spaces, quotes or angle "
                       "brackets; percent-encode them (a space is %20)")
    if parsed.query or parsed.fragment:
        raise QsfError(f"image_base_url {base_url!r} must not have a query or fragment: "
                       "image names are appended to it")
    return base_url.rstrip("/")


# ---------------------------------------------------------------------- building


def _selected(qid: str, choice: int, operator: str, description: str) -> dict[str, Any]:
    """Branch/display logic: choice ``choice`` of ``qid`` is ``Selected``/``NotSelected``."""
    locator = f"q://{qid}/SelectableChoice/{choice}"
    return {"0": {"0": {
        "LogicType": "Question", "QuestionID": qid, "QuestionIsInLoop": "no",
        "ChoiceLocator": locator, "Operator": operator, "QuestionIDFromLocator": qid,
        "LeftOperand": locator, "Type": "Expression", "Description": description},
        "Type": "If"}, "Type": "BooleanExpression"}


def _field_equals(field: str, value: str) -> dict[str, Any]:
    """Display logic: the embedded-data ``field`` equals ``value``."""
    return {"0": {"0": {
        "LogicType": "EmbeddedField", "LeftOperand": field, "Operator": "EqualTo",
        "RightOperand": value, "Type": "Expression",
        "Description": f"If {field} Is Equal to {value}"}, "Type": "If"},
        "Type": "BooleanExpression", "inPage": False}


_RANDOMIZE_ALL = {"Advanced": None, "TotalRandSubset": "", "Type": "All"}
_SCREENED = {"Advanced": "true", "SurveyTermination": "DefaultMessage",
             "ResponseFlag": "Screened"}
"""An early end's options: the default end message, the response flagged screened-out."""
_FORCE = {"Settings": {"ForceResponse": "ON", "ForceResponseType": "ON", "Type": "None"}}


class _Builder:
    """Accumulates questions, blocks and flow ids while a survey is built."""

    def __init__(self, study: Study, survey_id: str, base_url: str) -> None:
        self.study = study
        self.survey_id = survey_id
        self.base_url = base_url
        self.questions: list[dict[str, Any]] = []
        self.tags: set[str] = set()
        self.flow_count = 1  # FL_1 is the root
        self.blocks: list[dict[str, Any]] = []

    def src(self, img: StudyImage) -> str:
        """The URL of a hosted image."""
        return image_url(self.base_url, img, self.study)

    def flow_id(self) -> str:
        """The next unused ``FL_<n>``."""
        self.flow_count += 1
        return f"FL_{self.flow_count}"

    def block_id(self, *parts: object) -> str:
        """A block id derived from the study and ``parts``."""
        return _ident("BL_", self.study.name, self.study.seed, *parts)

    def question(self, tag: str, text: str, qtype: str, selector: str,
                 sub_selector: str | None = None, **extra: Any) -> str:
        """Add a question (the next ``QID<n>``); ``extra`` overrides payload keys."""
        if tag in self.tags:
            raise QsfError(f"two questions would share the DataExportTag {tag!r}; "
                           "rename a condition, task or check key")
        self.tags.add(tag)
        qid = f"QID{len(self.questions) + 1}"
        payload: dict[str, Any] = {
            "QuestionID": qid, "DataExportTag": tag, "QuestionText": text,
            "QuestionDescription": _plain(text), "QuestionType": qtype,
            "Selector": selector, "Configuration": {"QuestionDescriptionOption": "UseText"},
            "DataVisibility": {"Private": False, "Hidden": False},
            "Validation": {"Settings": {"Type": "None"}}, "Language": [],
            "ChoiceOrder": [], "DefaultChoices": False, "GradingData": [],
            "NextChoiceId": 4, "NextAnswerId": 1,  # what Qualtrics gives a new text block
        }
        if sub_selector is not None:
            payload["SubSelector"] = sub_selector
        payload.update(extra)
        self.questions.append(payload)
        return qid

    def text(self, tag: str, text: str, **extra: Any) -> str:
        """A descriptive-text question (``DB``/``TB``)."""
        return self.question(tag, text, "DB", "TB", **extra)

    def choice_question(self, tag: str, text: str, labels: list[str]) -> str:
        """A required single-answer multiple-choice question."""
        return self.question(
            tag, text, "MC", "SAVR", "TX",
            Choices={str(i + 1): {"Display": lab} for i, lab in enumerate(labels)},
            ChoiceOrder=[str(i + 1) for i in range(len(labels))],
            NextChoiceId=len(labels) + 1, NextAnswerId=1, Validation=_FORCE)

    def check_question(self, chk: CheckQuestion) -> str:
        """A comprehension or attention check."""
        return self.choice_question(chk.tag, chk.text, list(chk.choices))

    def matrix_question(self, tag: str, text: str, rows: list[str], cols: list[str],
                        randomize: bool = True) -> str:
        """A required Likert matrix, one answer per row (rows shuffled if ``randomize``)."""
        extra: dict[str, Any] = {"Randomization": dict(_RANDOMIZE_ALL)} if randomize else {}
        return self.question(
            tag, text, "Matrix", "Likert", "SingleAnswer",
            Configuration={"QuestionDescriptionOption": "UseText", "TextPosition": "inline",
                           "ChoiceColumnWidth": 25, "RepeatHeaders": "none",
                           "WhiteSpace": "OFF", "MobileFirst": True},
            Choices={str(i + 1): {"Display": lab} for i, lab in enumerate(rows)},
            ChoiceOrder=[str(i + 1) for i in range(len(rows))],
            Answers={str(i + 1): {"Display": lab} for i, lab in enumerate(cols)},
            AnswerOrder=[i + 1 for i in range(len(cols))],
            ChoiceDataExportTags=False,
            NextChoiceId=len(rows) + 1, NextAnswerId=len(cols) + 1, Validation=_FORCE,
            **extra)

    def block(self, kind: str, description: str, block_id: str, pages: list[list[str]]
              ) -> str:
        """Add a block whose pages hold the given questions; return its id."""
        elements: list[dict[str, str]] = []
        for i, page in enumerate(pages):
            if i:
                elements.append({"Type": "Page Break"})
            elements.extend({"Type": "Question", "QuestionID": qid} for qid in page)
        self.blocks.append({
            "Type": kind, "Description": description, "ID": block_id,
            "BlockElements": elements,
            "Options": {"BlockLocking": "false", "RandomizeQuestions": "false",
                        "BlockVisibility": "Expanded"}})
        return block_id

    def standard(self, block_id: str) -> dict[str, Any]:
        """The flow item that shows a Standard block."""
        return {"Type": "Standard", "ID": block_id, "FlowID": self.flow_id(), "Autofill": []}

    def early_end(self, reason: str, tag: str, logic: dict[str, Any], description: str
                  ) -> dict[str, Any]:
        """A branch that shows why the survey ends (a page of its own), then ends it."""
        qid = self.text(tag, self.study.early_end_text(reason))
        bid = self.block("Standard", f"End: {description}", self.block_id("end", tag), [[qid]])
        return {"Type": "Branch", "FlowID": self.flow_id(), "Description": description,
                "BranchLogic": logic,
                "Flow": [self.standard(bid), {"Type": "EndSurvey", "FlowID": self.flow_id(),
                                              "EndingType": "Advanced",
                                              "Options": dict(_SCREENED)}]}


def _embedded(field: str, value: str | None = None) -> dict[str, Any]:
    """An embedded-data field: set to ``value`` (Custom), or read from the URL (Recipient)."""
    item: dict[str, Any] = {"Description": field, "Type": "Custom" if value is not None
                            else "Recipient", "Field": field, "VariableType": "String",
                            "DataVisibility": [], "AnalyzeText": False}
    if value is not None:
        item["Value"] = value
    return item


# ---------------------------------------------------------------------- the steps


def _prolific_fields(b: _Builder) -> list[dict[str, Any]]:
    """On Prolific: the flow item reading the participant's ids from the URL."""
    if not b.study.prolific:
        return []
    return [{"Type": "EmbeddedData", "FlowID": b.flow_id(),
             "EmbeddedData": [_embedded(f) for f in PROLIFIC_FIELDS]}]


def _consent(b: _Builder) -> list[dict[str, Any]]:
    """The consent page (the Default block) and the early ends for declining or a phone."""
    study = b.study
    page = [b.text("consent_text", study.consent_text),
            b.choice_question(TAG_CONSENT, "<p>Do you agree to take part?</p>",
                              [study.consent_agree, study.consent_decline])]
    consent = page[1]
    device = None
    if study.device_choices:
        device = b.choice_question(TAG_DEVICE, f"<p>{study.device_question}</p>",
                                   list(study.device_choices))
        page.append(device)
    consent_block = b.block("Default", "Consent", b.block_id("consent"), [page])
    flow = [{"Type": "Block", "ID": consent_block, "FlowID": b.flow_id(), "Autofill": []}]
    flow.append(b.early_end("declined", "end_declined", _selected(
        consent, 2, "Selected", f"If {_plain(study.consent_decline)} Is Selected"),
        "Consent declined"))
    if device is not None:
        flow.append(b.early_end("device", "end_device", _selected(
            device, 1, "NotSelected", f"If {_plain(study.device_choices[0])} Is Not Selected"),
            "Not a desktop or laptop computer"))
    return flow


def _tutorial(b: _Builder) -> list[dict[str, Any]]:
    """The tutorial block (if any) and an early end per failed comprehension check."""
    study = b.study
    if not study.tutorial and study.comprehension_page is None:
        return []
    pages = [[b.text("tutorial_intro", f"<h2>Tutorial</h2>\n{study.tutorial_intro}")]]
    for i, tpage in enumerate(study.tutorial):
        pages.append([b.text(f"tutorial_page{i + 1}", render_page_html(tpage, b.src))])
    check_ids: list[tuple[CheckQuestion, str]] = []
    if study.comprehension_page is not None:
        last = [b.text("tutorial_check", render_page_html(study.comprehension_page, b.src))]
        for chk in study.checks_of("comprehension"):
            qid = b.check_question(chk)
            check_ids.append((chk, qid))
            last.append(qid)
        pages.append(last)
    flow = [b.standard(b.block("Standard", "Tutorial", b.block_id("tutorial"), pages))]
    for chk, qid in check_ids:
        flow.append(b.early_end("comprehension", f"end_{chk.tag}", _selected(
            qid, chk.correct, "NotSelected",
            f"If {_plain(chk.choices[chk.correct - 1])} Is Not Selected"),
            f"Comprehension check {chk.tag} failed"))
    return flow


def _condition_randomizer(b: _Builder) -> dict[str, Any]:
    """The randomizer assigning one condition: per condition its field and its block."""
    randomizer: dict[str, Any] = {"Type": "BlockRandomizer", "FlowID": b.flow_id(),
                                  "SubSet": 1, "EvenPresentation": True, "Flow": []}
    for cond in b.study.conditions:
        pages = [[b.text(f"{cond.key}_intro",
                         f"<h2>{html.escape(cond.title)}</h2>\n{cond.intro}")]]
        for i, cpage in enumerate(cond.pages):
            pages.append([b.text(f"{cond.key}_page{i + 1}", render_page_html(cpage, b.src))])
        bid = b.block("Standard", f"Condition {cond.key}: {cond.title}",
                      b.block_id("condition", cond.key), pages)
        randomizer["Flow"].append({
            "Type": "Group", "FlowID": b.flow_id(),
            "Description": f"condition {cond.key}: {cond.title}",
            "Flow": [{"Type": "EmbeddedData", "FlowID": b.flow_id(),
                      "EmbeddedData": [_embedded(CONDITION_FIELD, cond.key)]},
                     b.standard(bid)]})
    return randomizer


def _relevance(b: _Builder, on_attributes: list[CheckQuestion]) -> dict[str, Any]:
    """The attribute page: the explanation again (per condition), the matrices, a check."""
    study = b.study
    page = []
    for cond in study.conditions:
        recap = ("<h3>The explanation again, for reference</h3>\n"
                 + "\n".join(render_page_html(p, b.src, heading="h4") for p in cond.pages))
        page.append(b.text(f"{cond.key}_recap", recap,
                           DisplayLogic=_field_equals(CONDITION_FIELD, cond.key)))
    labels = [a.label for a in study.attributes]
    page.append(b.matrix_question(TAG_RELEVANCE, f"<p>{study.relevance_question}</p>", labels,
                                  list(study.relevance_answers)))
    page += [b.check_question(chk) for chk in on_attributes]
    page.append(b.matrix_question(TAG_CONFIDENCE, f"<p>{study.confidence_question}</p>",
                                  labels, list(study.confidence_answers)))
    return b.standard(b.block("Standard", "Attribute relevance",
                              b.block_id("shared", "relevance"), [page]))


def _prediction(b: _Builder, slots: dict[int, list[CheckQuestion]]) -> list[dict[str, Any]]:
    """The prediction tasks, one per page, with the attention checks of ``slots`` between."""
    study = b.study
    if not study.tasks:
        return []
    task_pages = []
    for i, task in enumerate(study.tasks):
        task_pages += [[b.check_question(chk)] for chk in slots.get(i, [])]
        alt = StudyImage(task.image.path, alt=f"Image {i + 1}", width=task.image.width,
                         height=task.image.height)
        text = (f"<p>{study.prediction_question}</p>\n"
                f"<p>{img_tag(alt, b.src(alt), display_width(alt))}</p>")
        task_pages.append([b.choice_question(f"predict_{task.key}", text,
                                             list(study.class_names))])
    return [b.standard(b.block("Standard", "Prediction tasks",
                               b.block_id("shared", "prediction"), task_pages))]


def _end(b: _Builder) -> list[dict[str, Any]]:
    """The end page and the end of the survey (on Prolific: the completion redirect)."""
    study = b.study
    page = b.standard(b.block("Standard", "End", b.block_id("shared", "end"),
                              [[b.text(TAG_END, study.end_text)]]))
    end: dict[str, Any] = {"Type": "EndSurvey", "FlowID": b.flow_id()}
    if study.prolific:
        end.update(EndingType="Advanced", Options={
            "Advanced": "true", "SurveyTermination": "Redirect",
            "EOSRedirectURL": prolific_completion_url(str(study.prolific_completion_code))})
    return [page, end]


def _ordered_blocks(b: _Builder) -> list[dict[str, Any]]:
    """The Default block first, then the others in the order they were made, Trash last."""
    blocks = [blk for blk in b.blocks if blk["Type"] == "Default"]
    blocks += [blk for blk in b.blocks if blk["Type"] != "Default"]
    blocks.append({"Type": "Trash", "Description": "Trash / Unused Questions",
                   "ID": b.block_id("trash"), "BlockElements": []})
    return blocks


def _skin() -> dict[str, Any]:
    """Qualtrics' base theme (*assumed*: an import gives the survey the account's brand)."""
    return {"SkinLibrary": "", "SkinType": "templated",
            "Skin": {"brandingId": None, "templateId": "*base", "overrides": None}}


def _survey_options(study: Study) -> dict[str, Any]:
    """The ``SO`` payload: no back button, no progress bar, the default end message, and
    the options every export of Qualtrics has (validation message, skin, scoring)."""
    return {
        "BackButton": "false", "SaveAndContinue": "true",
        "SurveyProtection": "PublicSurvey", "BallotBoxStuffingPrevention": "false",
        "NoIndex": "Yes", "SecureResponseFiles": "true", "SurveyExpiration": "None",
        "SurveyTermination": "DefaultMessage", "Header": "", "Footer": "",
        "ProgressBarDisplay": "None", "PartialData": "+1 week", "ValidationMessage": None,
        "PreviousButton": " ← ", "NextButton": " → ", "SurveyTitle": study.title,
        **_skin(), "NewScoring": 1}


def _envelope(b: _Builder, flow: list[dict[str, Any]], created: _dt.datetime
              ) -> dict[str, Any]:
    """The survey around the flow: its entry and elements (blocks, flow, options, ...)."""
    study, sid = b.study, b.survey_id
    stamp = created.strftime("%Y-%m-%d %H:%M:%S")
    root = {"Type": "Root", "FlowID": "FL_1", "Flow": flow,
            "Properties": {"Count": b.flow_count}}
    rs = _ident("RS_", study.name, study.seed, "responses")
    owner = _ident("UR_", study.name, study.seed, "owner")

    def element(kind: str, primary: str, secondary: str | None, payload: Any,
                tertiary: str | None = None) -> dict[str, Any]:
        return {"SurveyID": sid, "Element": kind, "PrimaryAttribute": primary,
                "SecondaryAttribute": secondary, "TertiaryAttribute": tertiary,
                "Payload": payload}

    elements = [
        element("BL", "Survey Blocks", None, _ordered_blocks(b)),
        element("FL", "Survey Flow", None, root),
        element("PROJ", "CORE", None, {"ProjectCategory": "CORE", "SchemaVersion": "1.1.0"},
                "1.1.0"),
        element("SO", "Survey Options", None, _survey_options(study)),
        element("SCO", "Scoring", None, {
            "ScoringCategories": [], "ScoringCategoryGroups": [],
            "ScoringSummaryCategory": None, "ScoringSummaryAfterQuestions": 0,
            "ScoringSummaryAfterSurvey": 0, "DefaultScoringCategory": None,
            "AutoScoringCategory": None}),
        element("STAT", "Survey Statistics", None, {"MobileCompatible": True,
                                                    "ID": "Survey Statistics"}),
    ]
    elements += [element("SQ", q["QuestionID"], _plain(q["QuestionText"]), q)
                 for q in b.questions]
    counter = max(int(q["QuestionID"][3:]) for q in b.questions)  # QID counter
    elements.append(element("QC", "Survey Question Count", str(counter), None))
    elements.append(element("RS", rs, "Default Response Set", None))
    entry = {
        "SurveyID": sid, "SurveyName": study.name, "SurveyDescription": WRITER_MARK,
        "SurveyOwnerID": owner, "SurveyBrandID": "", "DivisionID": None,
        "SurveyLanguage": "EN", "SurveyActiveResponseSet": rs, "SurveyStatus": "Inactive",
        "SurveyStartDate": NULL_DATE, "SurveyExpirationDate": NULL_DATE,
        "SurveyCreationDate": stamp, "CreatorID": owner, "LastModified": stamp,
        "LastAccessed": NULL_DATE, "LastActivated": NULL_DATE, "Deleted": None,
    }
    return {"SurveyEntry": entry, "SurveyElements": elements}


def build_qsf(study: Study, image_base_url: str | None = None,
              created: _dt.datetime | None = None) -> dict[str, Any]:
    """The survey of ``study`` as a .qsf dictionary (see the module docstring).

    ``image_base_url`` (default ``study.image_base_url``) prefixes every image
    path; ``created`` (default: now, UTC) is the creation date. IDs are
    deterministic in ``(study.name, study.seed)``.
    """
    problems = study.validate()
    if problems:
        raise QsfError("invalid study:\n  " + "\n  ".join(problems))
    base = check_base_url(image_base_url if image_base_url is not None
                           else study.image_base_url)
    b = _Builder(study, _ident("SV_", study.name, study.seed, "survey"), base)
    on_attributes, slots = attention_slots(study)
    flow = [*_prolific_fields(b), *_consent(b), *_tutorial(b), _condition_randomizer(b),
            _relevance(b, on_attributes), *_prediction(b, slots), *_end(b)]
    return _envelope(b, flow, created or _dt.datetime.now(_dt.UTC))


def write_qsf(path: str | os.PathLike[str], study: Study, image_base_url: str | None = None,
              created: _dt.datetime | None = None) -> dict[str, Any]:
    """Build the survey and write it to ``path`` (atomically); return the dictionary."""
    qsf = build_qsf(study, image_base_url, created)
    atomic_write_text(Path(path), json.dumps(qsf, indent=1, ensure_ascii=True) + "\n")
    return qsf
