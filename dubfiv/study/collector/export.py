"""The collector's responses as one CSV: a header row of tags, one row per participant.

Each row is :func:`dubfiv.study.jspsych.records.participant_row` of a participant's
stored records with runtime ``jspsych/collector``. The columns are, in this order, the
row's fixed columns (``ResponseId`` ... ``runtime``, the Prolific ids), every answer
tag of the study (:func:`dubfiv.study.qsf.columns.tag_layout`), then any other key the
rows have (first-seen order), so the header does not depend on who came first.
A session without any saved page is a row with only its id, ``Finished`` 0 and the
runtime (as the analysis reads the database). Participants whose records cannot be
read are left out and named in :attr:`ExportSummary.skipped`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dubfiv.files import atomic_write_text
from dubfiv.study.collector.store import Store
from dubfiv.study.content import Study
from dubfiv.study.jspsych.records import (
    RUNTIME_COLUMN,
    RecordsError,
    session_row,
)
from dubfiv.study.qsf.columns import tag_layout
from dubfiv.study.qsf.reader import CONDITION_FIELD, PROLIFIC_FIELDS

__all__ = ["RUNTIME", "ExportSummary", "columns", "response_rows", "responses_csv",
           "write_responses"]

RUNTIME = "jspsych/collector"


@dataclasses.dataclass(frozen=True)
class ExportSummary:
    """What an export wrote: the number of rows, the participants left out (id, reason)
    and the refused starts."""

    rows: int
    skipped: list[tuple[str, str]]
    refusals: int


def response_rows(study: Study, records: Mapping[str, list[dict[str, Any]]]
                  ) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """One row per participant of ``records`` (participant -> trial records), and the
    participants whose records are not readable, with the reason."""
    rows: list[dict[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for participant, trial_records in records.items():
        try:
            rows.append(session_row(study, participant, trial_records, RUNTIME))
        except RecordsError as error:
            skipped.append((participant, str(error)))
    return rows, skipped


def columns(study: Study, rows: list[dict[str, str]]) -> list[str]:
    """The CSV's columns: the fixed ones, the study's answer tags, then the rows' other
    keys in first-seen order."""
    layout = tag_layout(study)
    answers = [layout.consent] + ([layout.device] if layout.device else [])
    answers += [*layout.checks.values(), *layout.relevance.values(),
                *layout.confidence.values(), *layout.prediction.values()]
    out = dict.fromkeys(["ResponseId", "StartDate", "RecordedDate", "Duration (in seconds)",
                         "Finished", "DistributionChannel", CONDITION_FIELD, RUNTIME_COLUMN,
                         *PROLIFIC_FIELDS, *(c.tag for c in answers)])
    for row in rows:
        out.update(dict.fromkeys(row))
    return list(out)


def responses_csv(study: Study, rows: list[dict[str, str]]) -> str:
    """``rows`` as CSV text: a header row of :func:`columns`, then the rows."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns(study, rows), restval="",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_responses(study: Study, store: Store, path: str | Path) -> ExportSummary:
    """Write the responses of ``store`` as CSV to ``path`` (atomically)."""
    rows, skipped = response_rows(study, store.records_by_participant())
    atomic_write_text(Path(path), responses_csv(study, rows))
    return ExportSummary(rows=len(rows), skipped=skipped, refusals=store.refusals())
