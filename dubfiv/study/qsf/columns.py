"""Where each answer of a survey lands in Qualtrics' CSV export of responses.

:func:`response_layout` maps the questions of a parsed survey
(:func:`dubfiv.study.qsf.reader.parse_qsf`) onto the export's columns: header
row 1 holds a question's export tag (``relevance_3``), row 3 its import id
(``QID7_3``). The analysis (:mod:`dubfiv.study.results`) reads answers through
this layout; it needs the survey's reader, never its writer.
"""

from __future__ import annotations

import dataclasses

from dubfiv.study.content import Study
from dubfiv.study.qsf.reader import (
    CONDITION_FIELD,
    PROLIFIC_FIELDS,
    TAG_CONFIDENCE,
    TAG_CONSENT,
    TAG_DEVICE,
    TAG_RELEVANCE,
    ParsedSurvey,
    QsfError,
)

__all__ = ["Column", "ResponseLayout", "response_layout", "tag_layout"]


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
    checks: dict[str, Column] = dataclasses.field(default_factory=dict)  # check tag -> column
    device: Column | None = None  # the device question (choice 1 = desktop), if asked
    embedded: dict[str, Column] = dataclasses.field(default_factory=dict)  # Prolific ids

    def columns(self) -> list[Column]:
        """The answer columns every finished response has (not the checks, the device
        question or the Prolific ids: see ``checks``, ``device``, ``embedded``)."""
        return [self.consent, self.condition, *self.relevance.values(),
                *self.confidence.values(), *self.prediction.values()]


def response_layout(study: Study, parsed: ParsedSurvey) -> ResponseLayout:
    """The export columns of ``parsed``, the survey built from ``study``.

    Raises :class:`QsfError` if ``parsed`` does not match the study (another
    survey, or attributes changed).
    """
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

    missing_checks = [c.tag for c in study.checks if c.tag not in tags]
    if missing_checks:
        raise QsfError(f"the survey has no check questions tagged {missing_checks}: it was "
                       "not built from this study")
    return ResponseLayout(
        consent=Column(TAG_CONSENT, tags[TAG_CONSENT]),
        condition=Column(CONDITION_FIELD, CONDITION_FIELD),
        relevance=matrix(TAG_RELEVANCE), confidence=matrix(TAG_CONFIDENCE),
        prediction={t.key: Column(f"predict_{t.key}", tags[f"predict_{t.key}"])
                    for t in study.tasks},
        checks={c.tag: Column(c.tag, tags[c.tag]) for c in study.checks},
        device=Column(TAG_DEVICE, tags[TAG_DEVICE]) if TAG_DEVICE in tags else None,
        embedded={f: Column(f, f) for f in PROLIFIC_FIELDS if f in parsed.embedded_fields})


def tag_layout(study: Study) -> ResponseLayout:
    """The same columns as :func:`response_layout`, found by export tag alone: for rows of
    runtimes without a ``.qsf`` (the jsPsych page's records,
    :func:`dubfiv.study.jspsych.records.participant_row`), whose keys are these tags."""

    def by_tag(tag: str) -> Column:
        return Column(tag, tag)

    return ResponseLayout(
        consent=by_tag(TAG_CONSENT), condition=by_tag(CONDITION_FIELD),
        relevance={a.key: by_tag(f"{TAG_RELEVANCE}_{i + 1}")
                   for i, a in enumerate(study.attributes)},
        confidence={a.key: by_tag(f"{TAG_CONFIDENCE}_{i + 1}")
                    for i, a in enumerate(study.attributes)},
        prediction={t.key: by_tag(f"predict_{t.key}") for t in study.tasks},
        checks={c.tag: by_tag(c.tag) for c in study.checks},
        device=by_tag(TAG_DEVICE) if study.device_choices else None,
        embedded={f: by_tag(f) for f in PROLIFIC_FIELDS})
