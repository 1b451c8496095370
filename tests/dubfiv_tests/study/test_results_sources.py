"""dubfiv_study_results on every runtime: one analysis whatever collected the answers.

The same simulated participants are written as Qualtrics' CSV export, as the trial
records the jsPsych page stores (built here from the rows, page by page, following the
records contract), as a JATOS results archive, as the collector's export CSV and as a
(fake) collector database; the analysis must be identical except for ``runtime``.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import random
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dubfiv.cli.study_results import main
from dubfiv.study.content import Study
from dubfiv.study.jspsych.records import arm_id, participant_row
from dubfiv.study.layout import attention_slots
from dubfiv.study.qsf.reader import PROLIFIC_FIELDS
from dubfiv.study.qsf.responses_csv import write_responses_csv
from dubfiv.study.qsf.writer import write_qsf
from dubfiv.study.results import sources
from dubfiv.study.results.analysis import AnalysisConfig, ResultsError, analyse_study
from dubfiv.study.results.exclusions import RULES, apply_exclusions
from dubfiv.study.results.record_files import is_data_member, parse_records
from dubfiv.study.results.simulate import (
    SPOILS,
    SimulationConfig,
    answer_tags,
    participant_plans,
    plan_row,
    simulate,
    spoil_plan,
)

N = 12  # simulated participants per condition
FAST = {"mixed_model": False, "n_boot": 200}


# ---------------------------------------------------------------------- building the inputs


def pages_of(study: Study, condition: str) -> list[tuple[str, list[str]]]:
    """(page name, answer tags) of every page in the order the participant sees them."""
    on_attributes, slots = attention_slots(study)
    n = len(study.attributes)
    pages = [("consent", ["consent", "device"]), ("tutorial_intro", [])]
    pages += [(f"tutorial_{i}", []) for i in range(1, len(study.tutorial) + 1)]
    pages += [("comprehension", [c.tag for c in study.checks_of("comprehension")]),
              ("condition_intro", [])]
    pages += [(f"explanation_{i}", [])
              for i in range(1, len(study.condition(condition).pages) + 1)]
    pages.append(("attributes", [f"relevance_{i}" for i in range(1, n + 1)]
                  + [c.tag for c in on_attributes]
                  + [f"confidence_{i}" for i in range(1, n + 1)]))
    for i, task in enumerate(study.tasks):
        pages += [(f"check_{c.tag}", [c.tag]) for c in slots.get(i, [])]
        pages.append((f"task_{i + 1}", [f"predict_{task.key}"]))
    return [*pages, ("end", [])]


def records_for(study: Study, row: dict[str, str], mode: str = "collector",
                end: str | None = "finished", stop_after: str | None = None,
                arm: str | None = None) -> list[dict[str, Any]]:
    """The trial records the page would store for a response row: one per page, its
    answers in ``dubfiv_answers``, ``dubfiv_end`` on the last (``end=None``: the
    participant left after page ``stop_after``)."""
    every = pages_of(study, row["condition"])
    last = {"declined": "consent", "device": "consent", "comprehension": "comprehension",
            "finished": "end", None: stop_after}[end]
    pages = every[:[p for p, _ in every].index(last) + 1]
    duration_ms = int(float(row["Duration (in seconds)"])) * 1000
    start = dt.datetime.strptime(row["StartDate"], "%Y-%m-%d %H:%M:%S")
    out = []
    for k, (page, tags) in enumerate(pages):
        record = {"trial_type": "survey-html-form" if tags else "html-button-response",
                  "trial_index": k, "rt": 900 + k,
                  "time_elapsed": duration_ms * (k + 1) // len(every),
                  "dubfiv_participant": row["ResponseId"],
                  "dubfiv_arm": arm or arm_id(study, row["condition"]), "dubfiv_mode": mode,
                  "dubfiv_started": start.isoformat() + "Z", "dubfiv_page": page,
                  "dubfiv_answers": {t: int(row[t]) for t in tags
                                     if row.get(t, "") not in ("", "-99")}}
        record.update({f: row[f] for f in PROLIFIC_FIELDS if row.get(f)})
        out.append(record)
    if end is not None:
        out[-1]["dubfiv_end"] = end
    return out


def write_jatos_zip(path: Path, groups: list[list[dict]]) -> Path:
    """JATOS' results export: one ``data.txt`` per result, each page appended as its own
    JSON array (``jatos.appendResultData``), plus the metadata file and an upload."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"data": [{"studyId": 1}]}))
        for i, records in enumerate(groups, start=1):
            sep = "\n" if i % 2 else ""
            archive.writestr(f"study_result_{i}/comp-result_{i}/data.txt",
                             sep.join(json.dumps([r]) for r in records))
        archive.writestr("study_result_1/comp-result_1/files/upload.json", "not records")
    return path


