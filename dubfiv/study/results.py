"""Analyse a Qualtrics CSV export of a study built by :mod:`dubfiv.study.qualtrics`.

Input: the CSV as Qualtrics exports it (UTF-8, three header rows: export tag,
question text, import-id JSON such as ``{"ImportId":"QID5_1"}``), either with
numeric values or with choice texts. Columns are found by export tag, else by
import id (:func:`dubfiv.study.qualtrics.response_layout`):

=================  =====================  ==============================================
column (row 1)     import id (row 3)      value
=================  =====================  ==============================================
``Finished``       ``finished``           ``1``/``True`` = finished (others skipped)
``Status``         ``status``             optional; previews, tests and spam skipped
``ResponseId``     ``_recordId``          optional, used in error messages
``consent``        ``QID<c>``             ``1`` / agree text; anything else = declined
``condition``      ``condition``          embedded data: the condition key
``relevance_<i>``  ``QID<r>_<i>``         ``1`` relevant / ``2`` irrelevant (or texts)
``confidence_<i>`` ``QID<f>_<i>``         ``1`` .. ``5`` (or the scale texts)
``predict_<task>`` ``QID<p>``             ``1`` / ``2`` = ``class_names[0]`` / ``[1]``
=================  =====================  ==============================================

``<i>`` is the 1-based position of the attribute in ``study.attributes``.
For each condition and attribute the share of participants who judged it
relevant gets a 95% Wilson score interval; the prediction accuracy (answer =
the model's prediction) is pooled over answers (Wilson interval, treating
answers as independent) and also averaged per participant.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from dubfiv.errors import DubfivError
from dubfiv.files import atomic_write
from dubfiv.study.content import Study, write_text_atomic
from dubfiv.study.qualtrics import (
    Column,
    QsfError,
    ResponseLayout,
    read_qsf,
    response_layout,
)

__all__ = [
    "QSF_NAME",
    "RESULTS_JSON",
    "RESULTS_PNG",
    "ResultsError",
    "analyse_responses",
    "analyse_study",
    "read_responses",
    "summary_table",
    "wilson_interval",
    "write_figure",
    "write_results",
]

QSF_NAME = "study.qsf"
RESULTS_JSON = "results.json"
RESULTS_PNG = "results.png"
FINISHED = Column("Finished", "finished")
STATUS = Column("Status", "status")
RESPONSE_ID = Column("ResponseId", "_recordId")
_SKIP_STATUS = {"1", "2", "8", "9", "12", "17", "survey preview", "survey test", "spam",
                "survey preview spam", "imported spam", "offline survey preview"}


class ResultsError(DubfivError, ValueError):
    """The responses cannot be analysed (missing file, wrong survey, bad values)."""


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k/n`` (no continuity correction)."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


@dataclasses.dataclass
class Responses:
    """The CSV: header rows and data rows (lists of cells)."""

    path: Path
    tags: list[str]
    import_ids: list[str]
    rows: list[list[str]]

    def find(self, column: Column) -> int | None:
        """Index of a column, by export tag, else by import id."""
        if column.tag in self.tags:
            return self.tags.index(column.tag)
        if column.import_id in self.import_ids:
            return self.import_ids.index(column.import_id)
        return None


def read_responses(path: str | os.PathLike[str]) -> Responses:
    """Read a Qualtrics CSV export (three header rows)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"responses file {path} not found (export the survey's responses "
                           "from Qualtrics as CSV and pass it with --responses)")
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


