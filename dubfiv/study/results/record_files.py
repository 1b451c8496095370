"""Trial records from the files jsPsych and JATOS write, with where each came from.

Accepted (all UTF-8; a byte-order mark is allowed):

* a JSON array of trial records, as ``jsPsych.data.get().json()`` writes it (one
  participant or several concatenated), or a JSON array of such arrays;
* JSON Lines: one record (or one array of records) per line;
* several JSON arrays back to back (``[...][...]`` or one per line), as JATOS stores
  a result whose page appended its data page by page (``jatos.appendResultData``);
* a JATOS results export: a ``.zip`` of per-result text files
  (``study_result_<n>/comp-result_<m>/data.txt``), or a folder of such files (read
  in path order). In an archive or folder, the files ending in ``.txt``, ``.json``
  or ``.jsonl`` are read, except JATOS' ``metadata.json``, files in a ``files/``
  folder (uploads), hidden files and macOS' ``__MACOSX/``; empty ones (a result
  without data) are skipped.

Every record must be a JSON object with a ``dubfiv_participant`` id (the page's
records contract, :mod:`dubfiv.study.jspsych.records`). A damaged file is a
:class:`~dubfiv.study.results.responses.ResultsError` naming the file (the member of
the archive), the line and column or the record, and the fix; never a response.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from dubfiv.study.jspsych.records import PARTICIPANT_FIELD
from dubfiv.study.results.responses import ResultsError

__all__ = [
    "DATA_SUFFIXES",
    "RecordFile",
    "is_data_member",
    "parse_records",
    "read_record_files",
]

DATA_SUFFIXES = (".txt", ".json", ".jsonl")
"""Files of an archive or folder that hold trial records."""
_SKIPPED_NAMES = frozenset({"metadata.json"})
_SKIPPED_DIRS = frozenset({"files", "__MACOSX"})
_FIX = ("pass the data file that jsPsych or JATOS wrote, unchanged (if it was cut off, "
        "download the JATOS results again)")
_WHITESPACE = " \t\r\n"


@dataclasses.dataclass
class RecordFile:
    """The trial records of one file (``name`` is how messages call it: the path, or
    ``archive.zip:member`` for a member of an archive)."""

    name: str
    records: list[dict[str, Any]]


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ResultsError(f"{name}, line {line}: not UTF-8 text; {_FIX}") from None


def _values(text: str, name: str) -> Iterator[Any]:
    """The JSON values of ``text``, one after the other (whitespace between them)."""
    decoder = json.JSONDecoder()
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            return
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise ResultsError(f"{name}, line {exc.lineno} column {exc.colno}: not JSON "
                               f"({exc.msg}); {_FIX}") from None
        yield value


def parse_records(text: str, name: str) -> list[dict[str, Any]]:
    """The trial records of a file's text: arrays (also nested once, or back to back) and
    JSON Lines; each must be an object with a ``dubfiv_participant``.

    Raises:
        ResultsError: not JSON, something else than records, or a record without a
            participant id (the message names ``name`` and the record, 1-based).
    """
    records: list[dict[str, Any]] = []

    def add(value: Any, depth: int) -> None:
        if isinstance(value, list) and depth < 2:
            for item in value:
                add(item, depth + 1)
            return
        where = f"{name}, record {len(records) + 1}"
        if not isinstance(value, dict):
            raise ResultsError(f"{where}: expected a trial record (a JSON object), got "
                               f"{_kind(value)}; {_FIX}")
        pid = value.get(PARTICIPANT_FIELD)
        if not isinstance(pid, str) or not pid.strip():
            raise ResultsError(f"{where} has no {PARTICIPANT_FIELD!r}: not written by the "
                               "dubfiv jsPsych page (export the study with the jsPsych "
                               "runtime and pass only the data it recorded)")
        records.append(value)

    for value in _values(text, name):
        add(value, 0)
    return records


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array nested more than twice"
    return {str: "a string", bool: "a boolean", type(None): "null", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def is_data_member(relative: str) -> bool:
    """Whether a path inside a JATOS export (``/``-separated) holds trial records."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in _SKIPPED_DIRS or p.startswith(".") for p in parts):
        return False
    return parts[-1] not in _SKIPPED_NAMES and PurePosixPath(parts[-1]).suffix in DATA_SUFFIXES


def _read_zip(path: Path) -> list[RecordFile]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist()
                       if not m.is_dir() and is_data_member(m.filename)]
            files = []
            for member in members:
                name = f"{path}:{member.filename}"
                files.append(RecordFile(name, parse_records(
                    _decode(name, archive.read(member)), name)))
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise ResultsError(f"{path}: not a readable zip archive ({exc}); download the "
                           "results from JATOS again and pass the archive unchanged") from None
    if not members:
        raise ResultsError(f"{path}: the archive holds no result data ({', '.join(DATA_SUFFIXES)}"
                           " files); pass the archive of JATOS' results export")
    return files


def _natural_key(relative: str) -> list[tuple[int, int | str]]:
    """Sort key comparing runs of digits as numbers (``2`` before ``10``)."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", relative) if part]


def _read_folder(path: Path) -> list[RecordFile]:
    files = sorted((p for p in path.rglob("*")
                    if p.is_file() and is_data_member(p.relative_to(path).as_posix())),
                   key=lambda p: _natural_key(p.relative_to(path).as_posix()))
    if not files:
        raise ResultsError(f"{path}: the folder holds no result data ({', '.join(DATA_SUFFIXES)}"
                           " files); pass JATOS' results export (unzipped) or a jsPsych data "
                           "file")
    return [RecordFile(str(p), parse_records(_decode(str(p), p.read_bytes()), str(p)))
            for p in files]


def read_record_files(path: str | os.PathLike[str]) -> list[RecordFile]:
    """The records of a data file, a JATOS ``.zip`` or a folder (module docstring).

    Raises:
        ResultsError: damaged input (see :func:`parse_records`), an archive or folder
            without data files, or a single file without records.
        OSError: the file cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return _read_zip(path)
    text = _decode(str(path), path.read_bytes())
    records = parse_records(text, str(path))
    if not records:
        raise ResultsError(f"{path}: no trial records (an empty file or array); {_FIX}")
    return [RecordFile(str(path), records)]