def write_collector_csv(path: Path, study: Study, groups: list[list[dict]]) -> Path:
    """The collector's export: a header row of tags (union of the rows' keys), one row
    per participant (``participant_row``)."""
    rows = [participant_row(study, records, "jspsych/collector") for records in groups]
    header = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


class FakeStore:
    """Stands in for the collector's store (``records_by_participant``, ``refusals``)."""

    def __init__(self, groups: list[list[dict]], refused: int = 0,
                 error: BaseException | None = None) -> None:
        self.groups = {g[0]["dubfiv_participant"]: g for g in groups}
        self.refused, self.error, self.closed = refused, error, False

    def records_by_participant(self) -> dict[str, list[dict]]:
        if self.error is not None:
            raise self.error
        return copy.deepcopy(self.groups)

    def refusals(self) -> int:
        return self.refused

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def simulated(full_study_dir) -> tuple[Study, Path, list[dict[str, str]]]:
    """The full fake study (tutorial, checks, device question), saved with its survey,
    and 3 x N simulated responses with an effect of the ``inn`` condition."""
    study, folder = full_study_dir
    study.save(folder)
    write_qsf(folder / "study.qsf", study)
    rows = simulate(study, SimulationConfig(n_per_condition=N, seed=7,
                                            log_odds_effects={"inn": 1.0})).rows
    return study, folder, rows


def _without_runtime(results: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in results.items()
                                  if k not in ("runtime", "responses")}))


def _write(kind: str, tmp_path: Path, study: Study, rows: list[dict[str, str]]) -> Path:
    jatos = kind in ("txt-appended", "jatos-zip", "jatos-folder")
    groups = [records_for(study, r, mode="jatos" if jatos else "collector") for r in rows]
    if kind == "json-array":  # jsPsych.data.get().json() of every participant, concatenated
        path = tmp_path / "data.json"
        path.write_text(json.dumps([r for g in groups for r in g]))
    elif kind == "json-nested":
        path = tmp_path / "data.json"
        path.write_text(json.dumps(groups, indent=1))
    elif kind == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for g in groups for r in g))
    elif kind == "txt-appended":
        path = tmp_path / "results.txt"
        path.write_text("".join(json.dumps(g) for g in groups), encoding="utf-8-sig")
    elif kind in ("jatos-zip", "jatos-folder"):
        path = write_jatos_zip(tmp_path / "jatos_results.zip", groups)
        if kind == "jatos-folder":
            folder = tmp_path / "jatos_results"
            with zipfile.ZipFile(path) as archive:
                archive.extractall(folder)
            path = folder
    elif kind == "collector-csv":
        path = write_collector_csv(tmp_path / "collector.csv", study, groups)
    else:
        raise AssertionError(kind)
    return path


