"""Reading and validating Qualtrics survey files (``.qsf``).

:func:`read_qsf` / :func:`parse_qsf` recover the structure of a survey (blocks,
flow, questions, export tags, image URLs, the conditions assigned by the
randomizer, the attribute rows of the relevance matrix, embedded-data fields,
end-of-survey redirects); :func:`validate_qsf` lists what would break an import
or the study. Surveys are built by :mod:`dubfiv.study.qsf.writer`, which marks
them (:data:`WRITER_MARK`); those are checked strictly, against what the writer
makes, while a survey Qualtrics exported is checked only for what would break
reading it (what such exports contain is accepted). Blocks may be a list (as in
Qualtrics' own exports) or an object keyed "0", "1", ...; the facts relied on are
in ``docs/qualtrics.md``."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from dubfiv.errors import DubfivError

__all__ = [
    "CONDITION_FIELD",
    "PROLIFIC_FIELDS",
    "SURVEY_OPTIONS_KEYS",
    "TAG_CONFIDENCE",
    "TAG_CONSENT",
    "TAG_DEVICE",
    "TAG_END",
    "TAG_RELEVANCE",
    "WRITER_MARK",
    "ParsedBlock",
    "ParsedQuestion",
    "ParsedSurvey",
    "QsfError",
    "load_qsf_dict",
    "parse_qsf",
    "read_qsf",
    "validate_qsf",
    "written_by_dubfiv",
]

TAG_CONSENT = "consent"
TAG_RELEVANCE = "relevance"
TAG_CONFIDENCE = "confidence"
TAG_END = "end"
TAG_DEVICE = "device"
CONDITION_FIELD = "condition"
PROLIFIC_FIELDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
"""Embedded-data fields Prolific passes as URL parameters."""
WRITER_MARK = "Written by dubfiv (dubfiv.study.qsf.writer)"
"""``SurveyEntry.SurveyDescription`` of the surveys this project writes; :func:`validate_qsf`
checks those strictly."""
SURVEY_OPTIONS_KEYS = ("ValidationMessage", "SkinLibrary", "SkinType", "Skin", "NewScoring")
"""Survey options (``SO``) that every survey exported by Qualtrics has."""
_LOCATOR_RE = re.compile(r"^q://(QID\d+)/SelectableChoice/(\d+)$")
_EMBEDDED_TYPES = {"Custom", "Recipient"}
_RANDOMIZATION_TYPES = {"None", "All", "RandomSubset", "Advanced"}
_TERMINATIONS = {"DefaultMessage", "DisplayMessage", "Redirect"}
_ID_RE = re.compile(r"^SV_[A-Za-z0-9]{15}$")
_IMG_RE = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
_QUESTION_TYPES = {"DB", "TB", "MC", "Matrix", "TE", "SL", "Slider", "Timing", "Meta"}
_FLOW_TYPES = {"Block", "Standard", "BlockRandomizer", "Randomizer", "Group",
               "EmbeddedData", "EndSurvey", "Branch"}


class QsfError(DubfivError, ValueError):
    """A .qsf file cannot be built or read."""


# ---------------------------------------------------------------------- reading


@dataclasses.dataclass
class ParsedQuestion:
    qid: str
    export_tag: str
    qtype: str
    selector: str
    sub_selector: str | None
    text: str
    choices: dict[str, str]
    answers: dict[str, str]
    image_urls: list[str]


@dataclasses.dataclass
class ParsedBlock:
    block_id: str
    kind: str
    description: str
    question_ids: list[str]
    n_pages: int


@dataclasses.dataclass
class ParsedSurvey:
    """What :func:`read_qsf` recovers of a survey."""

    survey_id: str
    name: str
    blocks: list[ParsedBlock]
    flow: list[dict[str, Any]]
    questions: dict[str, ParsedQuestion]
    export_tags: dict[str, str]
    image_urls: list[str]
    conditions: list[str]
    condition_blocks: dict[str, str]
    randomizer_subset: int | None
    attributes: list[str]
    embedded_fields: list[str] = dataclasses.field(default_factory=list)
    """Every embedded-data field set or declared in the flow, in flow order (no repeats)."""
    url_fields: list[str] = dataclasses.field(default_factory=list)
    """Fields of the flow's first item, if it is EmbeddedData without values (from the URL)."""
    redirects: list[str] = dataclasses.field(default_factory=list)
    """``EOSRedirectURL`` of every EndSurvey that redirects."""

    def image_paths(self, base_url: str) -> list[str]:
        """The image URLs as paths relative to ``base_url`` (those under it)."""
        prefix = base_url.rstrip("/") + "/"
        return [unquote(u[len(prefix):]) for u in self.image_urls if u.startswith(prefix)]

    def block(self, block_id: str) -> ParsedBlock:
        for blk in self.blocks:
            if blk.block_id == block_id:
                return blk
        raise KeyError(block_id)


