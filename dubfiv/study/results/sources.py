"""Where a study's responses come from: Qualtrics, the collector, jsPsych and JATOS.

Each reader turns one runtime's data into the same three things -- a
:class:`~dubfiv.study.results.responses.Responses` table (one row per response or
participant, columns keyed by export tag), the
:class:`~dubfiv.study.qsf.columns.ResponseLayout` saying which column holds which
answer, and a :class:`RuntimeInfo` for the report -- so the exclusion rules and the
model (:func:`dubfiv.study.results.analysis.analyse_responses`) are one code path
for every runtime.

======================  ====================================================  =====================
format                  input (detected by content, not by name)              runtime
======================  ====================================================  =====================
``qualtrics-csv``       Qualtrics' CSV export (three header rows); the        ``qualtrics``
                        columns come from ``STUDY_DIR/study.qsf``
``collector-csv``       ``dubfiv_study_serve --export``: one header row of    the ``runtime``
                        export tags with a ``runtime`` column                 column
``jspsych-json``        a jsPsych data file: JSON array(s), JSON Lines,       ``jspsych/jatos`` or
                        arrays back to back (JATOS' appended ``.txt``)        ``jspsych/file``
``jatos-zip``           JATOS' results export (a ``.zip`` of ``data.txt``)    (per participant,
``jspsych-folder``      a folder of such files (an unzipped export)           from ``dubfiv_mode``)
``collector-database``  the collector's database (``sqlite:///...``,         ``jspsych/collector``
                        ``postgresql://...``)
======================  ====================================================  =====================

Trial records (:mod:`dubfiv.study.results.record_files`, the collector's
database) are grouped by participant and turned into rows by
:func:`dubfiv.study.jspsych.records.participant_row`; such rows are read with
:func:`dubfiv.study.qsf.columns.tag_layout`, and every column of that layout is
present (empty = missing answer) even where no participant got that far. A
participant of the collector's database without any saved page is a row with
only its id (counted as ``unfinished``). Answers tagged with a question the study
does not ask are an error: the data come from another study, or ``study.json``
changed after they were collected.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import itertools
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from dubfiv.errors import DubfivError
from dubfiv.study.content import Study
from dubfiv.study.jspsych.records import (
    MODE_FIELD,
    PARTICIPANT_FIELD,
    RUNTIME_COLUMN,
    RecordsError,
    group_by_participant,
    session_row,
)
from dubfiv.study.qsf.columns import ResponseLayout, response_layout, tag_layout
from dubfiv.study.qsf.reader import CONDITION_FIELD, PROLIFIC_FIELDS, QsfError, read_qsf
from dubfiv.study.results.record_files import read_record_files
from dubfiv.study.results.responses import Responses, ResultsError, read_responses

__all__ = [
    "FORMATS",
    "QSF_NAME",
    "ROW_META",
    "RUNTIME_COLLECTOR",
    "RUNTIME_FILE",
    "RUNTIME_JATOS",
    "RUNTIME_QUALTRICS",
    "RecordStore",
    "RuntimeInfo",
    "Source",
    "detect_format",
    "open_collector_store",
    "read_collector_csv",
    "read_database",
    "read_qualtrics",
    "read_source",
    "read_store",
    "read_trial_records",
    "redact_url",
    "responses_path",
    "rows_to_responses",
]

QSF_NAME = "study.qsf"
RUNTIME_QUALTRICS = "qualtrics"
RUNTIME_COLLECTOR = "jspsych/collector"
RUNTIME_JATOS = "jspsych/jatos"
RUNTIME_FILE = "jspsych/file"
FORMATS = {
    "qualtrics-csv": "Qualtrics CSV export",
    "collector-csv": "collector export CSV",
    "jspsych-json": "jsPsych data file",
    "jatos-zip": "JATOS results archive",
    "jspsych-folder": "folder of jsPsych/JATOS data files",
    "collector-database": "collector database",
}
"""Format name -> how the report calls it."""
ROW_META = ("ResponseId", "StartDate", "RecordedDate", "Duration (in seconds)", "Finished",
            "DistributionChannel", CONDITION_FIELD, *PROLIFIC_FIELDS, RUNTIME_COLUMN)
"""Columns of :func:`~dubfiv.study.jspsych.records.participant_row` besides the answers."""
_ANSWER_COLUMN = re.compile(r"(relevance|confidence)_\d+|predict_.+")
_EXPORT_AGAIN = ("export the responses again with `dubfiv_study_serve STUDY_DIR --export "
                 "FILE` and pass that file unchanged")
_FOREIGN = ("the data come from another study, or study.json changed after they were "
            "collected: analyse them with the study folder they were collected with")


class RecordStore(Protocol):
    """What the analysis reads of the collector's store
    (:func:`dubfiv.study.collector.store.open_store`)."""

    def records_by_participant(self) -> Mapping[str, list[dict[str, Any]]]:
        """Participant id -> every stored trial record, in page-save order."""
        ...

    def refusals(self) -> int:
        """Attempts refused at the start (the PROLIFIC_PID had already taken part)."""
        ...


@dataclasses.dataclass
class RuntimeInfo:
    """Where the responses came from, for ``results.json`` (``runtime``) and the report."""

    #: ``qualtrics``, ``jspsych/collector``, ``jspsych/jatos``, ``jspsych/file``; rows of
    #: several runtimes: their names joined with ``+`` (counts in ``by_runtime``).
    name: str
    #: A key of :data:`FORMATS`.
    format: str
    #: The file or folder read, or the database URL without its password.
    source: str
    #: Responses (Qualtrics) or participants (jsPsych runtimes) read.
    participants: int
    #: Collector database only: attempts refused at the start because the
    #: PROLIFIC_PID had already finished or been screened out (never rows).
    refused: int | None = None
    #: Runtime name -> rows.
    by_runtime: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.refused is None:
            del out["refused"]
        return out

    @staticmethod
    def describe(info: Mapping[str, Any]) -> str:
        """One line naming the runtime, the source and the refusals (from :meth:`to_dict`)."""
        unit = "responses" if info["name"] == RUNTIME_QUALTRICS else "participants"
        text = (f"runtime: {info['name']} ({FORMATS.get(info['format'], info['format'])} "
                f"{info['source']}; {info['participants']} {unit}")
        if len(info.get("by_runtime") or {}) > 1:
            text += ": " + ", ".join(f"{k} {v}" for k, v in info["by_runtime"].items())
        if info.get("refused") is not None:
            text += (f"; {info['refused']} attempts refused at the start because the "
                     "PROLIFIC_PID had already taken part")
        return text + ")"


class Source(NamedTuple):
    """What a reader returns: the table, its layout, and where it came from."""

    responses: Responses
    layout: ResponseLayout
    runtime: RuntimeInfo


# ------------------------------------------------------------------ detection


def responses_path(responses: str | os.PathLike[str]) -> Path:
    """``responses`` as a path that exists (:class:`ResultsError` otherwise)."""
    path = Path(responses)
    if not path.exists():
        raise ResultsError(f"responses file {path} not found (pass Qualtrics' CSV export, the "
                           "collector's exported CSV, or jsPsych/JATOS data as `responses`)")
    return path


def _csv_format(head: str) -> str:
    """``collector-csv`` for a header row with a ``runtime`` column and no third row of
    import ids; else ``qualtrics-csv`` (whose reader names what else is wrong)."""
    try:
        rows = list(itertools.islice(csv.reader(io.StringIO(head, newline="")), 3))
    except csv.Error:
        return "qualtrics-csv"
    if not rows or (len(rows) >= 3 and rows[2] and rows[2][0].lstrip().startswith("{")):
        return "qualtrics-csv"
    header = [cell.strip() for cell in rows[0]]
    return "collector-csv" if RUNTIME_COLUMN in header else "qualtrics-csv"


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a responses file or folder (a key of :data:`FORMATS`), by content.

    A CSV that is neither export falls to ``qualtrics-csv``, whose reader names what is
    wrong with it.
    """
    path = Path(path)
    if path.is_dir():
        return "jspsych-folder"
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return "jatos-zip"
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\0" in head[:4]:
        return "qualtrics-csv"  # Excel's UTF-16 text: that reader names it
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    if head.lstrip()[:1] in (b"[", b"{"):
        return "jspsych-json"
    return _csv_format(head.decode("utf-8", errors="replace"))


