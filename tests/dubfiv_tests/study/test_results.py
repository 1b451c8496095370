"""dubfiv_study_results on a CSV generated in Qualtrics' export layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

from dubfiv.cli.study_results import main
from dubfiv.study.content import Study
from dubfiv.study.qsf.writer import write_qsf
from dubfiv.study.results.analysis import ResultsError, analyse_study, wilson_interval

N_PER_CONDITION = 40
META = [("StartDate", '{"ImportId":"startDate","timeZone":"America/Denver"}'),
        ("EndDate", '{"ImportId":"endDate","timeZone":"America/Denver"}'),
        ("Status", '{"ImportId":"status"}'), ("IPAddress", '{"ImportId":"ipAddress"}'),
        ("Progress", '{"ImportId":"progress"}'),
        ("Duration (in seconds)", '{"ImportId":"duration"}'),
        ("Finished", '{"ImportId":"finished"}'),
        ("RecordedDate", '{"ImportId":"recordedDate","timeZone":"America/Denver"}'),
        ("ResponseId", '{"ImportId":"_recordId"}'),
        ("DistributionChannel", '{"ImportId":"distributionChannel"}'),
        ("UserLanguage", '{"ImportId":"userLanguage"}')]


def _simulate(study: Study, seed: int = 0) -> dict:
    """Known answers: relevance ~ Bernoulli(p[c, a]); answers match the model w.p. q[c]."""
    rng = np.random.default_rng(seed)
    n_c, n_a, n_t = len(study.conditions), len(study.attributes), len(study.tasks)
    p = np.linspace(0.1, 0.9, n_c * n_a).reshape(n_c, n_a)
    q = np.array([0.55, 0.8, 0.65])[:n_c]
    relevant = rng.random((n_c, N_PER_CONDITION, n_a)) < p[:, None, :]
    confidence = rng.integers(1, 6, size=(n_c, N_PER_CONDITION, n_a))
    model = np.array([study.class_names.index(study.model_prediction(t)) for t in study.tasks])
    hit = rng.random((n_c, N_PER_CONDITION, n_t)) < q[:, None, None]
    predicted = np.where(hit, model, 1 - model)
    return {"relevant": relevant, "confidence": confidence, "predicted": predicted,
            "model": model}


def _write_csv(path: Path, study: Study, qsf: dict, sim: dict, numeric: bool,
               drop: tuple[str, ...] = ()) -> None:
    """The export as Qualtrics writes it (3 header rows), from the documented layout."""
    qid = {e["Payload"]["DataExportTag"]: e["PrimaryAttribute"]
           for e in qsf["SurveyElements"] if e["Element"] == "SQ"}
    cols = [*META, ("consent", f'{{"ImportId":"{qid["consent"]}"}}')]
    for tag in ("relevance", "confidence"):
        cols += [(f"{tag}_{i}", f'{{"ImportId":"{qid[tag]}_{i}"}}')
                 for i in range(1, len(study.attributes) + 1)]
    cols += [(f"predict_{t.key}", f'{{"ImportId":"{qid["predict_" + t.key]}"}}')
             for t in study.tasks]
    cols.append(("condition", '{"ImportId":"condition"}'))
    cols = [c for c in cols if c[0] not in drop]

    def answer(index: int, labels: list[str]) -> str:  # 0-based choice
        return str(index + 1) if numeric else labels[index]

    rows = []

    def add(status: int, finished: bool, consent: int, cond: str, rel: list[int],
            conf: list[int], pred: list[int]) -> None:
        values = {
            "StartDate": "2024-05-01 10:00:00", "EndDate": "2024-05-01 10:20:00",
            "Status": str(status) if numeric else ["IP Address", "Survey Preview"][status],
            "IPAddress": "", "Progress": "100" if finished else "40",
            "Duration (in seconds)": "1200",
            "Finished": ("1" if finished else "0") if numeric else str(finished),
            "RecordedDate": "2024-05-01 10:20:01", "ResponseId": f"R_{len(rows):015d}",
            "DistributionChannel": "anonymous", "UserLanguage": "EN",
            "consent": answer(consent, [study.consent_agree, study.consent_decline]),
            "condition": cond,
        }
        for i, (r, c) in enumerate(zip(rel, conf, strict=True), start=1):
            values[f"relevance_{i}"] = answer(r, study.relevance_answers)
            values[f"confidence_{i}"] = answer(c, study.confidence_answers)
        for t, k in zip(study.tasks, pred, strict=True):
            values[f"predict_{t.key}"] = answer(k, study.class_names)
        rows.append([values[name] for name, _ in cols])

    n_a = len(study.attributes)
    for c, cond in enumerate(study.conditions):
        for j in range(N_PER_CONDITION):
            add(0, True, 0, cond.key, [0 if r else 1 for r in sim["relevant"][c, j]],
                list(sim["confidence"][c, j] - 1), list(sim["predicted"][c, j]))
        # would shift every share up if they were counted:
        all_relevant = ([0] * n_a, [4] * n_a, list(1 - sim["model"]))
        for _ in range(3):
            add(0, False, 0, cond.key, *all_relevant)  # unfinished
        add(1, True, 0, cond.key, *all_relevant)  # preview
    for _ in range(2):  # declined: ended before the randomizer
        add(0, True, 1, "", [0] * n_a, [0] * n_a, [0] * len(study.tasks))
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([name for name, _ in cols])
        writer.writerow([f"text of {name}\nsecond line" for name, _ in cols])
        writer.writerow([imp for _, imp in cols])
        writer.writerows(rows)


@pytest.fixture()
def exported(study_dir, tmp_path: Path):
    study, folder = study_dir
    study.save(folder)
    qsf = write_qsf(folder / "study.qsf", study)
    return study, folder, qsf, _simulate(study)


@pytest.mark.parametrize("numeric", [True, False], ids=["numeric", "choice-text"])
def test_shares_and_wilson_intervals(exported, tmp_path: Path, numeric: bool) -> None:
    study, folder, qsf, sim = exported
    csv_path = tmp_path / "responses.csv"
    _write_csv(csv_path, study, qsf, sim, numeric)
    res = analyse_study(csv_path, folder)
    assert res["n_used"] == N_PER_CONDITION * len(study.conditions)
    excluded = res["exclusions"]["excluded"]
    assert excluded == {**dict.fromkeys(excluded, 0), "preview": 3, "unfinished": 9,
                        "declined": 2}
    assert res["exclusions"]["n_kept"] == res["n_used"]
    for c, cond in enumerate(study.conditions):
        out = res["conditions"][cond.key]
        assert out["n_participants"] == N_PER_CONDITION
        for a, attr in enumerate(study.attributes):
            got = out["attributes"][attr.key]
            k = int(sim["relevant"][c, :, a].sum())
            ci = binomtest(k, N_PER_CONDITION).proportion_ci(0.95, method="wilson")
            assert got["k"] == k and got["n"] == N_PER_CONDITION
            assert got["share"] == pytest.approx(k / N_PER_CONDITION, abs=1e-12)
            assert got["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-9)
            assert got["ground_truth"] == attr.relevant
            assert got["mean_confidence"] == pytest.approx(sim["confidence"][c, :, a].mean())
        pred = out["prediction"]
        hits = sim["predicted"][c] == sim["model"][None, :]
        ci = binomtest(int(hits.sum()), hits.size).proportion_ci(0.95, method="wilson")
        assert pred["n"] == hits.size
        assert pred["accuracy"] == pytest.approx(hits.mean())
        assert pred["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-9)
        assert pred["per_participant_mean"] == pytest.approx(hits.mean(axis=1).mean())
        wrong = np.array([study.model_prediction(t) != t.true_label for t in study.tasks])
        assert pred["model_wrong_tasks"]["n"] == N_PER_CONDITION * wrong.sum()
        assert pred["model_wrong_tasks"]["share"] == pytest.approx(hits[:, wrong].mean())


def test_columns_found_by_import_id_when_tags_renamed(exported, tmp_path: Path) -> None:
    study, folder, qsf, sim = exported
    csv_path = tmp_path / "responses.csv"
    _write_csv(csv_path, study, qsf, sim, numeric=True)
    text = csv_path.read_text(encoding="utf-8-sig").split("\n", 1)
    renamed = text[0].replace("relevance_", "Q5_").replace("consent", "Q1")
    csv_path.write_text(renamed + "\n" + text[1], encoding="utf-8")
    res = analyse_study(csv_path, folder)
    k = int(sim["relevant"][0, :, 0].sum())
    assert res["conditions"]["baseline"]["attributes"]["arm_position"]["k"] == k


def test_cli_writes_json_and_figure(exported, tmp_path: Path, capsys) -> None:
    study, folder, qsf, sim = exported
    csv_path = tmp_path / "responses.csv"
    _write_csv(csv_path, study, qsf, sim, numeric=True)
    out = tmp_path / "results"
    assert main(["--responses", str(csv_path), "--study", str(folder),
                 "--output", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["conditions"]) == {"baseline", "inn", "concepts"}
    with Image.open(out / "results.png") as im:
        assert im.size[0] > 300 and im.size[1] > 200
    stdout = capsys.readouterr().out
    assert "legs / arm position" in stdout and "120 of 134 responses used" in stdout
    assert "excluded: preview 3, declined 2, unfinished 9" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "results.json",
                                                      "results.png"]


def test_cli_default_output_is_beside_the_csv(exported, tmp_path: Path) -> None:
    study, folder, qsf, sim = exported
    csv_path = tmp_path / "data" / "responses.csv"
    csv_path.parent.mkdir()
    _write_csv(csv_path, study, qsf, sim, numeric=False)
    assert main(["--responses", str(csv_path), "--study", str(folder)]) == 0
    assert (csv_path.parent / "results.json").is_file()
    assert not (folder / "results.json").exists()


def test_clear_errors(exported, tmp_path: Path, capsys) -> None:
    study, folder, qsf, sim = exported
    missing = tmp_path / "nope.csv"
    assert main(["--responses", str(missing), "--study", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dubfiv_study_results: error: responses file {missing} not found")
    assert err.count("\n") == 1

    csv_path = tmp_path / "other.csv"
    _write_csv(csv_path, study, qsf, sim, numeric=True, drop=("relevance_3", "condition"))
    assert main(["--responses", str(csv_path), "--study", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "not an export of this survey" in err
    assert "columns missing: condition, relevance_3" in err

    two_rows = tmp_path / "two.csv"
    two_rows.write_text("Finished,consent\n1,1\n")
    with pytest.raises(ResultsError, match="three header rows"):
        analyse_study(two_rows, folder)

    assert main(["--responses", str(csv_path), "--study", str(tmp_path / "none")]) == 1
    assert "study.json not found" in capsys.readouterr().err


def test_bad_answer_names_the_response(exported, tmp_path: Path) -> None:
    study, folder, qsf, sim = exported
    csv_path = tmp_path / "responses.csv"
    _write_csv(csv_path, study, qsf, sim, numeric=True)
    with csv_path.open(encoding="utf-8-sig", newline="") as fh:
        table = list(csv.reader(fh))
    table[3][table[0].index("relevance_2")] = "7"
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(table)
    with pytest.raises(ResultsError, match=r"R_0+, column relevance_2: unexpected answer '7'"):
        analyse_study(csv_path, folder)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 40), (1, 40), (17, 40), (40, 40), (3, 7)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)
    ci90 = binomtest(k, n).proportion_ci(0.9, method="wilson")
    assert wilson_interval(k, n, 0.9) == pytest.approx((ci90.low, ci90.high), abs=1e-12)
