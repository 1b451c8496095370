"""Which responses of a Qualtrics export enter the analysis, and why the others do not.

Each response is tested against the rules of :data:`RULES` in that order and
counted under the *first* rule it fails, so the counts add up to the number of
excluded responses (a CONSORT-style flow):

1. ``preview`` -- ``Status`` is a preview, test or spam status, or
   ``DistributionChannel`` is ``preview`` / ``test`` (the researcher's own runs);
2. ``declined`` -- consent answered with the decline choice, or a finished
   response without a consent answer;
3. ``wrong_device`` -- the device question (export tag ``device``, asked with
   consent when ``Study.device_choices`` is set) answered with another choice
   than the first (a desktop or laptop computer): the survey ended there;
4. ``duplicate`` -- a later attempt of a ``PROLIFIC_PID`` that already has an
   attempt past consent (and the device question): the attempts are ordered by
   ``StartDate``, then ``RecordedDate``, then file order, and only the first
   is kept, even if it later fails a rule (no second tries: the later attempt
   has seen the study material before);
5. ``failed_comprehension`` / 6. ``failed_attention`` -- any check of that kind
   (:attr:`dubfiv.study.content.Study.checks`) answered with a wrong choice;
7. ``unfinished`` -- ``Finished`` is not ``1`` / ``True``;
8. ``unknown_condition`` -- the embedded-data ``condition`` is not a condition
   of the study;
9. ``too_fast`` -- ``Duration (in seconds)`` below ``min_duration_s``.

A missing cell (empty or ``-99``, :func:`dubfiv.study.results.responses.is_missing`)
never fails a rule: an unanswered check is not a failed check (nor an
unanswered device question a wrong device), a response
without a duration is not too fast, one without a ``PROLIFIC_PID`` is no
duplicate. Optional columns (``Status``, ``DistributionChannel``,
``PROLIFIC_PID``, dates, duration, ``device``) that are absent switch their rule off with a
note in the report; the columns of the study's checks are required. The
reasons for this order are in ``docs/study_analysis.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from dubfiv.study.content import Study
from dubfiv.study.qsf.columns import Column, ResponseLayout
from dubfiv.study.qsf.reader import TAG_DEVICE
from dubfiv.study.results.responses import (
    Responses,
    ResultsError,
    choice,
    is_missing,
    parse_number,
    parse_time,
)

__all__ = [
    "DEFAULT_MIN_DURATION_S",
    "RULES",
    "ExclusionConfig",
    "ExclusionReport",
    "apply_exclusions",
    "default_min_duration_s",
]

#: (rule, description) in the order they are applied.
RULES: tuple[tuple[str, str], ...] = (
    ("preview", "survey preview, test or spam (Status / DistributionChannel)"),
    ("declined", "declined consent"),
    ("wrong_device", "not on a desktop or laptop computer (device question)"),
    ("duplicate", "later attempt of a PROLIFIC_PID"),
    ("failed_comprehension", "wrong answer to a comprehension check"),
    ("failed_attention", "wrong answer to an attention check"),
    ("unfinished", "did not finish the survey"),
    ("unknown_condition", "no known condition recorded"),
    ("too_fast", "finished faster than min_duration_s"),
)
#: Threshold when the study has no duration estimate: nobody reads the explanation,
#: answers the attribute questions and the prediction tasks in under two minutes.
DEFAULT_MIN_DURATION_S = 120.0
#: With an estimate: a third of the estimated time (a common rule of thumb).
ESTIMATE_FRACTION = 1 / 3

FINISHED = Column("Finished", "finished")
STATUS = Column("Status", "status")
CHANNEL = Column("DistributionChannel", "distributionChannel")
RESPONSE_ID = Column("ResponseId", "_recordId")
PROLIFIC_PID = Column("PROLIFIC_PID", "PROLIFIC_PID")
START_DATE = Column("StartDate", "startDate")
RECORDED_DATE = Column("RecordedDate", "recordedDate")
DURATION = Column("Duration (in seconds)", "duration")

# Qualtrics' Status: numeric codes and their texts; 0 (IP Address) and 4 (Imported) stay.
_SKIP_STATUS = frozenset({
    "1", "2", "8", "9", "12", "16", "17", "survey preview", "survey test", "spam",
    "survey preview spam", "imported spam", "offline survey preview", "offline"})
_SKIP_CHANNEL = frozenset({"preview", "test"})


@dataclasses.dataclass
class ExclusionConfig:
    """Parameters of the exclusion rules."""

    #: Responses faster than this (seconds) are excluded; ``None``: from the study
    #: (:func:`default_min_duration_s`); ``0`` switches the rule off.
    min_duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.min_duration_s is not None and not self.min_duration_s >= 0:
            raise ResultsError(f"`min_duration_s` must be >= 0 seconds (0 switches the rule "
                               f"off), got {self.min_duration_s}")


def _estimated_seconds(study: Study) -> float | None:
    """The study's own duration estimate in seconds, if it has one."""
    minutes = study.estimated_minutes
    if minutes is not None and minutes > 0:
        return float(minutes) * 60.0
    return None