def read_source(study: Study, study_dir: str | os.PathLike[str],
                responses: str | os.PathLike[str] | None = None,
                database: str | None = None) -> Source:
    """Read ``responses`` (a file or folder, format detected) or the collector's
    ``database`` (a URL): exactly one of the two.

    Raises:
        ResultsError: neither or both given, missing or damaged input (one line naming
            the file, line or record, and the fix).
        OSError: a file cannot be read.
    """
    if (responses is None) == (database is None):
        raise ResultsError("give the responses either as a file or folder (`responses`) or "
                           "as the collector's database URL (`database`): exactly one")
    if database is not None:
        return read_database(study, database)
    path = responses_path(responses)
    fmt = detect_format(path)
    if fmt == "qualtrics-csv":
        return read_qualtrics(study, study_dir, path)
    if fmt == "collector-csv":
        return read_collector_csv(study, path)
    return read_trial_records(study, path)


# ------------------------------------------------------------------ rows -> table


def _layout_tags(layout: ResponseLayout) -> list[str]:
    cols = [layout.consent, *([layout.device] if layout.device else []),
            *layout.checks.values(), *layout.relevance.values(), *layout.confidence.values(),
            *layout.prediction.values()]
    return [c.tag for c in cols]


def rows_to_responses(study: Study, path: Path, rows: list[Mapping[str, str]],
                      strict: bool = True) -> Responses:
    """A :class:`Responses` of rows keyed by export tag (import ids = tags).

    Columns: :data:`ROW_META`, every answer column of
    :func:`~dubfiv.study.qsf.columns.tag_layout` (present even if no row has it:
    missing answers), then any other key in first-seen order. A key that the study
    does not ask is an error: any at all with ``strict`` (rows made from trial records,
    whose keys besides the metadata are answer tags), else those that look like answer
    columns (``relevance_<i>``, ``confidence_<i>``, ``predict_<task>``).
    """
    base = [*ROW_META, *_layout_tags(tag_layout(study))]
    known = set(base)
    extra: list[str] = []
    for row in rows:
        unknown = [k for k in row if k not in known and k not in extra]
        foreign = [k for k in unknown if strict or _ANSWER_COLUMN.fullmatch(k)]
        if foreign:
            who = (f"participant {row.get('ResponseId', '?')}" if strict
                   else f"column {foreign[0]}")
            raise ResultsError(f"{path}, {who}: answers tagged {foreign} that the study "
                               f"{study.name!r} does not ask; {_FOREIGN}")
        extra += unknown
    tags = base + extra
    return Responses(path, tags, list(tags),
                     [[str(row.get(tag, "") or "") for tag in tags] for row in rows])


