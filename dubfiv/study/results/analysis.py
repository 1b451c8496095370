"""Analyse the responses of a study, whichever runtime collected them.

:func:`analyse_study` reads Qualtrics' CSV export, the collector's export or
database, or jsPsych/JATOS trial records (:mod:`dubfiv.study.results.sources`:
each becomes the same table of export tags) and hands it to
:func:`analyse_responses`, the one path of exclusions and model for all of them;
``results["runtime"]`` says where the data came from.

Qualtrics' input: the CSV as Qualtrics exports it (:mod:`dubfiv.study.results.responses`: three
header rows, numeric values or choice texts; empty cells and ``-99`` are
missing answers). Columns are found by export tag, else by import id
(:func:`dubfiv.study.qsf.columns.response_layout`):

=========================  =======================  ============================================
column (row 1)             import id (row 3)        value
=========================  =======================  ============================================
``Finished``               ``finished``             ``1``/``True`` = finished
``Status``                 ``status``               optional; previews, tests, spam excluded
``DistributionChannel``    ``distributionChannel``  optional; ``preview``/``test`` excluded
``ResponseId``             ``_recordId``            optional, names responses in messages
``StartDate``              ``startDate``            optional, orders duplicate attempts
``RecordedDate``           ``recordedDate``         optional, orders duplicate attempts
``Duration (in seconds)``  ``duration``             optional, for ``min_duration_s``
``PROLIFIC_PID``           ``PROLIFIC_PID``         optional embedded data, for duplicates
``consent``                ``QID<c>``               ``1`` / agree text; ``2`` = declined
``device``                 ``QID<d>``               if asked: ``1`` = desktop or laptop
``<check tag>``            ``QID<k>``               each of ``study.checks``: choice number
``condition``              ``condition``            embedded data: the condition key
``relevance_<i>``          ``QID<r>_<i>``           ``1`` relevant / ``2`` irrelevant (or texts)
``confidence_<i>``         ``QID<f>_<i>``           ``1`` .. ``5`` (or the scale texts)
``predict_<task>``         ``QID<p>``               ``1`` / ``2`` = ``class_names[0]`` / ``[1]``
=========================  =======================  ============================================

``<i>`` is the 1-based position of the attribute in ``study.attributes``.
Responses are first screened (:mod:`dubfiv.study.results.exclusions`; each rule
counted). Of the responses kept, per condition and attribute the share judging
it relevant gets a 95% Wilson score interval; the prediction accuracy (answer
= the model's prediction) is pooled over answers (Wilson, answers treated as
independent) and averaged per participant. The attribute *accuracy* (answer =
ground truth, attributes with unknown truth skipped) is computed per
participant and compared between conditions (:mod:`dubfiv.study.results.condition_effect`).
The choices (missing answers, rule order, models) are explained in
``docs/study_analysis.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dubfiv.study.content import Study
from dubfiv.study.qsf.columns import ResponseLayout
from dubfiv.study.results.condition_effect import (
    ParticipantAccuracy,
    compare_conditions,
    default_reference,
)
from dubfiv.study.results.exclusions import (
    FINISHED,
    RESPONSE_ID,
    ExclusionConfig,
    apply_exclusions,
)
from dubfiv.study.results.figure import (
    accuracy_figure,
    relevance_figure,
    save_png,
    write_accuracy_figure,
    write_figure,
)
from dubfiv.study.results.responses import Responses, ResultsError, choice, read_responses
from dubfiv.study.results.sources import QSF_NAME, RuntimeInfo, read_source, responses_path
from two4two.files import atomic_write_many

__all__ = [
    "ACCURACY_PNG",
    "QSF_NAME",
    "RESULTS_JSON",
    "RESULTS_PNG",
    "AnalysisConfig",
    "Responses",
    "ResultsError",
    "analyse_responses",
    "analyse_study",
    "read_responses",
    "summary_table",
    "wilson_interval",
    "write_accuracy_figure",
    "write_figure",
    "write_results",
]

RESULTS_JSON = "results.json"
RESULTS_PNG = "results.png"
ACCURACY_PNG = "accuracy.png"


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
class AnalysisConfig:
    """Parameters of the analysis (exclusions, comparison, bootstrap)."""

    #: Exclude responses faster than this (seconds); ``None``: from the study
    #: (:func:`dubfiv.study.results.exclusions.default_min_duration_s`); ``0``: rule off.
    min_duration_s: float | None = None
    #: Reference condition of the comparison (default: ``baseline``, else the first).
    reference: str | None = None
    #: Seed of the participant bootstrap.
    seed: int = 0
    #: Bootstrap resamples.
    n_boot: int = 2000
    #: Also fit the mixed-effects model (sensitivity analysis).
    mixed_model: bool = True

    def __post_init__(self) -> None:
        self.exclusions = ExclusionConfig(self.min_duration_s)  # validates it
        if self.n_boot < 100:
            raise ResultsError(f"`n_boot` must be >= 100 resamples, got {self.n_boot}")


def _proportion(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"n": 0, "k": 0, "share": None, "ci95": None}
    lo, hi = wilson_interval(k, n)
    return {"n": n, "k": k, "share": k / n, "ci95": [lo, hi]}


def _answers(study: Study, responses: Responses, layout: ResponseLayout,
             kept: list[int]) -> list[dict[str, Any]]:
    """The kept responses' answers (0-based choices, ``None`` = missing)."""
    cols = {c.tag: c for c in layout.columns()}
    index = {tag: responses.find(col) for tag, col in cols.items()}
    missing = sorted(tag for tag, i in index.items() if i is None)
    if missing:
        raise ResultsError(f"{responses.path} is not an export of this survey "
                           f"({study.name!r}): columns missing: {', '.join(missing)}")
    id_i = responses.find(RESPONSE_ID)
    out = []
    for r in kept:
        row = responses.rows[r]
        rid = row[id_i].strip() if id_i is not None and row[id_i].strip() else f"row {r + 1}"
        where = f"{responses.path.name} response {rid}"

        def get(col: Any, labels: list[str], row: list[str] = row, where: str = where
                ) -> int | None:
            return choice(row[index[col.tag]], labels, f"{where}, column {col.tag}")

        out.append({
            "response_id": rid, "condition": row[index[layout.condition.tag]].strip(),
            "relevant": {a.key: get(layout.relevance[a.key], list(study.relevance_answers))
                         for a in study.attributes},
            "confidence": {a.key: get(layout.confidence[a.key], list(study.confidence_answers))
                           for a in study.attributes},
            "predict": {t.key: get(layout.prediction[t.key], list(study.class_names))
                        for t in study.tasks},
        })
    return out


