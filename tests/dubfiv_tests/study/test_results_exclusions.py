"""The exclusion rules of dubfiv_study_results, one by one, and missing answers (-99)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from dubfiv.cli.study_results import main
from dubfiv.study.content import CheckQuestion, Page, Study
from dubfiv.study.qsf.responses_csv import write_responses_csv
from dubfiv.study.qsf.writer import write_qsf
from dubfiv.study.results.analysis import AnalysisConfig, ResultsError, analyse_study
from dubfiv.study.results.exclusions import (
    DEFAULT_MIN_DURATION_S,
    RULES,
    ExclusionConfig,
    default_min_duration_s,
)
from dubfiv.study.results.simulate import SimulationConfig, simulate

N = 6  # participants per condition


@pytest.fixture()
def checked(study_dir) -> tuple[Study, Path, list[dict[str, str]]]:
    """The fake study with two attention checks and one comprehension check, saved,
    and 3 x N simulated responses that pass every rule (durations ~ 900 s)."""
    study, folder = study_dir
    study.checks = [
        CheckQuestion("attn_1", "attention", "Please select 'often'.",
                      ["never", "often", "always"], 2),
        CheckQuestion("attn_2", "attention", "Please select the first choice.",
                      ["this one", "not this"], 1),
        CheckQuestion("comp_1", "comprehension", "Which class has a long body?",
                      ["Peaky", "Stretchy"], 2),
    ]
    study.comprehension_page = Page("Check", "<p>What did the tutorial show?</p>")
    study.save(folder)
    write_qsf(folder / "study.qsf", study)
    rows = simulate(study, SimulationConfig(n_per_condition=N, seed=5)).rows
    return study, folder, rows


def _run(study: Study, folder: Path, rows: list[dict[str, str]], tmp_path: Path,
         numeric: bool = True, **config) -> dict:
    path = write_responses_csv(tmp_path / "responses.csv", study, rows, numeric=numeric)
    return analyse_study(path, folder, AnalysisConfig(mixed_model=False, n_boot=200, **config))


def _kept_ids(res: dict) -> set[str]:
    return {p["response_id"] for p in res["accuracy"]["participants"]}


def _expect(res: dict, **counts: int) -> None:
    """Exactly these rules excluded responses, with these counts; the rest adds up."""
    exc = res["exclusions"]
    assert exc["excluded"] == {**{rule: 0 for rule, _ in RULES}, **counts}
    assert exc["n_kept"] + sum(exc["excluded"].values()) == exc["n_rows"] == res["n_rows"]
    assert res["n_used"] == exc["n_kept"]


def test_all_simulated_responses_pass(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    res = _run(study, folder, rows, tmp_path)
    _expect(res)
    assert res["n_used"] == 3 * N and res["exclusions"]["notes"] == []


@pytest.mark.parametrize("numeric", [True, False], ids=["numeric", "choice-text"])
def test_previews_tests_and_spam(checked, tmp_path: Path, numeric: bool) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["Status"] = "1"  # Survey Preview
    rows[1]["Status"] = "2"  # Survey Test
    rows[2]["Status"] = "8"  # Spam
    rows[3]["DistributionChannel"] = "preview"  # status 0, but a preview link
    rows[4]["DistributionChannel"] = "test"
    rows[5]["Finished"] = "0"  # a preview counts as preview, not as unfinished
    rows[5]["Status"] = "1"
    res = _run(study, folder, rows, tmp_path, numeric=numeric)
    _expect(res, preview=6)
    assert not _kept_ids(res) & {r["ResponseId"] for r in rows[:6]}


def test_declined_consent(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["consent"] = "2"
    rows[1]["consent"] = "-99"  # finished without agreeing: declined
    rows[2].update(consent="", Finished="0")  # left at the consent page: unfinished
    res = _run(study, folder, rows, tmp_path)
    _expect(res, declined=2, unfinished=1)


def test_wrong_device(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    assert study.device_choices[0] == "a desktop or laptop computer"
    rows = copy.deepcopy(rows)
    rows[0]["device"] = "3"  # a phone: the survey ended after the consent page
    for key in list(rows[0]):
        if key.startswith(("relevance_", "confidence_", "predict_", "attn_", "comp_")):
            rows[0][key] = ""
    rows[0]["condition"] = ""
    rows[1]["device"] = "2"
    rows[2]["device"] = "-99"  # unanswered: not a wrong device
    # the same person again, on a desktop: the phone attempt saw nothing, so no duplicate
    rows[3]["PROLIFIC_PID"] = rows[1]["PROLIFIC_PID"]
    for numeric in (True, False):
        res = _run(study, folder, rows, tmp_path, numeric=numeric)
        _expect(res, wrong_device=2)
        assert rows[3]["ResponseId"] in _kept_ids(res)


def test_duplicate_prolific_ids_keep_the_first_attempt(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    pid = rows[0]["PROLIFIC_PID"]
    # rows 3 and 7 are the same person; row 7 started first (so row 3 is the duplicate)
    rows[3]["PROLIFIC_PID"] = rows[7]["PROLIFIC_PID"] = "dup" + pid[3:]
    rows[7]["StartDate"] = "2024-04-30 08:00:00"
    # rows 9, 10, 11: same start; RecordedDate decides (row 11 recorded first)
    for r in (9, 10, 11):
        rows[r].update(PROLIFIC_PID="tie" + pid[3:], StartDate="2024-05-02 10:00:00")
    rows[9]["RecordedDate"] = "2024-05-02 10:30:00"
    rows[10]["RecordedDate"] = "2024-05-02 10:20:00"
    rows[11]["RecordedDate"] = "2024-05-02 10:10:00"
    # an earlier attempt that declined consent does not count as an attempt
    rows[12].update(PROLIFIC_PID="dec" + pid[3:], consent="2",
                    StartDate="2024-04-01 10:00:00")
    rows[13].update(PROLIFIC_PID="dec" + pid[3:])
    # the later attempt of a person whose first attempt failed a check is still excluded
    rows[14].update(PROLIFIC_PID="chk" + pid[3:], attn_1="3", StartDate="2024-04-01 10:00:00")
    rows[15].update(PROLIFIC_PID="chk" + pid[3:])
    # no PROLIFIC_PID (missing) is never a duplicate
    rows[16]["PROLIFIC_PID"] = rows[17]["PROLIFIC_PID"] = "-99"
    res = _run(study, folder, rows, tmp_path)
    _expect(res, duplicate=4, declined=1, failed_attention=1)
    kept = _kept_ids(res)
    ids = [r["ResponseId"] for r in rows]
    assert ids[7] in kept and ids[3] not in kept
    assert ids[11] in kept and ids[9] not in kept and ids[10] not in kept
    assert ids[13] in kept and ids[15] not in kept and ids[14] not in kept
    assert ids[16] in kept and ids[17] in kept


def test_failed_checks(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["attn_1"] = "1"
    rows[1]["attn_2"] = "2"
    rows[2]["comp_1"] = "1"
    rows[3].update(comp_1="1", attn_1="3")  # both: counted under the first rule
    rows[4]["comp_1"] = "1"  # a failed comprehension check ends the survey early:
    for key in list(rows[4]):
        if key.startswith(("relevance_", "confidence_", "predict_", "attn_")):
            rows[4][key] = ""
    rows[5]["attn_1"] = "-99"  # unanswered is not failed
    rows[6]["attn_2"] = ""
    res = _run(study, folder, rows, tmp_path)
    _expect(res, failed_comprehension=3, failed_attention=2)
    assert {rows[5]["ResponseId"], rows[6]["ResponseId"]} <= _kept_ids(res)


def test_failed_check_in_choice_text(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["attn_1"] = "3"
    res = _run(study, folder, rows, tmp_path, numeric=False)
    _expect(res, failed_attention=1)


def test_unfinished_and_unknown_condition(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["Finished"] = "0"
    rows[1]["Finished"] = ""
    rows[2]["condition"] = "nonexistent"
    rows[3]["condition"] = ""
    res = _run(study, folder, rows, tmp_path)
    _expect(res, unfinished=2, unknown_condition=2)


def test_too_fast(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    for r, secs in enumerate(["30", "119.5", "120", "-99", ""]):
        rows[r]["Duration (in seconds)"] = secs
    res = _run(study, folder, rows, tmp_path)
    assert res["exclusions"]["min_duration_s"] == DEFAULT_MIN_DURATION_S == 120
    _expect(res, too_fast=2)
    assert _run(study, folder, rows, tmp_path, min_duration_s=0)["n_used"] == 3 * N
    # a custom threshold: compare with counting the simulated durations directly
    limit = 900.0
    fast = sum(1 for r in rows if r["Duration (in seconds)"] not in ("", "-99")
               and float(r["Duration (in seconds)"]) < limit)
    assert 5 < fast < 3 * N
    res = _run(study, folder, rows, tmp_path, min_duration_s=limit)
    _expect(res, too_fast=fast)
    assert res["exclusions"]["min_duration_source"] == "set by `min_duration_s`"


def test_default_threshold_from_the_study_estimate(checked) -> None:
    study, _, _ = checked
    assert default_min_duration_s(study)[0] == DEFAULT_MIN_DURATION_S
    study.estimated_minutes = 18  # type: ignore[attr-defined]
    secs, source = default_min_duration_s(study)
    assert secs == pytest.approx(18 * 60 / 3) and "18 minutes" in source
    with pytest.raises(ResultsError, match="`min_duration_s` must be >= 0"):
        ExclusionConfig(min_duration_s=-5)


def test_minus_99_and_empty_answers_are_missing(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    base = _run(study, folder, rows, tmp_path)
    cond = rows[0]["condition"]
    said = [rows[r]["relevance_1"] == "1" for r in range(2)]  # before they go missing
    for r, value in ((0, "-99"), (1, "")):
        rows[r]["relevance_1"] = value  # arm position: ground truth relevant
        rows[r]["confidence_1"] = value
        rows[r]["predict_t0"] = value
    rows[2]["relevance_2"] = " -99 "
    res = _run(study, folder, rows, tmp_path)
    _expect(res)  # nobody is excluded for a missing answer
    before, after = (x["conditions"][cond]["attributes"]["arm_position"] for x in (base, res))
    assert after["n"] == before["n"] - 2 and after["n_confidence"] == before["n_confidence"] - 2
    assert after["k"] == before["k"] - sum(said)  # not counted as "relevant" nor "irrelevant"
    pred_b, pred_a = (x["conditions"][cond]["prediction"] for x in (base, res))
    assert pred_a["n"] == pred_b["n"] - 2
    parts = {p["response_id"]: p for p in res["accuracy"]["participants"]}
    parts_b = {p["response_id"]: p for p in base["accuracy"]["participants"]}
    for r in range(3):  # the accuracy skips the missing attribute (not a wrong answer)
        rid = rows[r]["ResponseId"]
        assert parts[rid]["n_answered"] == parts_b[rid]["n_answered"] - 1
    # independent count of participant 0's correct answers from the CSV cells
    truth = {i: a.relevant for i, a in enumerate(study.attributes, start=1)}
    correct = sum((rows[0][f"relevance_{i}"] == "1") == t for i, t in truth.items()
                  if t is not None and rows[0][f"relevance_{i}"] in ("1", "2"))
    assert parts[rows[0]["ResponseId"]]["n_correct"] == correct


def test_optional_columns_absent_switch_rules_off(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["Duration (in seconds)"] = "3"
    rows[1]["PROLIFIC_PID"] = rows[2]["PROLIFIC_PID"]
    path = write_responses_csv(tmp_path / "r.csv", study, rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    table = [line.split(",") for line in lines]  # no quoted commas in simulated cells
    drop = [i for i, tag in enumerate(table[0])
            if tag in ("Duration (in seconds)", "PROLIFIC_PID", "Status",
                       "DistributionChannel")]
    path.write_text("\n".join(",".join(c for i, c in enumerate(row) if i not in drop)
                              for row in table) + "\n", encoding="utf-8")
    res = analyse_study(path, folder, AnalysisConfig(mixed_model=False, n_boot=200))
    _expect(res)
    assert len(res["exclusions"]["notes"]) == 3
    assert any("'duplicate' not applied" in n for n in res["exclusions"]["notes"])


def test_missing_check_column_is_an_error(checked, tmp_path: Path) -> None:
    study, folder, rows = checked
    path = write_responses_csv(tmp_path / "r.csv", study, rows)
    with path.open(encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    drop = table[0].index("attn_2")
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([c for i, c in enumerate(row) if i != drop] for row in table)
    with pytest.raises(ResultsError, match=r"columns missing: attn_2$"):
        analyse_study(path, folder)


def test_cli_flags_and_errors(checked, tmp_path: Path, capsys) -> None:
    study, folder, rows = checked
    rows = copy.deepcopy(rows)
    rows[0]["Duration (in seconds)"] = "200"
    path = write_responses_csv(tmp_path / "r.csv", study, rows)
    out = tmp_path / "out"
    assert main(["--responses", str(path), "--study", str(folder), "--output", str(out),
                 "--min-duration-s", "300", "--reference", "inn", "--no-mixed-model"]) == 0
    stdout = capsys.readouterr().out
    assert "excluded: too_fast 1 (minimum duration 300 s: set by --min-duration-s)" in stdout
    assert "vs inn" in stdout
    assert "sensitivity" not in json.loads((out / "results.json").read_text())["accuracy"]
    assert main(["--responses", str(path), "--study", str(folder), "--output", str(out),
                 "--min-duration-s", "-1"]) == 1
    err = capsys.readouterr().err
    assert "--min-duration-s must be >= 0" in err and "min_duration_s" not in err
    assert main(["--responses", str(path), "--study", str(folder), "--output", str(out),
                 "--reference", "nope"]) == 1
    assert "--reference condition 'nope' is not a condition" in capsys.readouterr().err
    bad = copy.deepcopy(rows)
    bad[0]["StartDate"] = "yesterday"
    path = write_responses_csv(tmp_path / "bad.csv", study, bad)
    assert main(["--responses", str(path), "--study", str(folder), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"response {rows[0]['ResponseId']}, column StartDate: cannot read the date" in err