EXPECTED = {  # kind -> (runtime name, format)
    "json-array": ("jspsych/file", "jspsych-json"),
    "json-nested": ("jspsych/file", "jspsych-json"),
    "jsonl": ("jspsych/file", "jspsych-json"),
    "txt-appended": ("jspsych/jatos", "jspsych-json"),
    "jatos-zip": ("jspsych/jatos", "jatos-zip"),
    "jatos-folder": ("jspsych/jatos", "jspsych-folder"),
    "collector-csv": ("jspsych/collector", "collector-csv"),
}


# ---------------------------------------------------------------------- one analysis


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_format_gives_the_qualtrics_results(simulated, tmp_path: Path, kind: str) -> None:
    study, folder, rows = simulated
    qualtrics = analyse_study(write_responses_csv(tmp_path / "qualtrics.csv", study, rows),
                              folder, AnalysisConfig(**FAST))
    assert qualtrics["runtime"] == {
        "name": "qualtrics", "format": "qualtrics-csv", "source": str(tmp_path / "qualtrics.csv"),
        "participants": 3 * N, "by_runtime": {"qualtrics": 3 * N}, "notes": []}
    assert qualtrics["n_used"] == 3 * N  # every simulated response passes
    path = _write(kind, tmp_path, study, rows)
    assert sources.detect_format(path) == EXPECTED[kind][1]
    res = analyse_study(path, folder, AnalysisConfig(**FAST))
    assert _without_runtime(res) == _without_runtime(qualtrics)
    name, fmt = EXPECTED[kind]
    assert res["runtime"] == {"name": name, "format": fmt, "source": str(path),
                              "participants": 3 * N, "by_runtime": {name: 3 * N}, "notes": []}
    assert res["responses"] == str(path)


def test_the_collector_database_gives_the_qualtrics_results(simulated, tmp_path: Path,
                                                            monkeypatch) -> None:
    study, folder, rows = simulated
    config = AnalysisConfig(n_boot=200)  # with the mixed model, once
    qualtrics = analyse_study(write_responses_csv(tmp_path / "q.csv", study, rows), folder,
                              config)
    store = FakeStore([records_for(study, r) for r in rows], refused=2)
    opened = []
    monkeypatch.setattr(sources, "open_collector_store",
                        lambda url: opened.append(url) or store)
    url = "postgresql://ana:s3cret@db.example:5432/dubfiv"
    res = analyse_study(None, folder, config, database=url)
    assert opened == [url] and store.closed
    # the mixed model's variational fit differs in the 7th digit from run to run
    sensitivity = [r["accuracy"].pop("sensitivity") for r in (res, qualtrics)]
    assert sensitivity[0]["contrasts"]["inn"]["odds_ratio"] == pytest.approx(
        sensitivity[1]["contrasts"]["inn"]["odds_ratio"], rel=1e-5)
    assert _without_runtime(res) == _without_runtime(qualtrics)
    assert res["runtime"] == {
        "name": "jspsych/collector", "format": "collector-database",
        "source": "postgresql://ana:***@db.example:5432/dubfiv", "participants": 3 * N,
        "refused": 2, "by_runtime": {"jspsych/collector": 3 * N}, "notes": []}
    assert "s3cret" not in json.dumps(res)