def default_min_duration_s(study: Study) -> tuple[float, str]:
    """The default threshold (seconds) and where it comes from (for the report)."""
    estimate = _estimated_seconds(study)
    if estimate is None:
        return DEFAULT_MIN_DURATION_S, "fixed default (the study has no duration estimate)"
    return (estimate * ESTIMATE_FRACTION,
            f"a third of the study's estimated {estimate / 60:g} minutes")


@dataclasses.dataclass
class ExclusionReport:
    """The outcome: rows kept (file order) and, per excluded row, its first failed rule."""

    kept: list[int]
    reasons: dict[int, str]
    min_duration_s: float
    min_duration_source: str
    notes: list[str]

    @property
    def counts(self) -> dict[str, int]:
        """Rule -> number of responses excluded by it (every rule listed)."""
        out = {rule: 0 for rule, _ in RULES}
        for rule in self.reasons.values():
            out[rule] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": len(self.kept) + len(self.reasons), "n_kept": len(self.kept),
                "excluded": self.counts, "rules": dict(RULES),
                "min_duration_s": self.min_duration_s,
                "min_duration_source": self.min_duration_source, "notes": self.notes}


def apply_exclusions(study: Study, responses: Responses, layout: ResponseLayout,
                     config: ExclusionConfig | None = None) -> ExclusionReport:
    """Apply :data:`RULES` to every row of ``responses`` (see the module docstring).

    ``layout`` holds the survey's columns (consent, condition, checks, device;
    :func:`dubfiv.study.qsf.columns.response_layout`).
    """
    config = config or ExclusionConfig()
    if config.min_duration_s is None:
        min_s, source = default_min_duration_s(study)
    else:
        min_s, source = float(config.min_duration_s), "set by `min_duration_s`"
    missing_checks = [c.tag for c in study.checks if c.tag not in layout.checks]
    if missing_checks:
        raise ResultsError(f"the survey has no questions for the checks {missing_checks}")
    required = {"Finished": FINISHED, "consent": layout.consent, "condition": layout.condition}
    required.update(layout.checks)
    index = {name: responses.find(col) for name, col in required.items()}
    missing = [name for name, i in index.items() if i is None]
    if missing:
        raise ResultsError(f"{responses.path} is not an export of this survey "
                           f"({study.name!r}): columns missing: {', '.join(missing)}")
    optional = {col.tag: responses.find(col) for col in
                (STATUS, CHANNEL, PROLIFIC_PID, START_DATE, RECORDED_DATE, DURATION,
                 RESPONSE_ID)}
    devices = list(study.device_choices) if layout.device is not None else []
    optional[TAG_DEVICE] = responses.find(layout.device) if layout.device is not None else None
    notes = []
    if devices and optional[TAG_DEVICE] is None:
        notes.append(f"no {TAG_DEVICE} column: rule 'wrong_device' not applied")
    for tag, rule in (("PROLIFIC_PID", "duplicate"), ("Duration (in seconds)", "too_fast")):
        if optional[tag] is None:
            notes.append(f"no {tag} column: rule {rule!r} not applied")
    if optional["Status"] is None and optional["DistributionChannel"] is None:
        notes.append("no Status or DistributionChannel column: rule 'preview' not applied")

    def cell(row: list[str], tag: str) -> str:
        i = optional[tag] if tag in optional else index[tag]
        return "" if i is None else row[i]

    def where(r: int) -> str:
        rid = cell(responses.rows[r], "ResponseId").strip()
        return f"{responses.path.name} response {rid or r + 1}"

    reasons: dict[int, str] = {}
    consented: list[int] = []
    labels = [study.consent_agree, study.consent_decline]
    for r, row in enumerate(responses.rows):
        if (cell(row, "Status").strip().casefold() in _SKIP_STATUS
                or cell(row, "DistributionChannel").strip().casefold() in _SKIP_CHANNEL):
            reasons[r] = "preview"
            continue
        agreed = choice(cell(row, "consent"), labels, f"{where(r)}, column consent")
        if agreed == 1 or (agreed is None and _finished(cell(row, "Finished"))):
            reasons[r] = "declined"
            continue
        device = (choice(cell(row, TAG_DEVICE), devices, f"{where(r)}, column {TAG_DEVICE}")
                  if devices else None)
        if device is not None and device != 0:
            reasons[r] = "wrong_device"
        elif agreed == 0:
            consented.append(r)
    _mark_duplicates(responses, consented, reasons, cell, where)
    keys = {c.key for c in study.conditions}
    kept = []
    for r, row in enumerate(responses.rows):
        if r in reasons:
            continue
        failed = _failed_check(study, row, cell, where(r))
        if failed:
            reasons[r] = failed
        elif not _finished(cell(row, "Finished")):
            reasons[r] = "unfinished"
        elif cell(row, "condition").strip() not in keys:
            reasons[r] = "unknown_condition"
        elif min_s > 0 and (secs := parse_number(cell(row, "Duration (in seconds)"),
                                                 f"{where(r)}, column Duration (in seconds)")
                            ) is not None and secs < min_s:
            reasons[r] = "too_fast"
        else:
            kept.append(r)
    return ExclusionReport(kept, dict(sorted(reasons.items())), min_s, source, notes)