def participant_accuracy(study: Study, answers: list[dict[str, Any]]
                         ) -> list[ParticipantAccuracy]:
    """Per participant: 0/1 per answered attribute with known truth (1 = matches it)."""
    known = [a for a in study.attributes if a.relevant is not None]
    return [ParticipantAccuracy(ans["response_id"], ans["condition"],
                                [int((ans["relevant"][a.key] == 0) == a.relevant)
                                 for a in known if ans["relevant"][a.key] is not None])
            for ans in answers]


def analyse_responses(study: Study, responses: Responses, layout: ResponseLayout,
                      config: AnalysisConfig | None = None) -> dict[str, Any]:
    """Exclusions, shares, intervals, accuracies and the condition comparison.

    See the module docstring for the columns.
    """
    config = config or AnalysisConfig()
    keys = [c.key for c in study.conditions]
    reference = config.reference or default_reference(keys)
    if reference not in keys:
        raise ResultsError(f"`reference` condition {reference!r} is not a condition of "
                           f"the study; choose one of {keys}")
    needed = [*layout.columns(), FINISHED, *layout.checks.values()]
    missing = sorted(col.tag for col in needed if responses.find(col) is None)
    if missing:
        raise ResultsError(f"{responses.path} is not an export of this survey "
                           f"({study.name!r}): columns missing: {', '.join(missing)}")
    report = apply_exclusions(study, responses, layout, config.exclusions)
    answers = _answers(study, responses, layout, report.kept)
    per = {k: [a for a in answers if a["condition"] == k] for k in keys}
    conditions: dict[str, Any] = {}
    for key in keys:
        attrs: dict[str, Any] = {}
        for a in study.attributes:
            votes = [x["relevant"][a.key] for x in per[key] if x["relevant"][a.key] is not None]
            conf = [x["confidence"][a.key] + 1 for x in per[key]
                    if x["confidence"][a.key] is not None]
            entry = {"label": a.label, "ground_truth": a.relevant,
                     **_proportion(sum(v == 0 for v in votes), len(votes)),
                     "mean_confidence": sum(conf) / len(conf) if conf else None,
                     "n_confidence": len(conf)}
            if a.relevant is not None and votes:
                entry["share_correct"] = sum((v == 0) == a.relevant for v in votes) / len(votes)
            attrs[a.key] = entry
        conditions[key] = {"title": study.condition(key).title,
                           "n_participants": len(per[key]), "attributes": attrs,
                           "prediction": _prediction(study, per[key])}
    parts = participant_accuracy(study, answers)
    n_known = sum(a.relevant is not None for a in study.attributes)
    return {"study": study.name, "responses": str(responses.path),
            "n_rows": len(responses.rows), "n_used": len(answers),
            "exclusions": report.to_dict(), "conditions": conditions,
            "accuracy": {
                "attributes_with_truth": n_known,
                "participants": [{"response_id": p.participant, "condition": p.condition,
                                  "n_answered": p.n, "n_correct": sum(p.outcomes),
                                  "accuracy": p.accuracy} for p in parts],
                **compare_conditions(parts, keys, reference, seed=config.seed,
                                     n_boot=config.n_boot, mixed=config.mixed_model)}}


