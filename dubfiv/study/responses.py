"""Read a Qualtrics CSV export of responses: header rows, columns, cells, choices.

The file is UTF-8 (a byte-order mark is allowed) with three header rows --
export tag, question text, import-id JSON such as ``{"ImportId":"QID5_1"}`` --
then one row per response. Columns are found by export tag, else by import
id, so renaming a question in Qualtrics does not break the analysis.

Missing answers: an empty cell and Qualtrics' ``-99`` ("seen but not
answered", written when a participant saw a question and skipped it) are both
*missing* (:func:`is_missing`). A missing answer is neither an error nor a
wrong answer: it is left out of every count (see ``docs/study_analysis.md``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

from dubfiv.errors import DubfivError
from dubfiv.study.qualtrics import Column

__all__ = [
    "MISSING_CODES",
    "Responses",
    "ResultsError",
    "choice",
    "is_missing",
    "parse_number",
    "parse_time",
    "read_responses",
]

#: Cell values that mean "no answer": empty, and Qualtrics' "seen but unanswered".
MISSING_CODES = frozenset({"", "-99"})


class ResultsError(DubfivError, ValueError):
    """The responses cannot be analysed (missing file, wrong survey, bad values)."""


def is_missing(value: str) -> bool:
    """True for an empty cell or Qualtrics' ``-99`` (seen but unanswered)."""
    return value.strip() in MISSING_CODES


@dataclasses.dataclass
class Responses:
    """The CSV: header rows and data rows (lists of cells, padded to the header width)."""

    path: Path
    tags: list[str]
    import_ids: list[str]
    rows: list[list[str]]

    def find(self, column: Column) -> int | None:
        """Index of a column, by export tag, else by import id (``None`` if absent)."""
        if column.tag in self.tags:
            return self.tags.index(column.tag)
        if column.import_id and column.import_id in self.import_ids:
            return self.import_ids.index(column.import_id)
        return None


def read_responses(path: str | os.PathLike[str]) -> Responses:
    """Read a Qualtrics CSV export (three header rows); blank rows are dropped."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"responses file {path} not found (export the survey's responses "
                           "from Qualtrics as CSV and pass its path as `responses_csv`)")
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            table = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"cannot read {path} as CSV: {exc}") from exc
    if len(table) < 3 or not table[2] or not table[2][0].lstrip().startswith("{"):
        raise ResultsError(f"{path} does not start with Qualtrics' three header rows (export "
                           "tag, question text, import id); export it again as CSV without "
                           "removing rows")
    import_ids = []
    for cell in table[2]:
        try:
            import_ids.append(str(json.loads(cell).get("ImportId", "")))
        except (json.JSONDecodeError, AttributeError):
            import_ids.append("")
    width = len(table[0])
    rows = [r + [""] * (width - len(r)) for r in table[3:] if any(c.strip() for c in r)]
    return Responses(path, [t.strip() for t in table[0]], import_ids, rows)


def choice(value: str, labels: list[str], where: str) -> int | None:
    """0-based choice index of a cell holding a 1-based choice number or a choice text.

    Returns ``None`` for a missing answer (:func:`is_missing`); raises
    :class:`ResultsError` naming ``where`` for anything else.
    """
    value = value.strip()
    if is_missing(value):
        return None
    if value.isdigit() and 1 <= int(value) <= len(labels):
        return int(value) - 1
    folded = [lab.strip().casefold() for lab in labels]
    if value.casefold() in folded:
        return folded.index(value.casefold())
    raise ResultsError(f"{where}: unexpected answer {value!r}; expected 1..{len(labels)}, "
                       f"one of {labels}, empty or -99 (unanswered)")


def parse_number(value: str, where: str) -> float | None:
    """A number cell (e.g. ``Duration (in seconds)``); ``None`` if missing."""
    if is_missing(value):
        return None
    try:
        return float(value.strip())
    except ValueError:
        raise ResultsError(f"{where}: expected a number, got {value!r}") from None


def parse_time(value: str, where: str) -> dt.datetime | None:
    """A Qualtrics date cell (``2024-05-01 10:00:00`` or ISO 8601); ``None`` if missing.

    Time zones are dropped: all dates of one export share the zone named in
    its third header row.
    """
    if is_missing(value):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        pass
    for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%y %H:%M"):
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ResultsError(f"{where}: cannot read the date {value!r} (expected e.g. "
                       "2024-05-01 10:00:00)")
