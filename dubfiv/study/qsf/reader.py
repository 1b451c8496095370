"""Reading Qualtrics survey files (``.qsf``).

:func:`read_qsf` / :func:`parse_qsf` recover the structure of a survey (blocks,
flow, questions, export tags, image URLs, the conditions assigned by the
randomizer, the attribute rows of the relevance matrix, embedded-data fields,
end-of-survey redirects); :func:`written_by_dubfiv` tells the surveys of
:mod:`dubfiv.study.qsf.writer` (marked with :data:`WRITER_MARK`) from others;
:mod:`dubfiv.study.qsf.validate` checks them. Blocks may be a list (as in
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
from urllib.parse import unquote

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
_IMG_RE = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']([^"']*)["']""", re.IGNORECASE)
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


def written_by_dubfiv(qsf: Mapping[str, Any]) -> bool:
    """Whether ``qsf`` is a survey this project wrote (its entry carries :data:`WRITER_MARK`)."""
    entry = qsf.get("SurveyEntry") if isinstance(qsf, Mapping) else None
    return isinstance(entry, Mapping) and entry.get("SurveyDescription") == WRITER_MARK


def _payload(el: Mapping[str, Any]) -> Mapping[str, Any]:
    """An element's Payload, or an empty mapping if it is not an object."""
    payload = el.get("Payload")
    return payload if isinstance(payload, Mapping) else {}


def _subset(value: Any) -> int | None:
    """A randomizer's SubSet as a number (Qualtrics' exports may write a digit string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None