def _prediction(study: Study, answers: list[dict[str, Any]]) -> dict[str, Any]:
    k = n = 0
    per_participant = []
    by_model = {True: [0, 0], False: [0, 0]}  # model correct? -> [k, n]
    for ans in answers:
        kp = np_ = 0
        for task in study.tasks:
            picked = ans["predict"][task.key]
            if picked is None:
                continue
            model = study.model_prediction(task)
            hit = int(study.class_names[picked] == model)
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


def analyse_study(responses: str | os.PathLike[str] | None, study_dir: str | os.PathLike[str],
                  config: AnalysisConfig | None = None, *, database: str | None = None
                  ) -> dict[str, Any]:
    """Load ``study_dir/study.json`` and analyse ``responses`` or ``database``.

    ``responses``: a file or folder, its format detected
    (:func:`dubfiv.study.results.sources.read_source`): Qualtrics' CSV export (its
    columns read from ``study_dir/study.qsf``), the collector's export CSV, or
    jsPsych/JATOS trial records (``.json``, ``.jsonl``, ``.txt``, a JATOS ``.zip`` or a
    folder); ``database``: the collector's database URL instead (exactly one of the
    two). The results name the runtime, the source (a URL without its password) and,
    for the collector's database, the attempts refused at the start
    (``results["runtime"]``, :class:`~dubfiv.study.results.sources.RuntimeInfo`).
    """
    if responses is not None and database is None:
        responses = responses_path(responses)
    study = Study.load(study_dir)
    source = read_source(study, study_dir, responses, database)
    results = analyse_responses(study, source.responses, source.layout, config)
    results["responses"] = source.runtime.source
    results["runtime"] = source.runtime.to_dict()
    return results