def _unknown_arms(study: Study, rows: list[Mapping[str, str]]) -> list[str]:
    keys = {c.key for c in study.conditions}
    arms = sorted({r.get(CONDITION_FIELD, "") for r in rows} - keys - {""})
    if not arms:
        return []
    n = sum(r.get(CONDITION_FIELD, "") in arms for r in rows)
    return [f"{n} of {len(rows)} participants recorded an arm that is no condition of this study "
            f"({', '.join(arms[:3])}{', ...' if len(arms) > 3 else ''}; excluded as "
            "unknown_condition): arm ids depend on the study's name and seed, so the records "
            "come from another study or study.json changed after the export"]


def _runtime(name_of: Iterable[str], fmt: str, source: str, rows: list[Mapping[str, str]],
             study: Study, refused: int | None = None) -> RuntimeInfo:
    counts: dict[str, int] = {}
    for name in name_of:
        counts[name] = counts.get(name, 0) + 1
    return RuntimeInfo("+".join(counts), fmt, source, len(rows), refused, counts,
                       _unknown_arms(study, rows))


def _require_rows(rows: list[Any], what: str) -> None:
    if not rows:
        raise ResultsError(f"{what} holds no participants yet: nothing to analyse")


# ------------------------------------------------------------------ readers


def read_qualtrics(study: Study, study_dir: str | os.PathLike[str],
                   path: str | os.PathLike[str]) -> Source:
    """Qualtrics' CSV export; the columns come from the survey the export wrote
    (``study_dir/study.qsf``, :func:`~dubfiv.study.qsf.columns.response_layout`)."""
    responses = read_responses(path)
    qsf = Path(study_dir) / QSF_NAME
    if not qsf.is_file():
        raise ResultsError(f"{qsf}: no survey file; the response columns are read from the "
                           "survey the export wrote: copy study.qsf back into the study folder "
                           "or export the study again")
    try:
        layout = response_layout(study, read_qsf(qsf))
    except QsfError as exc:
        raise ResultsError(f"{qsf}: {exc}") from exc
    n = len(responses.rows)
    return Source(responses, layout, RuntimeInfo(
        RUNTIME_QUALTRICS, "qualtrics-csv", str(path), n, None, {RUNTIME_QUALTRICS: n}))