def _choice(value: str, labels: list[str], where: str) -> int | None:
    """0-based choice index of a cell holding a choice number or a choice text."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit() and 1 <= int(value) <= len(labels):
        return int(value) - 1
    folded = [lab.strip().casefold() for lab in labels]
    if value.casefold() in folded:
        return folded.index(value.casefold())
    raise ResultsError(f"{where}: unexpected answer {value!r}; expected 1..{len(labels)} or "
                       f"one of {labels}")


def _proportion(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"n": 0, "k": 0, "share": None, "ci95": None}
    lo, hi = wilson_interval(k, n)
    return {"n": n, "k": k, "share": k / n, "ci95": [lo, hi]}


def analyse_responses(study: Study, responses: Responses, layout: ResponseLayout
                      ) -> dict[str, Any]:
    """Shares, intervals and accuracies per condition (see the module docstring)."""
    needed = {"consent": layout.consent, "condition": layout.condition, "Finished": FINISHED}
    needed.update({c.tag: c for c in layout.relevance.values()})
    needed.update({c.tag: c for c in layout.confidence.values()})
    needed.update({c.tag: c for c in layout.prediction.values()})
    index = {name: responses.find(col) for name, col in needed.items()}
    missing = [name for name, i in index.items() if i is None]
    if missing:
        raise ResultsError(f"{responses.path} is not an export of this survey "
                           f"({study.name!r}): columns missing: {', '.join(missing)}")
    status_i, id_i = responses.find(STATUS), responses.find(RESPONSE_ID)
    skipped = {"preview_or_spam": 0, "unfinished": 0, "declined": 0, "unknown_condition": 0}
    keys = [c.key for c in study.conditions]
    per: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    for r, row in enumerate(responses.rows):
        where = f"{responses.path.name} response {row[id_i] if id_i is not None else r + 1}"
        if status_i is not None and row[status_i].strip().casefold() in _SKIP_STATUS:
            skipped["preview_or_spam"] += 1
            continue
        if row[index["Finished"]].strip().casefold() not in ("1", "true"):
            skipped["unfinished"] += 1
            continue
        consent = _choice(row[index["consent"]], [study.consent_agree, study.consent_decline],
                          f"{where}, column consent")
        if consent != 0:
            skipped["declined"] += 1
            continue
        cond = row[index["condition"]].strip()
        if cond not in per:
            skipped["unknown_condition"] += 1
            continue
        answer = {
            "relevant": {a.key: _choice(row[index[layout.relevance[a.key].tag]],
                                        list(study.relevance_answers),
                                        f"{where}, column {layout.relevance[a.key].tag}")
                         for a in study.attributes},
            "confidence": {a.key: _choice(row[index[layout.confidence[a.key].tag]],
                                          list(study.confidence_answers),
                                          f"{where}, column {layout.confidence[a.key].tag}")
                           for a in study.attributes},
            "predict": {t.key: _choice(row[index[layout.prediction[t.key].tag]],
                                       list(study.class_names),
                                       f"{where}, column {layout.prediction[t.key].tag}")
                        for t in study.tasks},
        }
        per[cond].append(answer)
    conditions: dict[str, Any] = {}
    for key in keys:
        answers = per[key]
        attrs: dict[str, Any] = {}
        for a in study.attributes:
            votes = [ans["relevant"][a.key] for ans in answers
                     if ans["relevant"][a.key] is not None]
            conf = [ans["confidence"][a.key] + 1 for ans in answers
                    if ans["confidence"][a.key] is not None]
            entry = {"label": a.label, "ground_truth": a.relevant,
                     **_proportion(sum(v == 0 for v in votes), len(votes)),
                     "mean_confidence": sum(conf) / len(conf) if conf else None,
                     "n_confidence": len(conf)}
            if a.relevant is not None and votes:
                entry["share_correct"] = sum((v == 0) == a.relevant for v in votes) / len(votes)
            attrs[a.key] = entry
        conditions[key] = {"title": study.condition(key).title,
                           "n_participants": len(answers), "attributes": attrs,
                           "prediction": _prediction(study, answers)}
    return {"study": study.name, "responses": str(responses.path),
            "n_rows": len(responses.rows),
            "n_used": sum(len(v) for v in per.values()), "skipped": skipped,
            "conditions": conditions}


def _prediction(study: Study, answers: list[dict[str, Any]]) -> dict[str, Any]:
    k = n = 0
    per_participant = []
    by_model = {True: [0, 0], False: [0, 0]}  # model correct? -> [k, n]
    for ans in answers:
        kp = np_ = 0
        for task in study.tasks:
            choice = ans["predict"][task.key]
            if choice is None:
                continue
            model = study.model_prediction(task)
            hit = int(study.class_names[choice] == model)
            kp, np_ = kp + hit, np_ + 1
            slot = by_model[model == task.true_label]
            slot[0], slot[1] = slot[0] + hit, slot[1] + 1
        k, n = k + kp, n + np_
        if np_:
            per_participant.append(kp / np_)
    out = _proportion(k, n)
    out["accuracy"] = out.pop("share")
    out["per_participant_mean"] = (sum(per_participant) / len(per_participant)
                                   if per_participant else None)
    out["model_correct_tasks"] = _proportion(*by_model[True])
    out["model_wrong_tasks"] = _proportion(*by_model[False])
    return out


def analyse_study(responses_csv: str | os.PathLike[str], study_dir: str | os.PathLike[str]
                  ) -> dict[str, Any]:
    """Load ``study_dir/study.json`` (and ``study.qsf`` if present) and analyse the CSV."""
    responses = read_responses(responses_csv)
    study = Study.load(study_dir)
    qsf = Path(study_dir) / QSF_NAME
    try:
        layout = response_layout(study, read_qsf(qsf) if qsf.is_file() else None)
    except QsfError as exc:
        raise ResultsError(f"{qsf}: {exc}") from exc
    return analyse_responses(study, responses, layout)


def write_figure(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """One panel per condition: share judged relevant (bars, 95% CI), ground truth marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conds = results["conditions"]
    fig = Figure(figsize=(4.2 * max(len(conds), 1), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(conds), 1), sharey=True, squeeze=False)[0]
    for ax, (key, cond) in zip(axes, conds.items(), strict=False):
        attrs = list(cond["attributes"].values())
        xs = range(len(attrs))
        shares = [a["share"] if a["share"] is not None else 0.0 for a in attrs]
        err = [[a["share"] - a["ci95"][0] if a["ci95"] else 0 for a in attrs],
               [a["ci95"][1] - a["share"] if a["ci95"] else 0 for a in attrs]]
        ax.bar(xs, shares, yerr=err, capsize=3, color="#7a9cc6", label="judged relevant")
        known = [(i, a["ground_truth"]) for i, a in enumerate(attrs)
                 if a["ground_truth"] is not None]
        if known:
            ax.scatter([i for i, _ in known], [1.0 if t else 0.0 for _, t in known],
                       marker="D", color="black", zorder=3,
                       label="ground truth (? unknown)")
        for i, a in enumerate(attrs):
            if a["ground_truth"] is None:
                ax.text(i, 1.02, "?", ha="center", color="grey")
        ax.set_xticks(list(xs), [a["label"] for a in attrs], rotation=45, ha="right")
        ax.set_ylim(-0.05, 1.1)
        ax.set_title(f"{key} (n={cond['n_participants']})")
    axes[0].set_ylabel("share judging the attribute relevant")
    axes[0].legend(loc="upper right", fontsize="small")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150))


