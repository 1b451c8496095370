"""What the jsPsych page records, and how a participant's records become one response row.

Every jsPsych trial record the page stores (in the collector's database, in JATOS,
or in jsPsych's own ``jsPsych.data``) carries, besides jsPsych's own fields
(``trial_type``, ``trial_index``, ``time_elapsed`` in ms, ``rt`` in ms = time on
the page):

==========================  ==========================================================
field                       value
==========================  ==========================================================
``dubfiv_participant``      the participant's id (the collector's session id, else
                            one the page draws)
``dubfiv_arm``              the opaque id of the assigned condition (:func:`arm_id`)
``dubfiv_mode``             ``collector``, ``jatos`` or ``preview``
``dubfiv_started``          ISO 8601 UTC time of the first page
``dubfiv_page``             the page's name (``consent``, ``tutorial_1``,
                            ``comprehension``, ``condition_intro``, ``explanation_1``,
                            ``attributes``, ``check_<tag>`` (an attention check on a
                            page of its own), ``task_3``, ``end``)
``dubfiv_answers``          ``{tag: 1-based choice number}`` of the page's questions
``dubfiv_end``              on the last record only: ``finished``, or why the study
                            ended early (``declined``, ``device``, ``comprehension``)
``PROLIFIC_PID`` ...        Prolific's URL parameters, where given
==========================  ==========================================================

The answer tags are those of Qualtrics' export (``consent``, ``device``, each
check's tag, ``relevance_<i>``, ``confidence_<i>``, ``predict_<task key>``), so
:func:`participant_row` turns one participant's records into a row the same
exclusion rules and model read (:func:`dubfiv.study.qsf.columns.tag_layout`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from dubfiv.errors import DubfivError
from dubfiv.study.content import Study
from dubfiv.study.qsf.reader import CONDITION_FIELD, PROLIFIC_FIELDS

__all__ = [
    "ANSWERS_FIELD",
    "ARM_FIELD",
    "END_FIELD",
    "END_REASONS",
    "EXPERIMENT_JSON",
    "MODES",
    "MODE_FIELD",
    "PAGE_FIELD",
    "PARTICIPANT_FIELD",
    "RUNTIME_COLUMN",
    "STARTED_FIELD",
    "RecordsError",
    "arm_id",
    "arms",
    "check_hash",
    "group_by_participant",
    "participant_row",
    "session_row",
]

EXPERIMENT_JSON = "experiment.json"
"""The participant-facing content of the study, in ``public/`` (no answers, no logits)."""

PARTICIPANT_FIELD = "dubfiv_participant"
ARM_FIELD = "dubfiv_arm"
MODE_FIELD = "dubfiv_mode"
STARTED_FIELD = "dubfiv_started"
PAGE_FIELD = "dubfiv_page"
ANSWERS_FIELD = "dubfiv_answers"
END_FIELD = "dubfiv_end"
MODES = ("collector", "jatos", "preview")
END_REASONS = ("finished", "declined", "device", "comprehension")
RUNTIME_COLUMN = "runtime"
"""Column of a response row naming where it was collected (``jspsych/collector`` ...)."""


class RecordsError(DubfivError, ValueError):
    """Trial records that cannot be read as a participant's responses."""


def arm_id(study: Study, condition_key: str) -> str:
    """The opaque id under which the page knows condition ``condition_key``: 10 hex
    digits of a SHA-256 of the study's internal name, seed and the key (none of them
    in ``public/``), so the page's files do not name the conditions."""
    digest = hashlib.sha256(f"dubfiv-arm\0{study.name}\0{study.seed}\0{condition_key}"
                            .encode()).hexdigest()
    return digest[:10]


def arms(study: Study) -> dict[str, str]:
    """Arm id -> condition key, for every condition of ``study`` (in study order)."""
    return {arm_id(study, c.key): c.key for c in study.conditions}