def read_collector_csv(study: Study, path: str | os.PathLike[str]) -> Source:
    """The collector's export (``dubfiv_study_serve --export``): one header row of export
    tags, one row per participant, a ``runtime`` column.

    Raises:
        ResultsError: not UTF-8, broken quoting, no ``ResponseId``/``runtime`` column, or
            a row shorter than the header (naming the line).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ResultsError(f"{path}, line {line}: not UTF-8 (a spreadsheet saved it in "
                           f"another encoding); {_EXPORT_AGAIN}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    table: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            table.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ResultsError(f"{path}, line {start}: broken quoting ({exc}; the file was cut "
                           f"off or edited); {_EXPORT_AGAIN}") from None
    header = [c.strip() for c in table[0][1]] if table else []
    missing = [c for c in ("ResponseId", RUNTIME_COLUMN) if c not in header]
    if missing:
        raise ResultsError(f"{path}: no {' or '.join(missing)} column: not the collector's "
                           f"export; {_EXPORT_AGAIN}")
    rows = []
    for line, cells in table[1:]:
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len(header):
            raise ResultsError(f"{path}, line {line}: a row with {len(cells)} of the header's "
                               f"{len(header)} columns (cut off or damaged); {_EXPORT_AGAIN}")
        rows.append(dict(zip(header, cells, strict=False)))
    _require_rows(rows, str(path))
    responses = rows_to_responses(study, path, rows, strict=False)
    return Source(responses, tag_layout(study), _runtime(
        (r[RUNTIME_COLUMN].strip() or "unknown" for r in rows), "collector-csv", str(path),
        rows, study))


def _rows_of_records(study: Study, groups: Mapping[str, list[Mapping[str, Any]]],
                     runtime: str | None, where: Mapping[str, str] | str
                     ) -> list[dict[str, str]]:
    """One row per participant (``runtime`` ``None``: from ``dubfiv_mode``)."""
    rows = []
    for pid, records in groups.items():
        place = where if isinstance(where, str) else where[pid]
        name = runtime or (RUNTIME_JATOS if any(r.get(MODE_FIELD) == "jatos" for r in records)
                           else RUNTIME_FILE)
        try:
            rows.append(session_row(study, pid, records, name))
        except RecordsError as exc:
            raise ResultsError(f"{place}, participant {pid}: {exc}; pass the records the "
                               "dubfiv jsPsych page wrote, unchanged") from None
    return rows


def read_trial_records(study: Study, path: str | os.PathLike[str]) -> Source:
    """jsPsych/JATOS trial records (a file, a JATOS ``.zip`` or a folder;
    :mod:`~dubfiv.study.results.record_files`), one row per participant."""
    path = Path(path)
    fmt = detect_format(path)
    files = read_record_files(path)
    first_file: dict[str, str] = {}
    records = []
    for f in files:
        for record in f.records:
            first_file.setdefault(record[PARTICIPANT_FIELD], f.name)
            records.append(record)
    groups = group_by_participant(records)
    rows = _rows_of_records(study, groups, None, first_file)
    _require_rows(rows, str(path))
    responses = rows_to_responses(study, path, rows)
    return Source(responses, tag_layout(study), _runtime(
        (r[RUNTIME_COLUMN] for r in rows), fmt, str(path), rows, study))


# ------------------------------------------------------------------ the collector's database


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    tail = re.sub(r"(?i)(\bpassword=)[^&]*", r"\1***", tail)
    return f"{scheme}://{netloc}{slash}{tail}"


def _password(url: str) -> str | None:
    netloc = url.partition("://")[2].partition("/")[0]
    userinfo = netloc.rpartition("@")[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


def _check_url(url: str) -> None:
    shown = redact_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ResultsError(f"`database` {shown!r} is not a database URL; give the one the "
                           "collector uses, e.g. sqlite:///STUDY_DIR/records/collector.sqlite "
                           "or postgresql://USER@HOST/DBNAME")
    if scheme.split("+")[0].lower() == "sqlite":
        file = rest.partition("?")[0]
        file = file[1:] if file.startswith("/") else ""
        if not file or file == ":memory:":
            raise ResultsError(f"`database` {shown!r} names no SQLite file; give "
                               "sqlite:///PATH (relative) or sqlite:////PATH (absolute)")
        if not Path(file).is_file():
            raise ResultsError(f"`database` {shown!r}: no SQLite file {file} (reading must not "
                               "create an empty one); pass the file dubfiv_study_serve wrote")


def open_collector_store(url: str) -> Any:
    """The collector's store for ``url`` (:func:`dubfiv.study.collector.store.open_store`;
    imported here, so the other readers work without the collector's dependencies)."""
    try:
        from dubfiv.study.collector.store import open_store
    except ImportError as exc:
        raise ResultsError(f"`database` needs the collector (dubfiv.study.collector), which "
                           f"cannot be imported ({exc}); install dubfiv with its dependencies "
                           "(pip install -e .) or pass its exported CSV as `responses`") from None
    return open_store(url)


