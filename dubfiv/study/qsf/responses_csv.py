"""Write responses as Qualtrics' CSV export does: for tests and simulated studies.

:func:`write_responses_csv` writes rows keyed by export tag (e.g. from
:func:`dubfiv.study.results.simulate.simulate`) with the export's three header
rows (export tag, question text, import id JSON) in Qualtrics' column order;
import ids come from the survey built for the study
(:func:`dubfiv.study.qsf.writer.build_qsf`), so the file reads back through
:mod:`dubfiv.study.results` exactly like a real export.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from dubfiv.files import atomic_write_text
from dubfiv.study.content import Study
from dubfiv.study.qsf.columns import response_layout
from dubfiv.study.qsf.reader import TAG_DEVICE, parse_qsf
from dubfiv.study.qsf.writer import build_qsf

__all__ = ["EMBEDDED_COLUMNS", "META_COLUMNS", "write_responses_csv"]

#: Qualtrics' metadata columns: (export tag, import id).
META_COLUMNS = [
    ("StartDate", "startDate"), ("EndDate", "endDate"), ("Status", "status"),
    ("IPAddress", "ipAddress"), ("Progress", "progress"),
    ("Duration (in seconds)", "duration"), ("Finished", "finished"),
    ("RecordedDate", "recordedDate"), ("ResponseId", "_recordId"),
    ("DistributionChannel", "distributionChannel"), ("UserLanguage", "userLanguage")]
#: Embedded data written by the survey flow (the import id is the field name).
EMBEDDED_COLUMNS = ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "condition"]

def _columns(study: Study) -> list[tuple[str, str]]:
    """(export tag, import id) of every column, in Qualtrics' order."""
    parsed = parse_qsf(build_qsf(study, study.image_base_url or "https://example.invalid"))
    layout = response_layout(study, parsed)
    cols = [*META_COLUMNS, (layout.consent.tag, layout.consent.import_id)]
    if layout.device is not None:
        cols.append((layout.device.tag, layout.device.import_id))
    cols += [(c.tag, c.import_id) for c in layout.checks.values()]
    cols += [(c.tag, c.import_id) for c in layout.relevance.values()]
    cols += [(c.tag, c.import_id) for c in layout.confidence.values()]
    cols += [(c.tag, c.import_id) for c in layout.prediction.values()]
    return cols + [(name, name) for name in EMBEDDED_COLUMNS]


def _as_text(study: Study, tag: str, value: str) -> str:
    """The choice-text form of a numeric cell (Qualtrics' "Use choice text" export)."""
    labels: list[str] | None = None
    if tag == "consent":
        labels = [study.consent_agree, study.consent_decline]
    elif tag.startswith("relevance_"):
        labels = list(study.relevance_answers)
    elif tag.startswith("confidence_"):
        labels = list(study.confidence_answers)
    elif tag.startswith("predict_"):
        labels = list(study.class_names)
    elif tag in {c.tag for c in study.checks}:
        labels = next(c.choices for c in study.checks if c.tag == tag)
    elif tag == TAG_DEVICE:
        labels = list(study.device_choices)
    elif tag == "Finished":
        return {"1": "True", "0": "False"}.get(value, value)
    elif tag == "Status":
        return {"0": "IP Address", "1": "Survey Preview", "2": "Survey Test",
                "8": "Spam"}.get(value, value)
    if labels is not None and value.isdigit() and 1 <= int(value) <= len(labels):
        return labels[int(value) - 1]
    return value


def write_responses_csv(path: str | os.PathLike[str], study: Study,
                        rows: list[dict[str, str]], numeric: bool = True) -> Path:
    """Write ``rows`` as Qualtrics exports them: three header rows, then one row each.

    Cells missing from a row are written empty; ``numeric=False`` writes choice
    texts instead of choice numbers. Import ids come from the survey built for
    ``study`` (:func:`dubfiv.study.qsf.writer.build_qsf`).
    """
    cols = _columns(study)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([tag for tag, _ in cols])
    writer.writerow([f"{tag} (question text)" for tag, _ in cols])
    writer.writerow([json.dumps({"ImportId": imp}) for _, imp in cols])
    for row in rows:
        cells = [row.get(tag, "") for tag, _ in cols]
        if not numeric:
            cells = [_as_text(study, tag, v) for (tag, _), v in zip(cols, cells, strict=True)]
        writer.writerow(cells)
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path
