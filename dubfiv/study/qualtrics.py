"""Qualtrics survey files (``.qsf``): build from a :class:`Study`; read and validate.

Reading and validation live in :mod:`dubfiv.study.qsf_reader` and are re-exported here.

The survey (facts in ``shared/QUALTRICS.md``)::

    Flow (Root)
      Block   consent            (the Default block: consent text + MC "consent")
      Branch  if consent choice 2 ("decline") is selected -> EndSurvey
      BlockRandomizer SubSet=1 EvenPresentation=true
        Group "condition <key>": EmbeddedData condition=<key>; Standard block of <key>
        ... one Group per condition
      Standard relevance         (Matrix "relevance" + Matrix "confidence", one page)
      Standard prediction        (one MC "predict_<task>" per page; only if tasks exist)
      Standard end               (end text)
      EndSurvey

Condition blocks hold one DB question per page (``<key>_intro``,
``<key>_page1``, ...) separated by page breaks; images are ``<img
src="BASE/PATH">`` with ``PATH`` the image's path relative to the study
folder, URL-quoted.

Response columns of Qualtrics' CSV export (:func:`response_layout`): the MC
questions are one column named by their DataExportTag (``consent``,
``predict_<task key>``), the matrices one column per row named
``<tag>_<row>`` with ``row`` the 1-based position of the attribute in
``study.attributes`` (``relevance_1``, ``confidence_1``, ...), the condition is
the embedded-data column ``condition``. Values are the choice numbers
(numeric export) or the choice texts (choice-text export).
"""

from __future__ import annotations

import dataclasses
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

from dubfiv.study.content import Study, StudyImage, render_page_html, write_text_atomic
from dubfiv.study.qsf_reader import (
    CONDITION_FIELD,
    TAG_CONFIDENCE,
    TAG_CONSENT,
    TAG_END,
    TAG_RELEVANCE,
    ParsedBlock,
    ParsedQuestion,
    ParsedSurvey,
    QsfError,
    load_qsf_dict,
    parse_qsf,
    read_qsf,
    validate_qsf,
)

__all__ = [
    "CONDITION_FIELD",
    "TAG_CONFIDENCE",
    "TAG_CONSENT",
    "TAG_END",
    "TAG_RELEVANCE",
    "Column",
    "ParsedBlock",
    "ParsedQuestion",
    "ParsedSurvey",
    "QsfError",
    "ResponseLayout",
    "build_qsf",
    "image_url",
    "load_qsf_dict",
    "parse_qsf",
    "read_qsf",
    "response_layout",
    "validate_qsf",
    "write_qsf",
]

NULL_DATE = "0000-00-00 00:00:00"
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


def image_url(base_url: str, image: StudyImage) -> str:
    """``BASE/PATH`` with the path URL-quoted (``/`` kept)."""
    return base_url.rstrip("/") + "/" + quote(image.path, safe="/")


def _check_base_url(base_url: str) -> str:
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise QsfError(f"image base URL {base_url!r} must be an http(s) URL such as "
                       "https://example.org/my-study (pass it with --image-base-url)")
    return base_url.rstrip("/")


# ---------------------------------------------------------------------- building