def _database_errors() -> tuple[type[BaseException], ...]:
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:
        return (OSError,)
    return (OSError, SQLAlchemyError)


def read_store(study: Study, store: RecordStore, source: str) -> Source:
    """The participants of an open store (``source``: how messages name it), one row
    each; the refusals go into :attr:`RuntimeInfo.refused`."""
    groups = dict(store.records_by_participant())
    refused = int(store.refusals())
    for pid, records in groups.items():
        bad = next((i for i, r in enumerate(records) if not isinstance(r, Mapping)), None)
        if bad is not None:
            raise ResultsError(f"{source}, participant {pid}, record {bad + 1}: not a trial "
                               "record (an object); the database was not written by "
                               "dubfiv_study_serve")
    rows = _rows_of_records(study, groups, RUNTIME_COLLECTOR, source)
    _require_rows(rows, f"the collector database {source}")
    responses = rows_to_responses(study, Path(source), rows)
    return Source(responses, tag_layout(study), _runtime(
        (r[RUNTIME_COLUMN] for r in rows), "collector-database", source, rows, study, refused))


def read_database(study: Study, url: str) -> Source:
    """Every participant of the collector's database at ``url`` (SQLAlchemy URL), and the
    number of refused attempts.

    Raises:
        ResultsError: not a URL, an SQLite file that does not exist, the collector not
            importable, a database that cannot be read (the URL shown without password).
    """
    _check_url(url)
    shown = redact_url(url)
    try:
        store = open_collector_store(url)
        try:
            groups = dict(store.records_by_participant())
            refused = int(store.refusals())
        finally:
            store.close()
    except DubfivError:
        raise
    except _database_errors() as exc:
        text = " ".join(str(exc).split("\n")[0].split())
        secret = _password(url)
        if secret:
            text = text.replace(secret, "***")
        raise ResultsError(f"cannot read the collector database {shown}: {text}; check "
                           "`database` (the URL dubfiv_study_serve uses)") from None
    return read_store(study, _Snapshot(groups, refused), shown)


@dataclasses.dataclass
class _Snapshot:
    """A store's content, read (so the store can be closed before the analysis)."""

    groups: dict[str, list[dict[str, Any]]]
    refused: int

    def records_by_participant(self) -> dict[str, list[dict[str, Any]]]:
        return self.groups

    def refusals(self) -> int:
        return self.refused