def test_a_real_collector_store(simulated, tmp_path: Path) -> None:
    """Records saved through the collector's own store read back like the CSV (the store
    gives its own participant ids and orders by start, so compare what does not depend
    on ids or order)."""
    store_module = pytest.importorskip("dubfiv.study.collector.store")
    study, folder, rows = simulated
    rows = rows[:4] + rows[N:N + 4] + rows[2 * N:2 * N + 4]
    url = f"sqlite:///{tmp_path / 'collector.sqlite'}"
    store = store_module.open_store(url)
    rng = random.Random(0)
    try:
        for row in rows:
            arm = arm_id(study, row["condition"])
            ids = store_module.ProlificIds(row["PROLIFIC_PID"], row["STUDY_ID"],
                                           row["SESSION_ID"])
            started = store.start_session({arm: row["condition"]}, None, ids, rng)
            for record in records_for(study, row):
                record.pop("dubfiv_end", None)
                assert store.save_page(started.participant, started.token,
                                       record["dubfiv_page"], [record]) == "saved"
            store.save_page(started.participant, started.token, "end",
                            [{**record, "dubfiv_end": "finished"}])
            store.end_session(started.participant, started.token, "finished")
        again = store_module.ProlificIds(rows[0]["PROLIFIC_PID"])
        assert isinstance(store.start_session({arm: "x"}, None, again, rng),
                          store_module.Refused)
    finally:
        store.close()
    qualtrics = analyse_study(write_responses_csv(tmp_path / "q.csv", study, rows), folder,
                              AnalysisConfig(**FAST))
    res = analyse_study(None, folder, AnalysisConfig(**FAST), database=url)
    assert res["runtime"]["refused"] == 1 and res["runtime"]["participants"] == 12
    assert res["exclusions"] == qualtrics["exclusions"]
    assert res["conditions"] == qualtrics["conditions"]
    got, want = res["accuracy"]["primary"], qualtrics["accuracy"]["primary"]
    for key, contrast in want["contrasts"].items():
        assert got["contrasts"][key]["odds_ratio"] == pytest.approx(contrast["odds_ratio"])


# ---------------------------------------------------------------------- exclusions from records


def test_exclusions_from_records(simulated, tmp_path: Path) -> None:
    study, folder, _ = simulated
    plans = participant_plans(study, SimulationConfig(n_per_condition=4, seed=3))
    b, i, c = (plans.plans[k] for k in ("baseline", "inn", "concepts"))
    attention_2 = study.checks_of("attention")[1]
    groups, expected = [], {}

    def add(plan, records: list[dict], rule: str | None) -> None:
        groups.append(records)
        expected[records[0]["dubfiv_participant"]] = rule

    for plan, how in ((b[0], "declined"), (b[1], "device"), (i[0], "comprehension"),
                      (i[1], "attention")):
        spoiled = spoil_plan(study, plan, how)
        add(spoiled, records_for(study, plan_row(study, spoiled), end=spoiled.end),
            spoiled.exclusion)
    row = plan_row(study, i[2])
    row[attention_2.tag] = "1"  # the check on a page of its own, among the tasks
    add(i[2], records_for(study, row), "failed_attention")
    fast = plan_row(study, b[2])
    fast["Duration (in seconds)"] = "30"
    add(b[2], records_for(study, fast), "too_fast")
    add(c[0], records_for(study, plan_row(study, c[0]), end=None, stop_after="task_2"),
        "unfinished")
    add(c[2], records_for(study, plan_row(study, c[2]), mode="preview"), "preview")
    add(c[3], records_for(study, plan_row(study, c[3]), arm="00000000ff"), "unknown_condition")
    for plan in (b[3], i[3], c[1]):
        add(plan, records_for(study, plan_row(study, plan)), None)
    again = plan_row(study, c[1])  # the same PROLIFIC_PID an hour later
    again.update(ResponseId="R_again", StartDate="2024-05-01 23:00:00")
    add(c[1], records_for(study, again), "duplicate")
    groups[-2][3]["dubfiv_answers"] = json.dumps(groups[-2][3]["dubfiv_answers"])  # as text
    path = tmp_path / "records.json"
    path.write_text(json.dumps([r for g in groups for r in g]))

    res = analyse_study(path, folder, AnalysisConfig(**FAST))
    counts = {rule: 0 for rule, _ in RULES}
    for rule in expected.values():
        if rule:
            counts[rule] += 1
    assert res["exclusions"]["excluded"] == counts
    assert sum(counts.values()) == 10 and res["n_rows"] == 13
    kept = {p["response_id"] for p in res["accuracy"]["participants"]}
    assert kept == {pid for pid, rule in expected.items() if rule is None}
    assert len(res["runtime"]["notes"]) == 1
    assert "1 of 13 participants recorded an arm that is no condition" in res["runtime"]["notes"][0]