class _Builder:
    """Accumulates questions and flow ids while a survey is built."""

    def __init__(self, study: Study, survey_id: str) -> None:
        self.study = study
        self.survey_id = survey_id
        self.questions: list[dict[str, Any]] = []
        self.tags: set[str] = set()
        self.flow_count = 1  # FL_1 is the root

    def flow_id(self) -> str:
        self.flow_count += 1
        return f"FL_{self.flow_count}"

    def question(self, tag: str, text: str, qtype: str, selector: str,
                 sub_selector: str | None = None, **extra: Any) -> str:
        if tag in self.tags:
            raise QsfError(f"two questions would share the DataExportTag {tag!r}; "
                           "rename a condition or task key")
        self.tags.add(tag)
        qid = f"QID{len(self.questions) + 1}"
        payload: dict[str, Any] = {
            "QuestionID": qid, "DataExportTag": tag, "QuestionText": text,
            "QuestionDescription": _plain(text), "QuestionType": qtype,
            "Selector": selector, "Configuration": {"QuestionDescriptionOption": "UseText"},
            "DataVisibility": {"Private": False, "Hidden": False},
            "Validation": {"Settings": {"Type": "None"}}, "Language": [],
            "ChoiceOrder": [], "DefaultChoices": False,
        }
        if sub_selector is not None:
            payload["SubSelector"] = sub_selector
        payload.update(extra)
        self.questions.append(payload)
        return qid

    def choice_question(self, tag: str, text: str, labels: list[str]) -> str:
        return self.question(
            tag, text, "MC", "SAVR", "TX",
            Choices={str(i + 1): {"Display": lab} for i, lab in enumerate(labels)},
            ChoiceOrder=[str(i + 1) for i in range(len(labels))],
            NextChoiceId=len(labels) + 1, NextAnswerId=1,
            Validation={"Settings": {"ForceResponse": "ON", "ForceResponseType": "ON",
                                     "Type": "None"}},
        )

    def matrix_question(self, tag: str, text: str, rows: list[str], cols: list[str]) -> str:
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
            NextChoiceId=len(rows) + 1, NextAnswerId=len(cols) + 1,
            Validation={"Settings": {"ForceResponse": "ON", "ForceResponseType": "ON",
                                     "Type": "None"}},
        )