def _elements(qsf: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in qsf.get("SurveyElements", []) if isinstance(e, dict)
            and e.get("Element") == kind]


def _block_list(payload: Any) -> list[dict[str, Any]]:
    if isinstance(payload, Mapping):
        return [v for v in payload.values() if isinstance(v, dict)]
    if isinstance(payload, list):
        return [v for v in payload if isinstance(v, dict)]
    return []


def _walk(items: list[Any]) -> Iterator[dict[str, Any]]:
    """The flow items in ``items`` and, depth first, inside them."""
    for item in items:
        if isinstance(item, dict):
            yield item
            children = item.get("Flow")
            yield from _walk(children if isinstance(children, list) else [])


def _choice_key(key: str) -> tuple[int, str]:
    """Sort choice ids by number ("2" before "10"), others after them."""
    return (int(key), "") if key.isdigit() else (1 << 62, key)


def parse_qsf(qsf: Mapping[str, Any], where: str = "qsf") -> ParsedSurvey:
    """Read the structure of a .qsf dictionary (raises :class:`QsfError` if it is not one)."""
    if not isinstance(qsf, Mapping) or not isinstance(qsf.get("SurveyEntry"), Mapping) or (
            not isinstance(qsf.get("SurveyElements"), list)):
        raise QsfError(f"{where} is not a Qualtrics survey: no SurveyEntry/SurveyElements")
    bl, fl = _elements(qsf, "BL"), _elements(qsf, "FL")
    if len(bl) != 1 or len(fl) != 1:
        raise QsfError(f"{where}: expected one BL and one FL element, got {len(bl)} and "
                       f"{len(fl)}")
    questions: dict[str, ParsedQuestion] = {}
    urls: list[str] = []
    for el in _elements(qsf, "SQ"):
        p = _payload(el)
        text = str(p.get("QuestionText", ""))
        imgs = [html.unescape(u) for u in _IMG_RE.findall(text)]
        urls += [u for u in imgs if u not in urls]

        def labels(d: Any) -> dict[str, str]:
            if not isinstance(d, Mapping):
                return {}
            return {str(k): str(v.get("Display", "")) if isinstance(v, Mapping) else str(v)
                    for k, v in d.items()}

        qid = str(p.get("QuestionID", el.get("PrimaryAttribute")))
        questions[qid] = ParsedQuestion(
            qid=qid, export_tag=str(p.get("DataExportTag", "")), qtype=str(p.get("QuestionType")),
            selector=str(p.get("Selector")), sub_selector=p.get("SubSelector"), text=text,
            choices=labels(p.get("Choices")), answers=labels(p.get("Answers")), image_urls=imgs)
    blocks = []
    for blk in _block_list(bl[0].get("Payload")):
        elems = [e for e in blk.get("BlockElements") or [] if isinstance(e, Mapping)]
        blocks.append(ParsedBlock(
            block_id=str(blk.get("ID")), kind=str(blk.get("Type")),
            description=str(blk.get("Description", "")),
            question_ids=[e.get("QuestionID") for e in elems if e.get("Type") == "Question"],
            n_pages=1 + sum(e.get("Type") == "Page Break" for e in elems) if elems else 0))
    flow = _payload(fl[0]).get("Flow")
    flow = flow if isinstance(flow, list) else []
    conditions: list[str] = []
    cond_blocks: dict[str, str] = {}
    subset = None
    for item in _walk(flow):
        if item.get("Type") not in ("BlockRandomizer", "Randomizer"):
            continue
        subset = _subset(item.get("SubSet"))
        for child in item.get("Flow") or []:
            values = [d.get("Value") for e in _walk([child]) if e.get("Type") == "EmbeddedData"
                      for d in e.get("EmbeddedData") or []
                      if isinstance(d, Mapping) and d.get("Field") == CONDITION_FIELD]
            ids = [e.get("ID") for e in _walk([child]) if e.get("Type") in ("Block", "Standard")]
            if values:
                conditions.append(str(values[0]))
                if ids:
                    cond_blocks[str(values[0])] = str(ids[0])
    tags = {q.export_tag: qid for qid, q in questions.items()}
    rel = questions.get(tags.get(TAG_RELEVANCE, ""))
    attributes = [rel.choices[k] for k in sorted(rel.choices, key=_choice_key)] if rel else []
    fields: list[str] = []
    redirects: list[str] = []
    for item in _walk(flow):
        if item.get("Type") == "EmbeddedData":
            fields += [str(d.get("Field")) for d in item.get("EmbeddedData", []) or []
                       if isinstance(d, dict) and str(d.get("Field")) not in fields]
        options = item.get("Options") if item.get("Type") == "EndSurvey" else None
        if isinstance(options, Mapping) and options.get("SurveyTermination") == "Redirect":
            redirects.append(str(options.get("EOSRedirectURL", "")))
    url_fields: list[str] = []
    first = flow[0] if flow and isinstance(flow[0], dict) else {}
    if first.get("Type") == "EmbeddedData":
        url_fields = [str(d.get("Field")) for d in first.get("EmbeddedData", []) or []
                      if isinstance(d, dict) and d.get("Type") == "Recipient"]
    entry = qsf["SurveyEntry"]
    return ParsedSurvey(
        survey_id=str(entry.get("SurveyID")), name=str(entry.get("SurveyName")), blocks=blocks,
        flow=flow, questions=questions, export_tags=tags, image_urls=urls,
        conditions=conditions, condition_blocks=cond_blocks, randomizer_subset=subset,
        attributes=attributes, embedded_fields=fields, url_fields=url_fields,
        redirects=redirects)


