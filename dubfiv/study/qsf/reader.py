"""Reading and validating Qualtrics survey files (``.qsf``).

:func:`read_qsf` / :func:`parse_qsf` recover the structure of a survey (blocks,
flow, questions, export tags, image URLs, the conditions assigned by the
randomizer, the attribute rows of the relevance matrix, embedded-data fields,
end-of-survey redirects); :func:`validate_qsf` lists what would break an import
or the study. Surveys are built by :mod:`dubfiv.study.qsf.writer`, which
re-exports these names. Blocks may be a list (as in Qualtrics' own exports) or
an object keyed "0", "1", ...; the facts relied on are in ``docs/qualtrics.md``.
"""

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
    "TAG_CONFIDENCE",
    "TAG_CONSENT",
    "TAG_DEVICE",
    "TAG_END",
    "TAG_RELEVANCE",
    "ParsedBlock",
    "ParsedQuestion",
    "ParsedSurvey",
    "QsfError",
    "load_qsf_dict",
    "parse_qsf",
    "read_qsf",
    "validate_qsf",
]

TAG_CONSENT = "consent"
TAG_RELEVANCE = "relevance"
TAG_CONFIDENCE = "confidence"
TAG_END = "end"
TAG_DEVICE = "device"
CONDITION_FIELD = "condition"
PROLIFIC_FIELDS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
"""Embedded-data fields Prolific passes as URL parameters."""
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
    for item in items:
        if isinstance(item, dict):
            yield item
            yield from _walk(item.get("Flow", []) or [])


def parse_qsf(qsf: Mapping[str, Any], where: str = "qsf") -> ParsedSurvey:
    """Read the structure of a .qsf dictionary (raises :class:`QsfError` if it is not one)."""
    if not isinstance(qsf, Mapping) or "SurveyEntry" not in qsf or not isinstance(
            qsf.get("SurveyElements"), list):
        raise QsfError(f"{where} is not a Qualtrics survey: no SurveyEntry/SurveyElements")
    bl, fl = _elements(qsf, "BL"), _elements(qsf, "FL")
    if len(bl) != 1 or len(fl) != 1:
        raise QsfError(f"{where}: expected one BL and one FL element, got {len(bl)} and "
                       f"{len(fl)}")
    questions: dict[str, ParsedQuestion] = {}
    urls: list[str] = []
    for el in _elements(qsf, "SQ"):
        p = el.get("Payload") or {}
        text = str(p.get("QuestionText", ""))
        imgs = [html.unescape(u) for u in _IMG_RE.findall(text)]
        urls += [u for u in imgs if u not in urls]

        def labels(d: Any) -> dict[str, str]:
            return {str(k): str(v.get("Display", "")) for k, v in d.items()} if isinstance(
                d, Mapping) else {}

        qid = str(p.get("QuestionID", el.get("PrimaryAttribute")))
        questions[qid] = ParsedQuestion(
            qid=qid, export_tag=str(p.get("DataExportTag", "")), qtype=str(p.get("QuestionType")),
            selector=str(p.get("Selector")), sub_selector=p.get("SubSelector"), text=text,
            choices=labels(p.get("Choices")), answers=labels(p.get("Answers")), image_urls=imgs)
    blocks = []
    for blk in _block_list(bl[0].get("Payload")):
        elems = blk.get("BlockElements") or []
        blocks.append(ParsedBlock(
            block_id=str(blk.get("ID")), kind=str(blk.get("Type")),
            description=str(blk.get("Description", "")),
            question_ids=[e.get("QuestionID") for e in elems if e.get("Type") == "Question"],
            n_pages=1 + sum(e.get("Type") == "Page Break" for e in elems) if elems else 0))
    root = fl[0].get("Payload") or {}
    flow = root.get("Flow", []) if isinstance(root, Mapping) else []
    conditions: list[str] = []
    cond_blocks: dict[str, str] = {}
    subset = None
    for item in _walk(flow):
        if item.get("Type") not in ("BlockRandomizer", "Randomizer"):
            continue
        subset = item.get("SubSet")
        for child in item.get("Flow", []):
            values = [d.get("Value") for e in _walk([child]) if e.get("Type") == "EmbeddedData"
                      for d in e.get("EmbeddedData", []) if d.get("Field") == CONDITION_FIELD]
            ids = [e.get("ID") for e in _walk([child]) if e.get("Type") in ("Block", "Standard")]
            if values:
                conditions.append(str(values[0]))
                if ids:
                    cond_blocks[str(values[0])] = str(ids[0])
    tags = {q.export_tag: qid for qid, q in questions.items()}
    rel = questions.get(tags.get(TAG_RELEVANCE, ""))
    attributes = [rel.choices[k] for k in sorted(rel.choices, key=int)] if rel else []
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