def _block(kind: str, description: str, block_id: str, pages: list[list[str]]) -> dict[str, Any]:
    elements: list[dict[str, str]] = []
    for i, page in enumerate(pages):
        if i:
            elements.append({"Type": "Page Break"})
        elements.extend({"Type": "Question", "QuestionID": qid} for qid in page)
    return {"Type": kind, "Description": description, "ID": block_id,
            "BlockElements": elements,
            "Options": {"BlockLocking": "false", "RandomizeQuestions": "false",
                        "BlockVisibility": "Expanded"}}


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
    base = _check_base_url(image_base_url if image_base_url is not None
                           else study.image_base_url)
    created = created or _dt.datetime.now(_dt.UTC)
    stamp = created.strftime("%Y-%m-%d %H:%M:%S")
    sid = _ident("SV_", study.name, study.seed, "survey")
    b = _Builder(study, sid)

    def src(img: StudyImage) -> str:
        return image_url(base, img)

    blocks: list[dict[str, Any]] = []
    consent_text = b.question("consent_text", study.consent_text, "DB", "TB")
    consent = b.choice_question(TAG_CONSENT, "<p>Do you agree to take part?</p>",
                                [study.consent_agree, study.consent_decline])
    consent_id = _ident("BL_", study.name, study.seed, "consent")
    blocks.append(_block("Default", "Consent", consent_id, [[consent_text, consent]]))
    cond_blocks: list[tuple[str, str, str]] = []
    for cond in study.conditions:
        pages = [[b.question(f"{cond.key}_intro",
                             f"<h2>{html.escape(cond.title)}</h2>\n{cond.intro}", "DB", "TB")]]
        for i, page in enumerate(cond.pages):
            pages.append([b.question(f"{cond.key}_page{i + 1}",
                                     render_page_html(page, src), "DB", "TB")])
        bid = _ident("BL_", study.name, study.seed, "condition", cond.key)
        blocks.append(_block("Standard", f"Condition {cond.key}: {cond.title}", bid, pages))
        cond_blocks.append((cond.key, cond.title, bid))
    labels = [a.label for a in study.attributes]
    rel = b.matrix_question(TAG_RELEVANCE, f"<p>{study.relevance_question}</p>", labels,
                            list(study.relevance_answers))
    conf = b.matrix_question(TAG_CONFIDENCE, f"<p>{study.confidence_question}</p>", labels,
                             list(study.confidence_answers))
    shared = [("Attribute relevance", "relevance", [[rel, conf]])]
    if study.tasks:
        task_pages = []
        for i, task in enumerate(study.tasks):
            alt = StudyImage(task.image.path, alt=f"Image {i + 1}", width=task.image.width,
                             height=task.image.height)
            text = (f"<p>{study.prediction_question}</p>\n"
                    f'<p><img src="{html.escape(src(alt), quote=True)}" alt="{alt.alt}" '
                    'style="max-width:100%;height:auto;"></p>')
            task_pages.append([b.choice_question(f"predict_{task.key}", text,
                                                 list(study.class_names))])
        shared.append(("Prediction tasks", "prediction", task_pages))
    shared.append(("End", "end", [[b.question(TAG_END, study.end_text, "DB", "TB")]]))
    shared_ids = []
    for description, key, pages in shared:
        bid = _ident("BL_", study.name, study.seed, "shared", key)
        blocks.append(_block("Standard", description, bid, pages))
        shared_ids.append(bid)
    trash_id = _ident("BL_", study.name, study.seed, "trash")
    blocks.append({"Type": "Trash", "Description": "Trash / Unused Questions",
                   "ID": trash_id, "BlockElements": []})

    flow: list[dict[str, Any]] = [{"Type": "Block", "ID": consent_id, "FlowID": b.flow_id(),
                                   "Autofill": []}]
    locator = f"q://{consent}/SelectableChoice/2"
    flow.append({
        "Type": "Branch", "FlowID": b.flow_id(), "Description": "Consent declined",
        "BranchLogic": {"0": {"0": {
            "LogicType": "Question", "QuestionID": consent, "QuestionIsInLoop": "no",
            "ChoiceLocator": locator, "Operator": "Selected",
            "QuestionIDFromLocator": consent, "LeftOperand": locator, "Type": "Expression",
            "Description": f"If {_plain(study.consent_decline)} Is Selected"},
            "Type": "If"}, "Type": "BooleanExpression"},
        "Flow": [{"Type": "EndSurvey", "FlowID": b.flow_id()}],
    })
    randomizer: dict[str, Any] = {"Type": "BlockRandomizer", "FlowID": b.flow_id(),
                                  "SubSet": 1, "EvenPresentation": True, "Flow": []}
    for key, title, bid in cond_blocks:
        randomizer["Flow"].append({
            "Type": "Group", "FlowID": b.flow_id(), "Description": f"condition {key}: {title}",
            "Flow": [
                {"Type": "EmbeddedData", "FlowID": b.flow_id(), "EmbeddedData": [{
                    "Description": CONDITION_FIELD, "Type": "Custom",
                    "Field": CONDITION_FIELD, "VariableType": "String",
                    "DataVisibility": [], "AnalyzeText": False, "Value": key}]},
                {"Type": "Standard", "ID": bid, "FlowID": b.flow_id(), "Autofill": []},
            ]})
    flow.append(randomizer)
    flow.extend({"Type": "Standard", "ID": bid, "FlowID": b.flow_id(), "Autofill": []}
                for bid in shared_ids)
    flow.append({"Type": "EndSurvey", "FlowID": b.flow_id()})
    root = {"Type": "Root", "FlowID": "FL_1", "Flow": flow,
            "Properties": {"Count": b.flow_count}}

    rs = _ident("RS_", study.name, study.seed, "responses")
    owner = _ident("UR_", study.name, study.seed, "owner")

    def element(kind: str, primary: str, secondary: str | None, payload: Any) -> dict[str, Any]:
        return {"SurveyID": sid, "Element": kind, "PrimaryAttribute": primary,
                "SecondaryAttribute": secondary, "TertiaryAttribute": None, "Payload": payload}

    elements = [
        element("BL", "Survey Blocks", None, {str(i): blk for i, blk in enumerate(blocks)}),
        element("FL", "Survey Flow", None, root),
        element("SO", "Survey Options", None, {
            "BackButton": "false", "SaveAndContinue": "true",
            "SurveyProtection": "PublicSurvey", "BallotBoxStuffingPrevention": "false",
            "NoIndex": "Yes", "SecureResponseFiles": "true", "SurveyExpiration": "None",
            "SurveyTermination": "DefaultMessage", "Header": "", "Footer": "",
            "ProgressBarDisplay": "None", "PartialData": "+1 week",
            "PreviousButton": " ← ", "NextButton": " → ", "SurveyTitle": study.name,
            "SurveyLanguage": "EN"}),
    ]
    elements += [element("SQ", q["QuestionID"], _plain(q["QuestionText"]), q)
                 for q in b.questions]
    elements.append(element("QC", "Survey Question Count", str(len(b.questions)), None))
    elements.append(element("RS", rs, "Default Response Set", None))
    entry = {
        "SurveyID": sid, "SurveyName": study.name, "SurveyDescription": None,
        "SurveyOwnerID": owner, "SurveyBrandID": "", "DivisionID": None,
        "SurveyLanguage": "EN", "SurveyActiveResponseSet": rs, "SurveyStatus": "Inactive",
        "SurveyStartDate": NULL_DATE, "SurveyExpirationDate": NULL_DATE,
        "SurveyCreationDate": stamp, "CreatorID": owner, "LastModified": stamp,
        "LastAccessed": NULL_DATE, "LastActivated": NULL_DATE, "Deleted": None,
    }
    return {"SurveyEntry": entry, "SurveyElements": elements}