def load_qsf_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON of a .qsf file, with a clear error if it is missing or not JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise QsfError(f"survey file {path} not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QsfError(f"{path} is not a readable .qsf (JSON) file: {exc}") from exc
    if not isinstance(data, dict):
        raise QsfError(f"{path} is not a Qualtrics survey (not a JSON object)")
    return data


def read_qsf(path: str | os.PathLike[str]) -> ParsedSurvey:
    """Read a .qsf file (see :class:`ParsedSurvey`)."""
    return parse_qsf(load_qsf_dict(path), str(path))


# ---------------------------------------------------------------------- validation


def written_by_dubfiv(qsf: Mapping[str, Any]) -> bool:
    """Whether ``qsf`` is a survey this project wrote (its entry carries :data:`WRITER_MARK`)."""
    entry = qsf.get("SurveyEntry") if isinstance(qsf, Mapping) else None
    return isinstance(entry, Mapping) and entry.get("SurveyDescription") == WRITER_MARK


def validate_qsf(qsf: Mapping[str, Any], folder: str | os.PathLike[str] | None = None,
                 image_base_url: str | None = None, *, strict: bool | None = None
                 ) -> list[str]:
    """Problems that would break an import or the study (empty list: none found).

    Every survey: the entry, the elements' keys, one SO and one QC, at most one
    SCO/PROJ/STAT, one SQ per unique QID (PrimaryAttribute = QuestionID), a
    ChoiceOrder (where there is one) matching the Choices, no empty export tag,
    QC at least the largest QID number, blocks (a list or an object) listing
    only existing questions, each in one block, one Default and one Trash
    block, a flow showing only existing blocks, unique FlowIDs, randomizer
    subsets within their children, branch and display logic naming existing
    questions, embedded data with a Field, end-of-survey redirects to http(s)
    URLs, the response set, and -- with ``folder`` and ``image_base_url`` --
    that every ``<img src>`` is ``BASE/PATH`` with ``folder/PATH`` an existing
    file (``folder``: the hosted folder).

    ``strict`` (default: whether :func:`written_by_dubfiv`) adds the checks of
    the surveys this project writes: only the question types, flow items,
    logic and embedded-data types the writer uses, unique export tags,
    NextChoiceId/NextAnswerId above every choice/answer id, matching
    AnswerOrder, known Randomization types, QIDs ``QID1..QIDn`` with QC = n,
    integer SubSets, logic on existing choices and on fields the flow sets,
    and the traits of Qualtrics' own exports (survey options, ``GradingData``,
    no ``_HiddenExpression`` in display logic, early ends flagged
    ``Screened``). Without it, what Qualtrics' exports contain is accepted
    (duplicate export tags, ``Timing``/``Meta`` questions without ChoiceOrder,
    other question types, flow items and logic, ``SubSet`` as a digit string).
    """
    try:
        parsed = parse_qsf(qsf)
    except QsfError as exc:
        return [str(exc)]
    if strict is None:
        strict = written_by_dubfiv(qsf)
    out = _validate_entry(qsf)
    out += _validate_questions(qsf, parsed, strict)
    out += _validate_blocks(parsed)
    out += _validate_flow(qsf, parsed, {b.block_id for b in parsed.blocks}, strict)
    for el in _elements(qsf, "SQ"):
        p = _payload(el)
        if "DisplayLogic" in p:
            out += _validate_logic(p["DisplayLogic"], f"display logic of {p.get('QuestionID')}",
                                   parsed, strict)
    if strict:
        out += _validate_as_exported(qsf)
    if folder is not None:
        if image_base_url is None:
            raise QsfError("validate_qsf: checking images needs image_base_url with folder")
        prefix = image_base_url.rstrip("/") + "/"
        for url in parsed.image_urls:
            if not url.startswith(prefix):
                out.append(f"image {url} is not under the base URL {prefix}")
            elif not (Path(folder) / unquote(url[len(prefix):])).is_file():
                out.append(f"image {url} has no file {unquote(url[len(prefix):])} in {folder}")
    return out


def _payload(el: Mapping[str, Any]) -> Mapping[str, Any]:
    """An element's Payload, or an empty mapping if it is not an object."""
    payload = el.get("Payload")
    return payload if isinstance(payload, Mapping) else {}


def _validate_entry(qsf: Mapping[str, Any]) -> list[str]:
    """Problems of the entry, the elements' keys and the one-per-survey elements."""
    out: list[str] = []
    entry = qsf["SurveyEntry"]
    sid = entry.get("SurveyID", "")
    if not _ID_RE.match(str(sid)):
        out.append(f"SurveyID {sid!r} is not SV_ + 15 alphanumerics")
    for key in ("SurveyName", "SurveyLanguage", "SurveyStatus", "SurveyActiveResponseSet"):
        if not entry.get(key):
            out.append(f"SurveyEntry lacks {key}")
    for i, el in enumerate(qsf["SurveyElements"]):
        if not isinstance(el, Mapping):
            out.append(f"SurveyElements[{i}] is not an object")
            continue
        missing = {"SurveyID", "Element", "PrimaryAttribute", "SecondaryAttribute",
                   "TertiaryAttribute", "Payload"} - set(el)
        if missing:
            out.append(f"SurveyElements[{i}] lacks {sorted(missing)}")
        elif el["SurveyID"] != sid:
            out.append(f"SurveyElements[{i}] has SurveyID {el['SurveyID']!r}, not {sid!r}")
    for kind in ("SO", "QC"):
        if len(_elements(qsf, kind)) != 1:
            out.append(f"expected one {kind} element, got {len(_elements(qsf, kind))}")
    for kind in ("SCO", "PROJ", "STAT"):  # optional, as in Qualtrics' own exports
        found = _elements(qsf, kind)
        if len(found) > 1:
            out.append(f"expected at most one {kind} element, got {len(found)}")
        if any(not isinstance(el.get("Payload"), Mapping) for el in found):
            out.append(f"the {kind} element's Payload must be an object")
    if not isinstance(_elements(qsf, "BL")[0].get("Payload"), list | Mapping):
        out.append("the BL element's Payload must be a list (or an object) of blocks")
    rs_ids = [el.get("PrimaryAttribute") for el in _elements(qsf, "RS")]
    if rs_ids and entry.get("SurveyActiveResponseSet") not in rs_ids:
        out.append(f"SurveyActiveResponseSet {entry.get('SurveyActiveResponseSet')!r} is not "
                   f"an RS element ({rs_ids})")
    return out


def _validate_questions(qsf: Mapping[str, Any], parsed: ParsedSurvey, strict: bool
                        ) -> list[str]:
    """Problems of the SQ elements, their export tags and the question counter (QC)."""
    out: list[str] = []
    sq = _elements(qsf, "SQ")
    qids = [el.get("PrimaryAttribute") for el in sq]
    dup = sorted({q for q in qids if qids.count(q) > 1}, key=str)
    if dup:
        out.append(f"duplicate QIDs {dup}")
    for el in sq:
        p = _payload(el)
        qid, qtype = p.get("QuestionID"), p.get("QuestionType")
        if qid != el.get("PrimaryAttribute"):
            out.append(f"SQ {el.get('PrimaryAttribute')}: Payload.QuestionID is {qid!r}")
        known = qtype in _QUESTION_TYPES if strict else isinstance(qtype, str) and bool(qtype)
        if not known:
            out.append(f"SQ {qid}: unknown QuestionType {qtype!r}")
        if strict and qtype == "Matrix" and not p.get("Answers"):
            out.append(f"SQ {qid}: a Matrix needs Answers (columns)")
        if strict or "ChoiceOrder" in p:  # Qualtrics' Timing and Meta questions have none
            order = sorted(str(c) for c in p.get("ChoiceOrder") or [])
            if order != sorted(str(c) for c in (p.get("Choices") or {})):
                out.append(f"SQ {qid}: ChoiceOrder does not match Choices")
        if strict:
            out += _validate_question(p)
    tags = [q.export_tag for q in parsed.questions.values()]
    bad_tags = sorted({t for t in tags if not t or (strict and tags.count(t) > 1)})
    if bad_tags:
        out.append(f"duplicate or empty DataExportTags {bad_tags}")
    qc = _elements(qsf, "QC")
    if not qc:
        return out
    counter = str(qc[0].get("SecondaryAttribute"))
    numbers = [int(m.group(1)) for q in qids if (m := re.fullmatch(r"QID(\d+)", str(q)))]
    if strict:
        if counter != str(len(sq)):
            out.append(f"QC says {counter} questions, there are {len(sq)}")
        if sorted(numbers) != list(range(1, len(sq) + 1)):
            out.append("the question ids are not QID1 .. QID<number of questions>")
    elif not counter.isdigit() or int(counter) < max(numbers, default=0):
        out.append(f"QC says {counter}, below the largest question id "
                   f"QID{max(numbers, default=0)}")
    return out


def _validate_question(p: Mapping[str, Any]) -> list[str]:
    """Problems of one question payload beyond its type: ids Qualtrics needs to add choices."""
    qid = p.get("QuestionID")
    out = []
    for key, items in (("NextChoiceId", p.get("Choices")), ("NextAnswerId", p.get("Answers"))):
        value = p.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            out.append(f"SQ {qid}: {key} must be a positive integer, got {value!r}")
            continue
        numbers = [int(k) for k in (items or {}) if str(k).isdigit()]
        if numbers and value <= max(numbers):
            out.append(f"SQ {qid}: {key} {value} is not above the largest id {max(numbers)}")
    if p.get("QuestionType") == "Matrix":
        answers = sorted(str(a) for a in (p.get("Answers") or {}))
        if sorted(str(a) for a in p.get("AnswerOrder", [])) != answers:
            out.append(f"SQ {qid}: AnswerOrder does not match Answers")
    rand = p.get("Randomization")
    if rand is not None and (not isinstance(rand, Mapping)
                             or rand.get("Type") not in _RANDOMIZATION_TYPES):
        out.append(f"SQ {qid}: Randomization must have a Type in "
                   f"{sorted(_RANDOMIZATION_TYPES)}, got {rand!r}")
    return out


def _validate_blocks(parsed: ParsedSurvey) -> list[str]:
    """Problems of the blocks: their kinds, ids, and the questions they list."""
    out: list[str] = []
    kinds = [b.kind for b in parsed.blocks]
    if kinds.count("Default") != 1 or kinds.count("Trash") != 1:
        out.append(f"expected one Default and one Trash block, got kinds {kinds}")
    block_ids = [b.block_id for b in parsed.blocks]
    if len(set(block_ids)) != len(block_ids):
        out.append(f"duplicate block IDs in {block_ids}")
    placed: dict[str, str] = {}
    for blk in parsed.blocks:
        for qid in blk.question_ids:
            if qid not in parsed.questions:
                out.append(f"block {blk.block_id} ({blk.description}) lists missing question "
                           f"{qid}")
            if qid in placed:
                out.append(f"question {qid} is in blocks {placed[qid]} and {blk.block_id}")
            placed[qid] = blk.block_id
    return out


def _validate_as_exported(qsf: Mapping[str, Any]) -> list[str]:
    """Where a survey of ours differs from what Qualtrics' own exports agree on."""
    out: list[str] = []
    options = _payload(_elements(qsf, "SO")[0]) if _elements(qsf, "SO") else {}
    missing = [key for key in SURVEY_OPTIONS_KEYS if key not in options]
    if missing:
        out.append(f"the survey options (SO) lack {missing}")
    if "SurveyLanguage" in options:
        out.append("the survey options (SO) hold SurveyLanguage (it belongs in SurveyEntry)")
    for el in _elements(qsf, "SQ"):
        p = _payload(el)
        if not isinstance(p.get("GradingData"), list):
            out.append(f"SQ {p.get('QuestionID')}: no GradingData list")
        if any("_HiddenExpression" in expr for expr in _expressions(p.get("DisplayLogic"))):
            out.append(f"display logic of {p.get('QuestionID')} has _HiddenExpression")
    root = _payload(_elements(qsf, "FL")[0])
    for branch in _walk(root.get("Flow") or []):
        if branch.get("Type") != "Branch":
            continue
        for end in _walk(branch.get("Flow") or []):
            options = end.get("Options")
            if end.get("Type") == "EndSurvey" and not (
                    isinstance(options, Mapping) and options.get("ResponseFlag") == "Screened"):
                out.append(f"early end {end.get('FlowID')} (branch {branch.get('FlowID')}) "
                           "is not flagged Screened")
    return out


def _expressions(logic: Any) -> Iterator[dict[str, Any]]:
    """The expressions of a BooleanExpression (``{"0": {"0": {...}, "Type": "If"}, ...}``)."""
    if not isinstance(logic, Mapping):
        return
    for key, group in logic.items():
        if not str(key).isdigit() or not isinstance(group, Mapping):
            continue
        for k, expr in group.items():
            if str(k).isdigit() and isinstance(expr, dict):
                yield expr


def _validate_logic(logic: Any, where: str, parsed: ParsedSurvey, strict: bool = True
                    ) -> list[str]:
    """Problems of branch or display logic: missing questions, choices or fields.

    Not ``strict``: any LogicType, operator and locator (e.g. a matrix cell's
    ``q://QIDn/SelectableAnswer/k``) is accepted; questions must still exist.
    """
    if not isinstance(logic, Mapping) or logic.get("Type") != "BooleanExpression":
        return [f"{where} is not a BooleanExpression"]
    exprs = list(_expressions(logic))
    if not exprs:
        return [f"{where} has no condition"] if strict else []
    out = []
    for expr in exprs:
        kind = expr.get("LogicType")
        if kind == "Question":
            out += _validate_answer_test(expr, where, parsed, strict)
        elif kind == "EmbeddedField":
            field = str(expr.get("LeftOperand"))
            if strict and field not in parsed.embedded_fields:
                out.append(f"{where} tests embedded field {field!r}, which the flow never "
                           f"sets (fields: {parsed.embedded_fields})")
        elif strict:
            out.append(f"{where}: unsupported LogicType {kind!r}")
    return out


def _validate_answer_test(expr: Mapping[str, Any], where: str, parsed: ParsedSurvey,
                          strict: bool) -> list[str]:
    """Problems of an expression on an answer (LogicType ``Question``).

    Its question must exist; ``strict``: it tests whether an existing choice is
    ``Selected`` or ``NotSelected`` (``q://QIDn/SelectableChoice/k``).
    """
    qid = str(expr.get("QuestionID"))
    if qid not in parsed.questions:
        return [f"{where} refers to missing question {qid}"]
    if not strict:
        return []
    out = []
    match = _LOCATOR_RE.match(str(expr.get("ChoiceLocator", "")))
    if match is None or match.group(1) != qid:
        out.append(f"{where}: ChoiceLocator {expr.get('ChoiceLocator')!r} is not "
                   f"q://{qid}/SelectableChoice/<n>")
    elif match.group(2) not in parsed.questions[qid].choices:
        out.append(f"{where} refers to choice {match.group(2)} of {qid}, which has "
                   f"choices {sorted(parsed.questions[qid].choices, key=int)}")
    if expr.get("Operator") not in ("Selected", "NotSelected"):
        out.append(f"{where}: operator {expr.get('Operator')!r} is not Selected or NotSelected")
    return out


def _subset(value: Any) -> int | None:
    """A randomizer's SubSet as a number (Qualtrics' exports may write a digit string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _validate_flow(qsf: Mapping[str, Any], parsed: ParsedSurvey, block_ids: set[str],
                   strict: bool = True) -> list[str]:
    """Problems of the flow: ids, block references, randomizers, branches, embedded data."""
    out: list[str] = []
    root = _payload(_elements(qsf, "FL")[0])
    if root.get("Type") != "Root" or not isinstance(root.get("Flow"), list):
        return ["the FL payload is not a Root flow with a Flow list"]
    flow_ids = [root.get("FlowID")] + [item.get("FlowID") for item in _walk(root["Flow"])]
    dup = sorted({f for f in flow_ids if flow_ids.count(f) > 1 or f is None}, key=str)
    if dup:
        out.append(f"duplicate or missing FlowIDs {dup}")
    numbers = [int(f[3:]) for f in flow_ids if isinstance(f, str) and re.match(r"FL_\d+$", f)]
    count = (root.get("Properties") or {}).get("Count")
    if numbers and (not isinstance(count, int) or count < max(numbers)):
        out.append(f"flow Properties.Count {count!r} is below the largest FlowID {max(numbers)}")
    for item in _walk(root["Flow"]):
        kind, fid = item.get("Type"), item.get("FlowID")
        known = kind in _FLOW_TYPES if strict else isinstance(kind, str) and bool(kind)
        if not known:
            out.append(f"flow item {fid} has unknown Type {kind!r}")
        if kind in ("Block", "Standard") and item.get("ID") not in block_ids:
            out.append(f"flow item {fid} shows missing block {item.get('ID')}")
        if kind in ("BlockRandomizer", "Randomizer"):
            n, sub = len(item.get("Flow") or []), item.get("SubSet")
            number = sub if strict and not isinstance(sub, bool) else _subset(sub)
            if not isinstance(number, int) or not 1 <= number <= n:
                out.append(f"randomizer {fid} has SubSet {sub!r} for {n} children")
        if kind == "Branch":
            out += _validate_branch(item, parsed, strict)
        if kind == "EmbeddedData":
            out += _validate_embedded(item, strict)
        if kind == "EndSurvey" and "Options" in item:
            out += _validate_end(item, strict)
    return out


def _validate_branch(item: Mapping[str, Any], parsed: ParsedSurvey, strict: bool
                     ) -> list[str]:
    """Problems of a Branch: its logic (ours always tests an answer)."""
    fid = item.get("FlowID")
    refs = re.findall(r"QID\d+", json.dumps(item.get("BranchLogic", {})))
    out = [f"branch {fid} refers to missing question {q}"
           for q in sorted(set(refs)) if q not in parsed.questions]
    if strict and not refs:
        out.append(f"branch {fid} has no question condition")
    if not out:
        out += _validate_logic(item.get("BranchLogic"), f"branch {fid}", parsed, strict)
    return out


def _validate_embedded(item: Mapping[str, Any], strict: bool) -> list[str]:
    """Problems of an EmbeddedData item: every field named (ours: Custom with a Value or
    Recipient)."""
    out = []
    fid = item.get("FlowID")
    for d in item.get("EmbeddedData") or []:
        if not isinstance(d, Mapping) or not d.get("Field"):
            out.append(f"embedded data {fid}: an entry has no Field")
        elif not strict:
            continue
        elif d.get("Type") not in _EMBEDDED_TYPES:
            out.append(f"embedded data {fid}: field {d['Field']!r} has Type "
                       f"{d.get('Type')!r}, not one of {sorted(_EMBEDDED_TYPES)}")
        elif d.get("Type") == "Custom" and not isinstance(d.get("Value"), str):
            out.append(f"embedded data {fid}: Custom field {d['Field']!r} needs a string Value")
    return out


def _validate_end(item: Mapping[str, Any], strict: bool) -> list[str]:
    """Problems of an EndSurvey's Options: a known termination, a redirect to http(s)."""
    fid = item.get("FlowID")
    options = item.get("Options")
    termination = options.get("SurveyTermination") if isinstance(options, Mapping) else None
    if strict and termination not in _TERMINATIONS:
        return [f"end of survey {fid}: SurveyTermination {termination!r} is not one of "
                f"{sorted(_TERMINATIONS)}"]
    if termination == "Redirect" and isinstance(options, Mapping):
        url = urlparse(str(options.get("EOSRedirectURL", "")))
        if url.scheme not in ("http", "https") or not url.netloc:
            return [f"end of survey {fid} redirects to {options.get('EOSRedirectURL')!r}, "
                    "not an http(s) URL"]
    return []