def validate_qsf(qsf: Mapping[str, Any], folder: str | os.PathLike[str] | None = None,
                 image_base_url: str | None = None) -> list[str]:
    """Problems that would break an import or the study (empty list: none found).

    Checks the entry, one SQ per unique QID (PrimaryAttribute = QuestionID),
    unique export tags, NextChoiceId/NextAnswerId above every choice/answer id,
    matching ChoiceOrder/AnswerOrder, known Randomization types, blocks (a list
    or an object) listing only existing questions, one Default and one Trash
    block, at most one SCO/PROJ/STAT, a flow referencing only existing blocks
    and questions, unique FlowIDs, randomizer subsets, branch and display logic
    naming existing questions, choices and embedded fields, embedded data with
    a Field (and a Value if Custom), end-of-survey redirects to http(s) URLs, QC
    = number of SQ, the response set, and -- with ``folder`` and
    ``image_base_url`` -- that every ``<img src>`` is ``BASE/PATH`` with
    ``folder/PATH`` an existing file (``folder``: the hosted folder).
    """
    out: list[str] = []
    try:
        parsed = parse_qsf(qsf)
    except QsfError as exc:
        return [str(exc)]
    entry = qsf["SurveyEntry"]
    sid = entry.get("SurveyID", "")
    if not _ID_RE.match(str(sid)):
        out.append(f"SurveyID {sid!r} is not SV_ + 15 alphanumerics")
    for key in ("SurveyName", "SurveyLanguage", "SurveyStatus", "SurveyActiveResponseSet"):
        if not entry.get(key):
            out.append(f"SurveyEntry lacks {key}")
    for i, el in enumerate(qsf["SurveyElements"]):
        missing = {"SurveyID", "Element", "PrimaryAttribute", "SecondaryAttribute",
                   "TertiaryAttribute", "Payload"} - set(el)
        if missing:
            out.append(f"SurveyElements[{i}] lacks {sorted(missing)}")
        elif el["SurveyID"] != sid:
            out.append(f"SurveyElements[{i}] has SurveyID {el['SurveyID']!r}, not {sid!r}")
    for kind in ("SO", "QC"):
        if len(_elements(qsf, kind)) != 1:
            out.append(f"expected one {kind} element, got {len(_elements(qsf, kind))}")
    for kind in ("SCO", "PROJ", "STAT", "RS"):  # optional, as in Qualtrics' own exports
        found = _elements(qsf, kind)
        if kind != "RS" and len(found) > 1:
            out.append(f"expected at most one {kind} element, got {len(found)}")
        for el in found:
            if kind != "RS" and not isinstance(el.get("Payload"), Mapping):
                out.append(f"the {kind} element's Payload must be an object")
    bl_payload = _elements(qsf, "BL")[0].get("Payload")
    if not isinstance(bl_payload, list | Mapping):
        out.append("the BL element's Payload must be a list (or an object) of blocks")
    sq = _elements(qsf, "SQ")
    qids = [el.get("PrimaryAttribute") for el in sq]
    dup = sorted({q for q in qids if qids.count(q) > 1})
    if dup:
        out.append(f"duplicate QIDs {dup}")
    for el in sq:
        p = el.get("Payload") or {}
        if p.get("QuestionID") != el.get("PrimaryAttribute"):
            out.append(f"SQ {el.get('PrimaryAttribute')}: Payload.QuestionID is "
                       f"{p.get('QuestionID')!r}")
        if p.get("QuestionType") not in _QUESTION_TYPES:
            out.append(f"SQ {p.get('QuestionID')}: unknown QuestionType {p.get('QuestionType')!r}")
        if p.get("QuestionType") == "Matrix" and not p.get("Answers"):
            out.append(f"SQ {p.get('QuestionID')}: a Matrix needs Answers (columns)")
        order = [str(c) for c in p.get("ChoiceOrder", [])]
        if sorted(order) != sorted(str(c) for c in (p.get("Choices") or {})):
            out.append(f"SQ {p.get('QuestionID')}: ChoiceOrder does not match Choices")
        out += _validate_question(p)
    tags = [q.export_tag for q in parsed.questions.values()]
    dup_tags = sorted({t for t in tags if tags.count(t) > 1 or not t})
    if dup_tags:
        out.append(f"duplicate or empty DataExportTags {dup_tags}")
    qc = _elements(qsf, "QC")
    if qc and str(qc[0].get("SecondaryAttribute")) != str(len(sq)):
        out.append(f"QC says {qc[0].get('SecondaryAttribute')} questions, there are {len(sq)}")
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
    out += _validate_flow(qsf, parsed, set(block_ids))
    for el in sq:
        p = el.get("Payload") or {}
        if "DisplayLogic" in p:
            out += _validate_logic(p["DisplayLogic"], f"display logic of {p.get('QuestionID')}",
                                   parsed)
    rs_ids = [el.get("PrimaryAttribute") for el in _elements(qsf, "RS")]
    if rs_ids and entry.get("SurveyActiveResponseSet") not in rs_ids:
        out.append(f"SurveyActiveResponseSet {entry.get('SurveyActiveResponseSet')!r} is not "
                   f"an RS element ({rs_ids})")
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


