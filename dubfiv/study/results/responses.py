"""Read a Qualtrics CSV export of responses: header rows, columns, cells, choices.

The file is UTF-8 (a byte-order mark is allowed) with three header rows --
export tag, question text, import-id JSON such as ``{"ImportId":"QID5_1"}`` --
then one row per response. Columns are found by export tag, else by import
id, so renaming a question in Qualtrics does not break the analysis.

Missing answers: an empty cell and Qualtrics' ``-99`` ("seen but not
answered", written when a participant saw a question and skipped it) are both
*missing* (:func:`is_missing`). A missing answer is neither an error nor a
wrong answer: it is left out of every count (see ``docs/study_analysis.md``).

A damaged file is an error naming the file, the line and the fix, never a
response: a data row with fewer cells than the header (a download cut in the
middle of a row), a quoted field still open at the end of the file, and a file
that is not UTF-8 (Excel's "CSV" in Windows-1252/Latin-1, or its "Unicode
text" in UTF-16) -- Excel also rewrites dates and long IDs, so the fix is to
export the responses from Qualtrics again.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime as dt
import io
import json
import os
from pathlib import Path

from dubfiv.errors import DubfivError
from dubfiv.study.qsf.columns import Column

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
_EXPORT_AGAIN = ("export the responses from Qualtrics again (Data & Analysis > Export & "
                 "Import > Export Data > CSV) and pass that file unchanged")


class ResultsError(DubfivError, ValueError):
    """The responses cannot be analysed (missing file, wrong survey, bad values)."""


def is_missing(value: str) -> bool:
    """True for an empty cell or Qualtrics' ``-99`` (seen but unanswered)."""
    return value.strip() in MISSING_CODES


@dataclasses.dataclass
class Responses:
    """The CSV: header rows and data rows (lists of cells, none shorter than the header)."""

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


def _decode(path: Path, data: bytes) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped); :class:`ResultsError`
    naming what the file is instead (UTF-16, Windows-1252/Latin-1) and the fix."""
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        len(data) >= 4 and b"\0" in data[:4])
    if utf16:
        raise ResultsError(
            f"{path} is UTF-16 text (as Excel saves \"Unicode text\", usually tab-separated), "
            f"not Qualtrics' CSV; {_EXPORT_AGAIN}, or save it from Excel as \"CSV UTF-8\"")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ResultsError(
            f"{path}, line {line}: not UTF-8 (probably Windows-1252/Latin-1, as Excel saves "
            f"\"CSV\"); {_EXPORT_AGAIN}, or save it from Excel as \"CSV UTF-8\"") from None


def _rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """``(first line, cells)`` of every CSV row; :class:`ResultsError` for a quoted field
    that is never closed or other broken quoting, naming the line."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        lines = text.count("\n") + (not text.endswith("\n"))
        what = ("a quoted field is never closed (the file ends inside it, so it was cut "
                "off)" if reader.line_num >= lines else f"broken quoting ({exc})")
        raise ResultsError(f"{path}, line {start}: {what}; {_EXPORT_AGAIN}") from None
    return rows


def read_responses(path: str | os.PathLike[str]) -> Responses:
    """Read a Qualtrics CSV export (three header rows); blank rows are dropped.

    Raises:
        ResultsError: no such file, not UTF-8, broken quoting, no Qualtrics header, or a
            data row shorter than the header (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"responses file {path} not found (export the survey's responses "
                           "from Qualtrics as CSV and pass its path as `responses_csv`)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from exc
    table = _rows(path, _decode(path, data))
    if len(table) < 3 or not table[2][1] or not table[2][1][0].lstrip().startswith("{"):
        raise ResultsError(f"{path} does not start with Qualtrics' three header rows (export "
                           "tag, question text, import id); export it again as CSV without "
                           "removing rows")
    import_ids = []
    for cell in table[2][1]:
        try:
            import_ids.append(str(json.loads(cell).get("ImportId", "")))
        except (json.JSONDecodeError, AttributeError):
            import_ids.append("")
    width = len(table[0][1])
    rows = []
    for line, row in table[3:]:
        if not any(c.strip() for c in row):
            continue
        if len(row) < width:
            raise ResultsError(
                f"{path}, line {line}: a response with {len(row)} of the header's {width} "
                f"columns (the file was cut off or damaged); {_EXPORT_AGAIN}")
        rows.append(row)
    return Responses(path, [t.strip() for t in table[0][1]], import_ids, rows)


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