def write_qsf(path: str | os.PathLike[str], study: Study, image_base_url: str | None = None,
              created: _dt.datetime | None = None) -> dict[str, Any]:
    """Build the survey and write it to ``path`` (atomically); return the dictionary."""
    qsf = build_qsf(study, image_base_url, created)
    write_text_atomic(Path(path), json.dumps(qsf, indent=1, ensure_ascii=False) + "\n")
    return qsf



# ---------------------------------------------------------------------- response layout


@dataclasses.dataclass(frozen=True)
class Column:
    """A CSV column of the response export: header row 1 (``tag``) and 3 (``import_id``)."""

    tag: str
    import_id: str


@dataclasses.dataclass(frozen=True)
class ResponseLayout:
    """Where each answer of the survey lands in Qualtrics' CSV export."""

    consent: Column
    condition: Column
    relevance: dict[str, Column]  # attribute key -> column
    confidence: dict[str, Column]  # attribute key -> column
    prediction: dict[str, Column]  # task key -> column

    def columns(self) -> list[Column]:
        return [self.consent, self.condition, *self.relevance.values(),
                *self.confidence.values(), *self.prediction.values()]


def response_layout(study: Study, parsed: ParsedSurvey | None = None) -> ResponseLayout:
    """The export columns of the survey of ``study`` (built in memory unless ``parsed``).

    Raises :class:`QsfError` if ``parsed`` does not match the study (another
    survey, or attributes changed).
    """
    if parsed is None:
        parsed = parse_qsf(build_qsf(study, study.image_base_url or "https://example.invalid"))
    tags = parsed.export_tags
    needed = [TAG_CONSENT, TAG_RELEVANCE, TAG_CONFIDENCE] + [f"predict_{t.key}"
                                                            for t in study.tasks]
    missing = [t for t in needed if t not in tags]
    if missing:
        raise QsfError(f"the survey has no questions tagged {missing}: it was not built "
                       "from this study")
    labels = [a.label for a in study.attributes]
    for tag in (TAG_RELEVANCE, TAG_CONFIDENCE):
        got = [parsed.questions[tags[tag]].choices[k]
               for k in sorted(parsed.questions[tags[tag]].choices, key=int)]
        if got != labels:
            raise QsfError(f"the survey's {tag!r} rows {got} differ from the study's "
                           f"attributes {labels}")

    def matrix(tag: str) -> dict[str, Column]:
        qid = tags[tag]
        return {a.key: Column(f"{tag}_{i + 1}", f"{qid}_{i + 1}")
                for i, a in enumerate(study.attributes)}

    return ResponseLayout(
        consent=Column(TAG_CONSENT, tags[TAG_CONSENT]),
        condition=Column(CONDITION_FIELD, CONDITION_FIELD),
        relevance=matrix(TAG_RELEVANCE), confidence=matrix(TAG_CONFIDENCE),
        prediction={t.key: Column(f"predict_{t.key}", tags[f"predict_{t.key}"])
                    for t in study.tasks})