def write_results(results: dict[str, Any], output_dir: str | os.PathLike[str]
                  ) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.png`` into ``output_dir`` (created if needed)."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsError(f"cannot create output folder {out}: {exc.strerror}") from exc
    json_path = out / RESULTS_JSON
    write_text_atomic(json_path, json.dumps(results, indent=2) + "\n")
    return json_path, write_figure(results, out / RESULTS_PNG)


def ci_text(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def summary_table(results: dict[str, Any]) -> str:
    """A plain-text table: condition, attribute, share [CI], ground truth."""
    lines = [f"{'condition':<10} {'attribute':<26} {'n':>4} {'relevant':>8} "
             f"{'95% CI':>15} {'truth':>10}"]
    for key, cond in results["conditions"].items():
        for a in cond["attributes"].values():
            share = "-" if a["share"] is None else f"{a['share']:.2f}"
            ci = ci_text(a["ci95"])
            truth = {True: "relevant", False: "irrelevant", None: "unknown"}[a["ground_truth"]]
            lines.append(f"{key:<10} {a['label']:<26} {a['n']:>4} {share:>8} {ci:>15} "
                         f"{truth:>10}")
        pred = cond["prediction"]
        if pred["n"]:
            lines.append(f"{key:<10} {'prediction accuracy':<26} {pred['n']:>4} "
                         f"{pred['accuracy']:>8.2f} "
                         f"{ci_text(pred['ci95']):>15}")
    return "\n".join(lines)