def check_hash(salt: str, tag: str, choice: int) -> str:
    """FNV-1a (32 bit, 8 hex digits) of ``"<salt>:<tag>:<choice>"`` (UTF-8).

    ``experiment.json`` holds this hash of each comprehension check's right choice
    (not the choice), so the page can end the study at a wrong answer without the
    answer in plain text; the page computes the same hash (``fnv1a`` in
    ``dubfiv-study.js``). It keeps the answer out of sight, not secret: a
    participant who runs the page's code can try the few choices.
    """
    h = 0x811C9DC5
    for byte in f"{salt}:{tag}:{choice}".encode():
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def group_by_participant(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict]]:
    """Trial records grouped by :data:`PARTICIPANT_FIELD`, in first-seen order.

    Raises:
        RecordsError: a record is not an object or has no participant id.
    """
    out: dict[str, list[dict]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise RecordsError(f"record {i}: expected an object, got {type(record).__name__}")
        pid = record.get(PARTICIPANT_FIELD)
        if not isinstance(pid, str) or not pid:
            raise RecordsError(f"record {i} has no {PARTICIPANT_FIELD!r}: not written by "
                               "the dubfiv jsPsych page")
        out.setdefault(pid, []).append(dict(record))
    return out


def _started(records: list[dict]) -> dt.datetime | None:
    for record in records:
        value = record.get(STARTED_FIELD)
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).replace(
                    tzinfo=None)
            except ValueError:
                raise RecordsError(f"{STARTED_FIELD} {value!r} is not an ISO 8601 time") from None
    return None


def participant_row(study: Study, records: list[Mapping[str, Any]], runtime: str
                    ) -> dict[str, str]:
    """One participant's trial records as a response row keyed like Qualtrics' export.

    Columns: ``ResponseId`` (the participant id), ``StartDate``, ``RecordedDate``,
    ``Duration (in seconds)``, ``Finished`` (``1`` when a record says
    ``dubfiv_end: finished``), ``DistributionChannel`` (``preview`` for preview
    runs), ``condition`` (the key of the arm; the arm id itself if unknown, which the
    analysis excludes as an unknown condition), the Prolific fields, every answer
    tag, and :data:`RUNTIME_COLUMN`. A page saved twice (a retry) counts once:
    later answers to a tag replace earlier ones.
    """
    if not records:
        raise RecordsError("no records")
    records = sorted(records, key=lambda r: (r.get("time_elapsed") or 0))
    first = records[0]
    started = _started(records)
    elapsed_s = max(float(r.get("time_elapsed") or 0) for r in records) / 1000.0
    arm = str(first.get(ARM_FIELD, ""))
    row: dict[str, str] = {
        "ResponseId": str(first[PARTICIPANT_FIELD]),
        "StartDate": "" if started is None else f"{started:%Y-%m-%d %H:%M:%S}",
        "RecordedDate": "" if started is None else
        f"{started + dt.timedelta(seconds=elapsed_s):%Y-%m-%d %H:%M:%S}",
        "Duration (in seconds)": f"{elapsed_s:.0f}",
        "Finished": "1" if any(r.get(END_FIELD) == "finished" for r in records) else "0",
        "DistributionChannel": "preview" if first.get(MODE_FIELD) == "preview" else "anonymous",
        CONDITION_FIELD: arms(study).get(arm, arm),
        RUNTIME_COLUMN: runtime,
    }
    for field in PROLIFIC_FIELDS:
        values = [r.get(field) for r in records if r.get(field)]
        row[field] = str(values[0]) if values else ""
    for record in records:
        answers = record.get(ANSWERS_FIELD) or {}
        if isinstance(answers, str):  # stored as JSON text by some servers
            try:
                answers = json.loads(answers)
            except json.JSONDecodeError:
                raise RecordsError(f"{ANSWERS_FIELD} of participant {row['ResponseId']} is "
                                   "not JSON") from None
        if not isinstance(answers, Mapping):
            raise RecordsError(f"{ANSWERS_FIELD} of participant {row['ResponseId']} is not "
                               "an object")
        for tag, value in answers.items():
            row[str(tag)] = "" if value is None else str(value)
    return row


def session_row(study: Study, participant: str, records: list[Mapping[str, Any]],
                runtime: str) -> dict[str, str]:
    """:func:`participant_row` of one stored session, whose records get its id
    ``participant``; a session without a saved page (opened, nothing answered) is a row
    of its own: started, unfinished.

    Raises:
        RecordsError: as :func:`participant_row`.
    """
    if not records:
        return {"ResponseId": participant, "Finished": "0", RUNTIME_COLUMN: runtime}
    return participant_row(study, [{**r, PARTICIPANT_FIELD: participant} for r in records],
                           runtime)
