"""The .qsf writer, reader and validator, and the study's JSON round trip."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from dubfiv.study.content import Study, StudyError
from dubfiv.study.qualtrics import (
    QsfError,
    build_qsf,
    read_qsf,
    response_layout,
    validate_qsf,
    write_qsf,
)

BASE_URL = "https://example.org/studies/fake"  # as in conftest.py

CREATED = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def _elements(qsf: dict, kind: str) -> list[dict]:
    return [e for e in qsf["SurveyElements"] if e["Element"] == kind]


def _walk(items: list[dict]):
    for item in items:
        yield item
        yield from _walk(item.get("Flow", []))


@pytest.fixture()
def written(study_dir: tuple[Study, Path], base_url: str) -> tuple[Study, Path, dict]:
    study, folder = study_dir
    assert base_url == BASE_URL
    write_qsf(folder / "study.qsf", study, BASE_URL, created=CREATED)
    qsf = json.loads((folder / "study.qsf").read_text(encoding="utf-8"))
    return study, folder, qsf


def test_qsf_has_the_elements_an_import_needs(written) -> None:
    study, _, qsf = written
    entry = qsf["SurveyEntry"]
    assert re.fullmatch(r"SV_[A-Za-z0-9]{15}", entry["SurveyID"])
    assert entry["SurveyName"] == study.name
    assert entry["SurveyLanguage"] == "EN"
    assert entry["SurveyStatus"] == "Inactive"
    assert entry["SurveyCreationDate"] == "2024-05-06 07:08:09"
    kinds = [e["Element"] for e in qsf["SurveyElements"]]
    for kind in ("BL", "FL", "SO", "QC", "RS"):
        assert kinds.count(kind) == 1, kind
    assert _elements(qsf, "RS")[0]["PrimaryAttribute"] == entry["SurveyActiveResponseSet"]
    for el in qsf["SurveyElements"]:
        assert el["SurveyID"] == entry["SurveyID"]
        assert set(el) == {"SurveyID", "Element", "PrimaryAttribute", "SecondaryAttribute",
                           "TertiaryAttribute", "Payload"}
    sq = _elements(qsf, "SQ")
    qids = [e["PrimaryAttribute"] for e in sq]
    assert len(qids) == len(set(qids))
    assert all(e["Payload"]["QuestionID"] == e["PrimaryAttribute"] for e in sq)
    tags = [e["Payload"]["DataExportTag"] for e in sq]
    assert len(tags) == len(set(tags))
    assert _elements(qsf, "QC")[0]["SecondaryAttribute"] == str(len(sq))
    # 2 consent + per condition 1 intro + pages + 2 matrices + 3 tasks + end
    n_pages = sum(len(c.pages) for c in study.conditions)
    assert len(sq) == 2 + len(study.conditions) + n_pages + 2 + len(study.tasks) + 1


def test_blocks_and_flow_reference_existing_things(written) -> None:
    _, _, qsf = written
    qids = {e["PrimaryAttribute"] for e in _elements(qsf, "SQ")}
    blocks = list(_elements(qsf, "BL")[0]["Payload"].values())
    assert [b["Type"] for b in blocks].count("Default") == 1
    assert [b["Type"] for b in blocks].count("Trash") == 1
    listed = [el["QuestionID"] for b in blocks for el in b["BlockElements"]
              if el["Type"] == "Question"]
    assert set(listed) == qids and len(listed) == len(qids)  # each question in one block
    block_ids = {b["ID"] for b in blocks}
    root = _elements(qsf, "FL")[0]["Payload"]
    assert root["Type"] == "Root"
    items = list(_walk(root["Flow"]))
    shown = [i["ID"] for i in items if i["Type"] in ("Block", "Standard")]
    assert set(shown) <= block_ids
    assert set(shown) == block_ids - {b["ID"] for b in blocks if b["Type"] == "Trash"}
    flow_ids = [root["FlowID"]] + [i["FlowID"] for i in items]
    assert len(flow_ids) == len(set(flow_ids))
    assert root["Properties"]["Count"] >= max(int(f[3:]) for f in flow_ids)
    assert root["Flow"][-1]["Type"] == "EndSurvey"
    # pages of a condition are separated by page breaks
    inn = next(b for b in blocks if b["Description"].startswith("Condition inn"))
    assert [e["Type"] for e in inn["BlockElements"]] == [
        "Question", "Page Break", "Question", "Page Break", "Question"]


def test_randomizer_assigns_one_condition(written) -> None:
    study, _, qsf = written
    blocks = {b["ID"]: b for b in _elements(qsf, "BL")[0]["Payload"].values()}
    root = _elements(qsf, "FL")[0]["Payload"]
    rands = [i for i in _walk(root["Flow"]) if i["Type"] == "BlockRandomizer"]
    assert len(rands) == 1
    rand = rands[0]
    assert rand["SubSet"] == 1 and rand["EvenPresentation"] is True
    assert len(rand["Flow"]) == len(study.conditions)
    for child, cond in zip(rand["Flow"], study.conditions, strict=True):
        eds = [d for i in _walk([child]) if i["Type"] == "EmbeddedData"
               for d in i["EmbeddedData"]]
        assert [(d["Field"], d["Value"], d["Type"]) for d in eds] == [
            ("condition", cond.key, "Custom")]
        shown = [i["ID"] for i in _walk([child]) if i["Type"] == "Standard"]
        assert len(shown) == 1
        assert blocks[shown[0]]["Description"].startswith(f"Condition {cond.key}")


def test_declining_consent_ends_the_survey(written) -> None:
    study, _, qsf = written
    sq = {e["Payload"]["DataExportTag"]: e["Payload"] for e in _elements(qsf, "SQ")}
    consent = sq["consent"]
    assert consent["QuestionType"] == "MC" and consent["Selector"] == "SAVR"
    assert consent["Choices"]["2"]["Display"] == study.consent_decline
    assert consent["Validation"]["Settings"]["ForceResponse"] == "ON"
    root = _elements(qsf, "FL")[0]["Payload"]["Flow"]
    blocks = {b["ID"]: b for b in _elements(qsf, "BL")[0]["Payload"].values()}
    first = blocks[root[0]["ID"]]
    assert consent["QuestionID"] in [e.get("QuestionID") for e in first["BlockElements"]]
    branch = root[1]
    assert branch["Type"] == "Branch"
    cond = branch["BranchLogic"]["0"]["0"]
    assert cond["QuestionID"] == consent["QuestionID"]
    assert cond["ChoiceLocator"] == f"q://{consent['QuestionID']}/SelectableChoice/2"
    assert cond["Operator"] == "Selected"
    assert [i["Type"] for i in branch["Flow"]] == ["EndSurvey"]
    assert root[2]["Type"] == "BlockRandomizer"  # only reached with consent


def test_matrices_and_images(written) -> None:
    study, folder, qsf = written
    sq = {e["Payload"]["DataExportTag"]: e["Payload"] for e in _elements(qsf, "SQ")}
    for tag, answers in (("relevance", study.relevance_answers),
                         ("confidence", study.confidence_answers)):
        q = sq[tag]
        assert (q["QuestionType"], q["Selector"], q["SubSelector"]) == (
            "Matrix", "Likert", "SingleAnswer")
        assert [q["Choices"][k]["Display"] for k in q["ChoiceOrder"]] == [
            a.label for a in study.attributes]
        assert [q["Answers"][str(k)]["Display"] for k in q["AnswerOrder"]] == answers
    assert len(study.confidence_answers) == 5
    text = " ".join(e["Payload"]["QuestionText"] for e in _elements(qsf, "SQ"))
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert srcs and all(s.startswith(BASE_URL + "/") for s in srcs)
    paths = {unquote(s[len(BASE_URL) + 1:]) for s in srcs}
    assert paths == {img.path for img in study.images()}
    assert all((folder / p).is_file() for p in paths)
    assert "component%201.png" in text  # quoted
    assert not any("Graphics" in e["Payload"] for e in _elements(qsf, "SQ"))


def test_round_trip_through_reader(written) -> None:
    study, folder, qsf = written
    parsed = read_qsf(folder / "study.qsf")
    assert parsed.survey_id == qsf["SurveyEntry"]["SurveyID"]
    assert parsed.conditions == [c.key for c in study.conditions]
    assert parsed.randomizer_subset == 1
    assert parsed.attributes == [a.label for a in study.attributes]
    assert sorted(parsed.image_paths(BASE_URL)) == sorted({i.path for i in study.images()})
    assert set(parsed.condition_blocks) == {c.key for c in study.conditions}
    for key, bid in parsed.condition_blocks.items():
        n_pages = len(study.condition(key).pages) + 1  # + intro
        assert parsed.block(bid).n_pages == n_pages
    assert {f"predict_{t.key}" for t in study.tasks} <= set(parsed.export_tags)
    assert validate_qsf(qsf, folder, BASE_URL) == []


def _first(qsf: dict, kind: str) -> dict:
    return _elements(qsf, kind)[0]


def _break_dup_qid(q: dict) -> None:
    sq = _elements(q, "SQ")
    sq[1]["PrimaryAttribute"] = sq[0]["PrimaryAttribute"]
    sq[1]["Payload"]["QuestionID"] = sq[0]["PrimaryAttribute"]


def _break_block(q: dict) -> None:
    block = _first(q, "BL")["Payload"]["1"]
    block["BlockElements"].append({"Type": "Question", "QuestionID": "QID999"})


def _break_flow(q: dict) -> None:
    _first(q, "FL")["Payload"]["Flow"].insert(
        0, {"Type": "Standard", "ID": "BL_missing", "FlowID": "FL_998"})


def _break_qc(q: dict) -> None:
    _first(q, "QC")["SecondaryAttribute"] = "1"


def _break_subset(q: dict) -> None:
    for item in _walk(_first(q, "FL")["Payload"]["Flow"]):
        if item["Type"] == "BlockRandomizer":
            item["SubSet"] = 7


def _break_survey_id(q: dict) -> None:
    q["SurveyEntry"]["SurveyID"] = "SV_short"


@pytest.mark.parametrize(("breaker", "message"), [
    (_break_dup_qid, "duplicate QIDs"),
    (_break_block, "missing question QID999"),
    (_break_flow, "missing block BL_missing"),
    (_break_qc, "QC says 1"),
    (_break_subset, "SubSet 7"),
    (_break_survey_id, "SurveyID"),
])
def test_validator_detects_broken_surveys(written, breaker, message: str) -> None:
    _, folder, qsf = written
    broken = copy.deepcopy(qsf)
    breaker(broken)
    problems = validate_qsf(broken, folder, BASE_URL)
    assert any(message in p for p in problems), problems


def test_validator_detects_missing_image(written) -> None:
    _, folder, qsf = written
    (folder / "images" / "concepts" / "component 1.png").unlink()
    problems = validate_qsf(qsf, folder, BASE_URL)
    assert problems == [f"image {BASE_URL}/images/concepts/component%201.png has no file "
                        f"images/concepts/component 1.png in {folder}"]
    assert any("not under the base URL" in p
               for p in validate_qsf(qsf, folder, "https://other.example"))


def test_ids_are_deterministic(study_dir) -> None:
    study, _ = study_dir
    a = build_qsf(study, BASE_URL, created=CREATED)
    assert a == build_qsf(study, BASE_URL, created=CREATED)
    study.seed += 1
    b = build_qsf(study, BASE_URL, created=CREATED)
    assert a["SurveyEntry"]["SurveyID"] != b["SurveyEntry"]["SurveyID"]


def test_bad_inputs_raise(study_dir) -> None:
    study, _ = study_dir
    with pytest.raises(QsfError, match="image-base-url"):
        build_qsf(study, "images/")
    study.conditions[0].pages[0].images.pop()
    with pytest.raises(QsfError, match="grid 2x3 needs 6 images, has 5"):
        build_qsf(study, BASE_URL)


def test_response_layout_matches_the_survey(written) -> None:
    study, folder, qsf = written
    layout = response_layout(study, read_qsf(folder / "study.qsf"))
    tags = {e["Payload"]["DataExportTag"]: e["PrimaryAttribute"] for e in _elements(qsf, "SQ")}
    for i, attr in enumerate(study.attributes, start=1):
        assert layout.relevance[attr.key].tag == f"relevance_{i}"
        assert layout.relevance[attr.key].import_id == f"{tags['relevance']}_{i}"
        assert layout.confidence[attr.key].tag == f"confidence_{i}"
    assert layout.prediction["t1"].import_id == tags["predict_t1"]
    assert layout.condition.tag == "condition"
    assert response_layout(study) == layout  # in-memory build gives the same columns
    study.attributes[0].label = "renamed"
    with pytest.raises(QsfError, match="differ from the study's attributes"):
        response_layout(study, read_qsf(folder / "study.qsf"))


def test_study_json_round_trip(study_dir) -> None:
    study, folder = study_dir
    assert study.validate(folder) == []
    path = study.save(folder)
    again = Study.load(folder)
    assert again == study
    assert again.to_dict() == json.loads(path.read_text(encoding="utf-8"))
    data = study.to_dict()
    data["conditions"][0]["pages"][0]["colour"] = "red"
    with pytest.raises(StudyError, match=r"conditions\[0\].pages\[0\]: unknown key.*colour"):
        Study.from_dict(data)


def test_study_validate_checks_files(study_dir) -> None:
    study, folder = study_dir
    (folder / "images" / "tasks" / "task_0.png").write_bytes(b"not a png")
    study.tasks[1].image.width = 99
    study.tasks[2].image.path = "../outside.png"
    problems = study.validate(folder)
    assert any("task_0.png" in p and "not a readable image" in p for p in problems)
    assert any("task_1.png" in p and "99x9" in p for p in problems)
    assert any("'../outside.png'" in p for p in problems)
    assert study.model_prediction(study.tasks[0]) == "Stretchy"
    assert study.model_prediction(study.tasks[1]) == "Peaky"