@pytest.mark.parametrize("how", SPOILS)
def test_spoiled_plans_are_excluded_as_planned(simulated, tmp_path: Path, how: str) -> None:
    """A plan's ``exclusion`` is what the analysis does with its row (Qualtrics' CSV) and
    with the records the page would store for it."""
    study, folder, _ = simulated
    plans = participant_plans(study, SimulationConfig(n_per_condition=2, seed=1))
    spoiled = spoil_plan(study, plans.plans["inn"][0], how)
    assert spoiled.answers != plans.plans["inn"][0].answers
    assert set(spoiled.answers) <= set(answer_tags(study))
    rows = [plan_row(study, p) for ps in plans.plans.values() for p in ps[1:]]
    rows.append(plan_row(study, spoiled))
    res_csv = analyse_study(write_responses_csv(tmp_path / "q.csv", study, rows), folder,
                            AnalysisConfig(**FAST))
    path = tmp_path / "r.json"
    path.write_text(json.dumps([records_for(study, r, end="finished" if r["Finished"] == "1"
                                            else spoiled.end) for r in rows]))
    res_json = analyse_study(path, folder, AnalysisConfig(**FAST))
    for res in (res_csv, res_json):
        assert res["exclusions"]["excluded"] == {**{r: 0 for r, _ in RULES},
                                                 spoiled.exclusion: 1}
    assert _without_runtime(res_csv) == _without_runtime(res_json)


def test_plans_are_the_simulated_participants(simulated) -> None:
    study, _, _ = simulated
    config = SimulationConfig(n_per_condition=3, seed=11, log_odds_effects={"inn": 0.5})
    plans = participant_plans(study, config)
    sim = simulate(study, config)
    flat = [p for ps in plans.plans.values() for p in ps]
    assert [p.participant for p in flat] == [r["ResponseId"] for r in sim.rows]
    assert plans.truth == sim.truth
    tags = answer_tags(study)
    assert tags[:2] == ["consent", "device"] and tags[-1] == f"predict_{study.tasks[-1].key}"
    for plan, row in zip(flat, sim.rows, strict=True):
        assert plan.condition == row["condition"] and plan.end == "finished"
        assert plan.answers == {t: int(row[t]) for t in tags}
        assert plan_row(study, plan) == row
    with pytest.raises(ResultsError, match="missing_rate"):
        participant_plans(study, SimulationConfig(missing_rate=0.1))
    study.device_choices = []
    with pytest.raises(ResultsError, match="no device question"):
        spoil_plan(study, flat[0], "device")
    with pytest.raises(ResultsError, match="choose one of"):
        spoil_plan(study, flat[0], "sleepy")


# ---------------------------------------------------------------------- damaged input


def _records(study: Study, rows: list[dict[str, str]]) -> list[dict]:
    return [r for row in rows[:3] for r in records_for(study, row)]