def _finished(value: str) -> bool:
    return value.strip().casefold() in ("1", "true")


def _failed_check(study: Study, row: list[str], cell: Any, where: str) -> str | None:
    """``failed_comprehension`` / ``failed_attention`` for a wrong answer, else ``None``."""
    for kind in ("comprehension", "attention"):
        for chk in study.checks:
            if chk.kind != kind:
                continue
            got = choice(cell(row, chk.tag), chk.choices, f"{where}, column {chk.tag}")
            if got is not None and got + 1 != chk.correct:
                return f"failed_{kind}"
    return None


def _mark_duplicates(responses: Responses, consented: list[int], reasons: dict[int, str],
                     cell: Any, where: Any) -> None:
    """Mark every attempt past consent but the first of each ``PROLIFIC_PID``."""
    latest = dt.datetime.max

    def order(r: int) -> tuple[dt.datetime, dt.datetime, int]:
        row = responses.rows[r]
        start = parse_time(cell(row, "StartDate"), f"{where(r)}, column StartDate")
        recorded = parse_time(cell(row, "RecordedDate"), f"{where(r)}, column RecordedDate")
        return (start or latest, recorded or latest, r)

    seen: set[str] = set()
    for r in sorted(consented, key=order):
        pid = cell(responses.rows[r], "PROLIFIC_PID").strip()
        if is_missing(pid):
            continue
        if pid in seen:
            reasons[r] = "duplicate"
        seen.add(pid)