def _validate_logic(logic: Any, where: str, parsed: ParsedSurvey) -> list[str]:
    """Problems of branch or display logic: missing questions, choices or fields."""
    if not isinstance(logic, Mapping) or logic.get("Type") != "BooleanExpression":
        return [f"{where} is not a BooleanExpression"]
    exprs = list(_expressions(logic))
    if not exprs:
        return [f"{where} has no condition"]
    out = []
    for expr in exprs:
        kind = expr.get("LogicType")
        if kind == "Question":
            qid = str(expr.get("QuestionID"))
            match = _LOCATOR_RE.match(str(expr.get("ChoiceLocator", "")))
            if qid not in parsed.questions:
                out.append(f"{where} refers to missing question {qid}")
            elif match is None or match.group(1) != qid:
                out.append(f"{where}: ChoiceLocator {expr.get('ChoiceLocator')!r} is not "
                           f"q://{qid}/SelectableChoice/<n>")
            elif match.group(2) not in parsed.questions[qid].choices:
                out.append(f"{where} refers to choice {match.group(2)} of {qid}, which has "
                           f"choices {sorted(parsed.questions[qid].choices, key=int)}")
            if expr.get("Operator") not in ("Selected", "NotSelected"):
                out.append(f"{where}: operator {expr.get('Operator')!r} is not Selected or "
                           "NotSelected")
        elif kind == "EmbeddedField":
            field = str(expr.get("LeftOperand"))
            if field not in parsed.embedded_fields:
                out.append(f"{where} tests embedded field {field!r}, which the flow never "
                           f"sets (fields: {parsed.embedded_fields})")
        else:
            out.append(f"{where}: unsupported LogicType {kind!r}")
    return out


def _validate_flow(qsf: Mapping[str, Any], parsed: ParsedSurvey, block_ids: set[str]
                   ) -> list[str]:
    out: list[str] = []
    root = _elements(qsf, "FL")[0].get("Payload") or {}
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
        kind = item.get("Type")
        if kind not in _FLOW_TYPES:
            out.append(f"flow item {item.get('FlowID')} has unknown Type {kind!r}")
        if kind in ("Block", "Standard") and item.get("ID") not in block_ids:
            out.append(f"flow item {item.get('FlowID')} shows missing block {item.get('ID')}")
        if kind in ("BlockRandomizer", "Randomizer"):
            n, sub = len(item.get("Flow", [])), item.get("SubSet")
            if not isinstance(sub, int) or not 1 <= sub <= n:
                out.append(f"randomizer {item.get('FlowID')} has SubSet {sub!r} for {n} children")
        if kind == "Branch":
            refs = re.findall(r"QID\d+", json.dumps(item.get("BranchLogic", {})))
            if not refs:
                out.append(f"branch {item.get('FlowID')} has no question condition")
            out += [f"branch {item.get('FlowID')} refers to missing question {q}"
                    for q in sorted(set(refs)) if q not in parsed.questions]
            if refs and all(q in parsed.questions for q in refs):
                out += _validate_logic(item.get("BranchLogic"),
                                       f"branch {item.get('FlowID')}", parsed)
        if kind == "EmbeddedData":
            for d in item.get("EmbeddedData", []) or []:
                if not isinstance(d, Mapping) or not d.get("Field"):
                    out.append(f"embedded data {item.get('FlowID')}: an entry has no Field")
                elif d.get("Type") not in _EMBEDDED_TYPES:
                    out.append(f"embedded data {item.get('FlowID')}: field {d['Field']!r} has "
                               f"Type {d.get('Type')!r}, not one of {sorted(_EMBEDDED_TYPES)}")
                elif d.get("Type") == "Custom" and not isinstance(d.get("Value"), str):
                    out.append(f"embedded data {item.get('FlowID')}: Custom field "
                               f"{d['Field']!r} needs a string Value")
        if kind == "EndSurvey" and "Options" in item:
            options = item.get("Options")
            termination = options.get("SurveyTermination") if isinstance(
                options, Mapping) else None
            if termination not in _TERMINATIONS:
                out.append(f"end of survey {item.get('FlowID')}: SurveyTermination "
                           f"{termination!r} is not one of {sorted(_TERMINATIONS)}")
            elif termination == "Redirect":
                url = urlparse(str(options.get("EOSRedirectURL", "")))
                if url.scheme not in ("http", "https") or not url.netloc:
                    out.append(f"end of survey {item.get('FlowID')} redirects to "
                               f"{options.get('EOSRedirectURL')!r}, not an http(s) URL")
    return out