def _damaged(kind: str, tmp_path: Path, study: Study, rows: list[dict[str, str]]
             ) -> tuple[Path, str]:
    records = _records(study, rows)
    if kind == "cut":
        path = tmp_path / "cut.json"
        text = json.dumps(records, indent=1)
        path.write_text(text[:len(text) // 2])
        return path, r"cut\.json, line \d+ column \d+: not JSON \(.*\); pass the data file"
    if kind == "no-participant":
        del records[2]["dubfiv_participant"]
        path = tmp_path / "nopid.json"
        path.write_text(json.dumps(records))
        return path, r"nopid\.json, record 3 has no 'dubfiv_participant': not written by"
    if kind == "number":
        path = tmp_path / "number.json"
        path.write_text("[[1, 2]]")
        return path, r"number\.json, record 1: expected a trial record .* got a number"
    if kind == "zip-member":
        path = write_jatos_zip(tmp_path / "bad.zip", [records[:3], records[3:]])
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("study_result_9/comp-result_9/data.txt", '[{"a": ')
        return path, r"bad\.zip:study_result_9/comp-result_9/data\.txt, line 1 column 8: not JSON"
    if kind == "not-zip":
        path = tmp_path / "junk.zip"
        path.write_bytes(b"PK\x03\x04 not really")
        return path, r"junk\.zip: not a readable zip archive .*download the results from JATOS"
    if kind == "zip-without-data":
        path = tmp_path / "empty.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("metadata.json", "{}")
        return path, r"empty\.zip: the archive holds no result data"
    if kind == "empty-folder":
        path = tmp_path / "empty_folder"
        (path / "files").mkdir(parents=True)
        (path / "files" / "upload.txt").write_text("x")
        return path, r"empty_folder: the folder holds no result data"
    if kind == "empty-array":
        path = tmp_path / "empty.json"
        path.write_text("[]\n")
        return path, r"empty\.json: no trial records"
    if kind == "bad-date":
        for r in records:
            r["dubfiv_started"] = "yesterday"
        path = tmp_path / "date.json"
        path.write_text(json.dumps(records))
        return path, (rf"date\.json, participant {rows[0]['ResponseId']}: dubfiv_started "
                      r"'yesterday' is not an ISO 8601 time")
    if kind == "answers-not-object":
        records[4]["dubfiv_answers"] = [1, 2]
        path = tmp_path / "answers.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in records))
        return path, rf"answers\.jsonl, participant {rows[0]['ResponseId']}: dubfiv_answers"
    if kind == "foreign-tag":
        records[-2]["dubfiv_answers"]["predict_t99"] = 1
        path = tmp_path / "foreign.json"
        path.write_text(json.dumps(records))
        return path, (rf"foreign\.json, participant {rows[2]['ResponseId']}: answers tagged "
                      r"\['predict_t99'\] that the study 'fake study' does not ask")
    if kind == "not-utf8":
        path = tmp_path / "latin.json"
        path.write_bytes(json.dumps(records).replace('"consent"', '"consenté"')
                         .encode("latin-1"))
        return path, r"latin\.json, line 1: not UTF-8 text"
    groups = [records_for(study, row) for row in rows[:3]]
    path = write_collector_csv(tmp_path / "collector.csv", study, groups)
    if kind == "csv-cut":
        text = path.read_text()
        path.write_text(text[:text.rindex(",")] + "\n")
        return path, r"collector\.csv, line 4: a row with \d+ of the header's \d+ columns"
    if kind == "csv-latin":
        path.write_bytes(path.read_text().replace("anonymous", "anonymé").encode("cp1252"))
        return path, r"collector\.csv, line 2: not UTF-8 .*dubfiv_study_serve STUDY_DIR --export"
    if kind == "csv-foreign-column":
        path.write_text(path.read_text().replace("predict_t4", "predict_t44"))
        return path, r"collector\.csv, column predict_t44: answers tagged \['predict_t44'\]"
    raise AssertionError(kind)


DAMAGED = ["cut", "no-participant", "number", "zip-member", "not-zip", "zip-without-data",
           "empty-folder", "empty-array", "bad-date", "answers-not-object", "foreign-tag",
           "not-utf8", "csv-cut", "csv-latin", "csv-foreign-column"]


@pytest.mark.parametrize("kind", DAMAGED)
def test_damaged_input_is_one_line_naming_it(simulated, tmp_path: Path, capsys,
                                             kind: str) -> None:
    study, folder, rows = simulated
    path, pattern = _damaged(kind, tmp_path, study, rows)
    with pytest.raises(ResultsError, match=pattern) as info:
        analyse_study(path, folder, AnalysisConfig(**FAST))
    assert "\n" not in str(info.value)
    out = tmp_path / "out"
    assert main(["--responses", str(path), "--study", str(folder), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dubfiv_study_results: error: ") and err.count("\n") == 1
    assert not out.exists()


def test_parse_records_accepts_every_layout() -> None:
    rec = [{"dubfiv_participant": "p", "n": k} for k in range(4)]
    texts = [json.dumps(rec), json.dumps([rec[:2], rec[2:]]),
             "\n".join(json.dumps(r) for r in rec) + "\n",
             json.dumps(rec[:1]) + json.dumps(rec[1:3]) + "\n " + json.dumps(rec[3])]
    for text in texts:
        assert parse_records(text, "x") == rec
    assert parse_records(" \n", "x") == []
    with pytest.raises(ResultsError, match="nested more than twice"):
        parse_records(json.dumps([[rec]]), "x")
    assert is_data_member("study_result_1/comp-result_2/data.txt")
    assert not is_data_member("metadata.json")
    assert not is_data_member("study_result_1/comp-result_2/files/a.json")
    assert not is_data_member("__MACOSX/study_result_1/._data.txt")
    assert not is_data_member("study_result_1/comp-result_2/image.png")


# ---------------------------------------------------------------------- the database


def test_database_urls_are_checked_and_shown_without_password(simulated, tmp_path: Path,
                                                             monkeypatch) -> None:
    study, folder, rows = simulated
    assert sources.redact_url("postgresql://u:p@w:rd@h:5/db?sslmode=require&password=x") == (
        "postgresql://u:***@h:5/db?sslmode=require&password=***")
    assert sources.redact_url("sqlite:///a/b.sqlite") == "sqlite:///a/b.sqlite"
    with pytest.raises(ResultsError, match="`database` 'nope' is not a database URL"):
        analyse_study(None, folder, database="nope")
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(ResultsError, match=r"no SQLite file .*missing\.sqlite"):
        analyse_study(None, folder, database=f"sqlite:///{missing}")
    assert not missing.exists()  # reading never creates an empty database
    with pytest.raises(ResultsError, match="names no SQLite file"):
        analyse_study(None, folder, database="sqlite://")
    with pytest.raises(ResultsError, match="exactly one"):
        analyse_study(tmp_path, folder, database="sqlite:///x")
    with pytest.raises(ResultsError, match="exactly one"):
        analyse_study(None, folder)

    url = "postgresql://ana:s3cret@db.example/dubfiv"
    monkeypatch.setitem(sys.modules, "dubfiv.study.collector.store", None)
    with pytest.raises(ResultsError, match="needs the collector") as info:
        analyse_study(None, folder, database=url)
    assert "s3cret" not in str(info.value)
    monkeypatch.undo()

    from sqlalchemy.exc import OperationalError

    failing = FakeStore([], error=OperationalError("SELECT", {}, Exception(
        "password s3cret rejected\nsecond line")))
    monkeypatch.setattr(sources, "open_collector_store", lambda url: failing)
    with pytest.raises(ResultsError, match=r"cannot read the collector database "
                       r"postgresql://ana:\*\*\*@db\.example/dubfiv: .*password \*\*\* "
                       r"rejected; check `database`") as info:
        analyse_study(None, folder, database=url)
    assert "s3cret" not in str(info.value) and "\n" not in str(info.value) and failing.closed
    monkeypatch.setattr(sources, "open_collector_store", lambda url: FakeStore([]))
    with pytest.raises(ResultsError, match="holds no participants yet"):
        analyse_study(None, folder, database=url)
    broken = FakeStore([records_for(study, rows[0])])
    broken.groups[rows[0]["ResponseId"]].append("not a record")
    monkeypatch.setattr(sources, "open_collector_store", lambda url: broken)
    with pytest.raises(ResultsError, match=r"participant R_sim\d+, record \d+: not a trial"):
        analyse_study(None, folder, database=url)


def test_a_session_without_records_is_unfinished(simulated) -> None:
    study, _, rows = simulated
    store = FakeStore([records_for(study, r) for r in rows[:2]])
    store.groups["empty"] = []
    source = sources.read_store(study, store, "fake")
    report = apply_exclusions(study, source.responses, source.layout)
    assert report.counts["unfinished"] == 1 and len(report.kept) == 2


# ---------------------------------------------------------------------- the command


@pytest.mark.parametrize("kind", ["qualtrics", "json-array", "jatos-zip", "jatos-folder",
                                  "collector-csv"])
def test_cli_reads_each_input(simulated, tmp_path: Path, capsys, kind: str) -> None:
    study, folder, rows = simulated
    if kind == "qualtrics":
        path = write_responses_csv(tmp_path / "responses.csv", study, rows)
        name, what = "qualtrics", "Qualtrics CSV export"
    else:
        path = _write(kind, tmp_path, study, rows)
        name, fmt = EXPECTED[kind]
        what = sources.FORMATS[fmt]
    assert main(["--responses", str(path), "--study", str(folder), "--no-mixed-model"]) == 0
    stdout = capsys.readouterr().out
    unit = "responses" if kind == "qualtrics" else "participants"
    assert stdout.startswith(f"runtime: {name} ({what} {path}; {3 * N} {unit})\n")
    assert f"{3 * N} of {3 * N} responses used" in stdout
    results = json.loads((path.absolute().parent / "results.json").read_text())
    assert results["runtime"]["name"] == name
    if path.is_dir():  # the results never land among the data files
        assert not (path / "results.json").exists()


def test_cli_reads_the_database(simulated, tmp_path: Path, capsys, monkeypatch) -> None:
    study, folder, rows = simulated
    store = FakeStore([records_for(study, r) for r in rows], refused=3)
    monkeypatch.setattr(sources, "open_collector_store", lambda url: store)
    url = "postgresql://ana:s3cret@db.example/dubfiv"
    assert main(["--database", url, "--study", str(folder), "--no-mixed-model"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith(
        "runtime: jspsych/collector (collector database postgresql://ana:***@db.example/dubfiv; "
        f"{3 * N} participants; 3 attempts refused at the start because the PROLIFIC_PID had "
        "already taken part)\n")
    assert "s3cret" not in stdout
    results = (folder / "results" / "results.json").read_text()
    assert json.loads(results)["runtime"]["refused"] == 3 and "s3cret" not in results


def test_cli_source_flags(simulated, tmp_path: Path, capsys) -> None:
    _, folder, _ = simulated
    for argv in ([], ["--responses", "a.csv", "--database", "sqlite:///b"]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--study", str(folder)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--responses" in err and "--database" in err
    missing = tmp_path / "nope.json"
    assert main(["--responses", str(missing), "--study", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err == (f"dubfiv_study_results: error: responses file {missing} not found (pass "
                   "Qualtrics' CSV export, the collector's exported CSV, or jsPsych/JATOS data "
                   "as --responses)\n")
    assert main(["--database", "nope", "--study", str(folder)]) == 1
    assert "--database 'nope' is not a database URL" in capsys.readouterr().err


def test_detect_format(tmp_path: Path) -> None:
    cases = {"a.csv": "StartDate,EndDate\nx,y\n{\"ImportId\":\"startDate\"},{}\n",
             "b.csv": "ResponseId,runtime\nR_1,jspsych/collector\n",
             "c.csv": "Finished,consent\n1,1\n", "d.txt": "\ufeff [{}]", "e.jsonl": "{}\n"}
    want = {"a.csv": "qualtrics-csv", "b.csv": "collector-csv", "c.csv": "qualtrics-csv",
            "d.txt": "jspsych-json", "e.jsonl": "jspsych-json"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert sources.detect_format(tmp_path / name) == want[name], name
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("x/data.txt", "[]")
    (tmp_path / "results").write_bytes(buf.getvalue())  # a zip without its suffix
    assert sources.detect_format(tmp_path / "results") == "jatos-zip"
    assert sources.detect_format(tmp_path) == "jspsych-folder"