def write_results(results: dict[str, Any], output_dir: str | os.PathLike[str]
                  ) -> tuple[Path, Path, Path]:
    """Write ``results.json``, ``results.png`` and ``accuracy.png`` into ``output_dir``.

    The three change together (:func:`two4two.files.atomic_write_many`: every file is
    rendered to a temporary path first, then all are renamed), so a full or read-only
    disk leaves the previous set or none, never ``results.json`` without its figures.

    Raises:
        OSError: the folder cannot be created or written (nothing was changed there).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    figures = {RESULTS_PNG: relevance_figure(results), ACCURACY_PNG: accuracy_figure(results)}
    writers: dict[Path, Callable[[Path], Any]] = {
        out / RESULTS_JSON: lambda tmp: tmp.write_bytes(text.encode("utf-8"))}
    for name, fig in figures.items():
        writers[out / name] = lambda tmp, fig=fig: save_png(fig, tmp)
    json_path, relevance_path, accuracy_path = atomic_write_many(writers)
    return json_path, relevance_path, accuracy_path


def ci_text(ci: list[float] | None, fmt: str = ".2f") -> str:
    return "-" if ci is None else f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def summary_table(results: dict[str, Any]) -> str:
    """Plain-text tables: the runtime (where given); exclusions; share judged relevant;
    accuracy by condition."""
    exc = results["exclusions"]
    runtime = results.get("runtime")
    lines = [RuntimeInfo.describe(runtime)] if runtime else []
    lines += [f"note: {n}" for n in (runtime or {}).get("notes", [])]
    lines += [f"responses: {exc['n_rows']} rows, {exc['n_kept']} kept; excluded: "
             + (", ".join(f"{k} {v}" for k, v in exc["excluded"].items() if v) or "none")
             + f" (minimum duration {exc['min_duration_s']:g} s: "
             f"{exc['min_duration_source']})"]
    lines += [f"note: {n}" for n in exc["notes"]]
    lines += ["", f"{'condition':<10} {'attribute':<26} {'n':>4} {'relevant':>8} "
              f"{'95% CI':>15} {'truth':>10}"]
    for key, cond in results["conditions"].items():
        for a in cond["attributes"].values():
            share = "-" if a["share"] is None else f"{a['share']:.2f}"
            truth = {True: "relevant", False: "irrelevant", None: "unknown"}[a["ground_truth"]]
            lines.append(f"{key:<10} {a['label']:<26} {a['n']:>4} {share:>8} "
                         f"{ci_text(a['ci95']):>15} {truth:>10}")
        pred = cond["prediction"]
        if pred["n"]:
            lines.append(f"{key:<10} {'prediction accuracy':<26} {pred['n']:>4} "
                         f"{pred['accuracy']:>8.2f} {ci_text(pred['ci95']):>15}")
    acc = results["accuracy"]
    if not acc["attributes_with_truth"]:
        return "\n".join([*lines, "", "attribute accuracy: no attribute has a known ground "
                                      "truth, nothing to compare"])
    ref, primary = acc["reference"], acc["primary"]
    lines += ["", f"attribute accuracy ({acc['attributes_with_truth']} attributes with known "
                  f"truth) vs {ref}: mean per-participant accuracy [bootstrap 95% CI],",
              "difference [bootstrap 95% CI], odds ratio [95% CI] and p of a logistic "
              "regression with errors clustered by participant",
              f"{'condition':<10} {'n':>4} {'accuracy':>20} {'difference':>22} "
              f"{'odds ratio':>20} {'p':>7}"]
    for key, s in acc["conditions"].items():
        mean = "-" if s["mean_accuracy"] is None else (
            f"{s['mean_accuracy']:.2f} {ci_text(s['ci95'])}")
        d = acc["accuracy_difference"].get(key)
        diff = "-" if d is None else f"{d['difference']:+.2f} {ci_text(d['ci95'], '+.2f')}"
        c = primary["contrasts"].get(key)
        ratio = "-" if c is None else f"{c['odds_ratio']:.2f} {ci_text(c['odds_ratio_ci95'])}"
        p = "-" if c is None else f"{c['p_value']:.3g}"
        if key == ref:
            diff, ratio, p = "(reference)", "-", "-"
        lines.append(f"{key:<10} {s['n_participants']:>4} {mean:>20} {diff:>22} "
                     f"{ratio:>20} {p:>7}")
    for key, why in primary["not_estimable"].items():
        lines.append(f"note: {key}: {why}")
    sens = acc.get("sensitivity")
    if sens and sens["contrasts"]:
        lines.append("sensitivity, mixed logistic regression (random intercept per participant, "
                     "conditional odds ratios): " + "; ".join(
                         f"{k} {c['odds_ratio']:.2f} {ci_text(c['odds_ratio_ci95'])}"
                         for k, c in sens["contrasts"].items())
                     + f"; participant SD {sens['participant_sd']:.2f} (log-odds)")
    return "\n".join(lines)
