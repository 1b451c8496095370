"""Checking Qualtrics survey files (``.qsf``): what would break an import or the study.

:func:`validate_qsf` checks every survey for what would break reading or
importing it, and the surveys this project writes
(:func:`~dubfiv.study.qsf.reader.written_by_dubfiv`) strictly, against what
:mod:`dubfiv.study.qsf.writer` makes; what Qualtrics' own exports contain is
accepted in others (``docs/qualtrics.md``, "Reading surveys Qualtrics exported").
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from dubfiv.study.qsf.reader import (
    SURVEY_OPTIONS_KEYS,
    ParsedSurvey,
    QsfError,
    _elements,
    _payload,
    _subset,
    _walk,
    parse_qsf,
    written_by_dubfiv,
)

__all__ = ["validate_qsf"]

_LOCATOR_RE = re.compile(r"^q://(QID\d+)/SelectableChoice/(\d+)$")
_EMBEDDED_TYPES = {"Custom", "Recipient"}
_RANDOMIZATION_TYPES = {"None", "All", "RandomSubset", "Advanced"}
_TERMINATIONS = {"DefaultMessage", "DisplayMessage", "Redirect"}
_ID_RE = re.compile(r"^SV_[A-Za-z0-9]{15}$")
_QUESTION_TYPES = {"DB", "TB", "MC", "Matrix", "TE", "SL", "Slider", "Timing", "Meta"}
_FLOW_TYPES = {"Block", "Standard", "BlockRandomizer", "Randomizer", "Group",
               "EmbeddedData", "EndSurvey", "Branch"}


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
