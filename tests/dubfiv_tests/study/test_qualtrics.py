"""The .qsf writer, reader and validator, and the study's JSON round trip."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from dubfiv.study.content import Study, StudyError
from dubfiv.study.qsf.columns import response_layout
from dubfiv.study.qsf.reader import (
    SURVEY_OPTIONS_KEYS,
    QsfError,
    parse_qsf,
    read_qsf,
    written_by_dubfiv,
)
from dubfiv.study.qsf.validate import validate_qsf
from dubfiv.study.qsf.writer import build_qsf, check_base_url, write_qsf

BASE_URL = "https://example.org/studies/fake"  # as in conftest.py

CREATED = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)


def _elements(qsf: dict, kind: str) -> list[dict]:
    return [e for e in qsf["SurveyElements"] if e["Element"] == kind]


def _walk(items: list[dict]):
    for item in items:
        yield item
        yield from _walk(item.get("Flow", []))


def _blocks(qsf: dict) -> list[dict]:
    return list(_elements(qsf, "BL")[0]["Payload"])


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
    # consent text, consent, device + 2 end messages + per condition intro, pages and the
    # explanation again above the matrices + 2 matrices + 3 tasks + end
    n_pages = sum(len(c.pages) for c in study.conditions)
    assert len(sq) == 3 + 2 + 2 * len(study.conditions) + n_pages + 2 + len(study.tasks) + 1
    for kind in ("SCO", "PROJ", "STAT"):  # as in Qualtrics' own exports
        assert kinds.count(kind) == 1, kind
    for e in sq:
        p = e["Payload"]
        assert isinstance(p["NextChoiceId"], int) and isinstance(p["NextAnswerId"], int)
        assert p["NextChoiceId"] > max([int(k) for k in p.get("Choices", {})], default=0)
        assert p["NextAnswerId"] > max([int(k) for k in p.get("Answers", {})], default=0)
    assert isinstance(_elements(qsf, "BL")[0]["Payload"], list)


def test_blocks_and_flow_reference_existing_things(written) -> None:
    _, _, qsf = written
    qids = {e["PrimaryAttribute"] for e in _elements(qsf, "SQ")}
    blocks = _blocks(qsf)
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
    blocks = {b["ID"]: b for b in _blocks(qsf)}
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
    blocks = {b["ID"]: b for b in _blocks(qsf)}
    first = blocks[root[0]["ID"]]
    assert first["Type"] == "Default"
    assert consent["QuestionID"] in [e.get("QuestionID") for e in first["BlockElements"]]
    device = sq["device"]
    assert device["QuestionID"] in [e.get("QuestionID") for e in first["BlockElements"]]
    assert device["Choices"]["1"]["Display"] == study.device_choices[0]
    for branch, qid, choice, operator, reason in (
            (root[1], consent["QuestionID"], 2, "Selected", "declined"),
            (root[2], device["QuestionID"], 1, "NotSelected", "device")):
        assert branch["Type"] == "Branch"
        cond = branch["BranchLogic"]["0"]["0"]
        assert cond["QuestionID"] == qid
        assert cond["ChoiceLocator"] == f"q://{qid}/SelectableChoice/{choice}"
        assert cond["Operator"] == operator
        # a page saying why, then the end
        assert [i["Type"] for i in branch["Flow"]] == ["Standard", "EndSurvey"]
        message = blocks[branch["Flow"][0]["ID"]]["BlockElements"]
        assert len(message) == 1
        text = next(e["Payload"]["QuestionText"] for e in _elements(qsf, "SQ")
                    if e["PrimaryAttribute"] == message[0]["QuestionID"])
        assert text == study.early_end_text(reason)
        assert "return your submission" not in text  # no Prolific code in this study
    assert root[3]["Type"] == "BlockRandomizer"  # only reached with consent and a desktop


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
    block = _first(q, "BL")["Payload"][1]
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


def _assert_detected(exported, breaker, message: str) -> None:
    """Break a copy of an exported survey with ``breaker``; the validator must say ``message``."""
    _, folder, qsf = exported
    broken = copy.deepcopy(qsf)
    breaker(broken)
    problems = validate_qsf(broken, folder, BASE_URL)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize(("breaker", "message"), [
    (_break_dup_qid, "duplicate QIDs"),
    (_break_block, "missing question QID999"),
    (_break_flow, "missing block BL_missing"),
    (_break_qc, "QC says 1"),
    (_break_subset, "SubSet 7"),
    (_break_survey_id, "SurveyID"),
])
def test_validator_detects_broken_surveys(written, breaker, message: str) -> None:
    _assert_detected(written, breaker, message)


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
    with pytest.raises(QsfError, match="image_base_url"):
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
    # a survey built in memory gives the same columns
    assert response_layout(study, parse_qsf(build_qsf(study))) == layout
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


# ---------------------------------------------------------------------- the full survey


@pytest.fixture()
def full(full_study_dir) -> tuple[Study, Path, dict]:
    study, folder = full_study_dir
    qsf = write_qsf(folder / "study.qsf", study, BASE_URL, created=CREATED)
    return study, folder, qsf


def _by_tag(qsf: dict) -> dict[str, dict]:
    return {e["Payload"]["DataExportTag"]: e["Payload"] for e in _elements(qsf, "SQ")}


def _pages(block: dict) -> list[list[str]]:
    pages: list[list[str]] = [[]]
    for el in block["BlockElements"]:
        if el["Type"] == "Page Break":
            pages.append([])
        else:
            pages[-1].append(el["QuestionID"])
    return pages


def test_full_survey_is_valid_and_in_order(full) -> None:
    study, folder, qsf = full
    assert validate_qsf(qsf, folder, BASE_URL) == []
    assert study.validate(folder) == []
    tags = _by_tag(qsf)
    qid_tag = {p["QuestionID"]: t for t, p in tags.items()}
    blocks = {b["ID"]: b for b in _blocks(qsf)}
    root = _elements(qsf, "FL")[0]["Payload"]["Flow"]
    # Prolific: the first flow element reads the ids from the URL
    assert root[0]["Type"] == "EmbeddedData"
    assert [(d["Field"], d["Type"], "Value" in d) for d in root[0]["EmbeddedData"]] == [
        ("PROLIFIC_PID", "Recipient", False), ("STUDY_ID", "Recipient", False),
        ("SESSION_ID", "Recipient", False)]

    def shown(item: dict) -> list[str]:
        return [qid_tag[q] for page in _pages(blocks[item["ID"]]) for q in page]

    kinds = [(i["Type"], shown(i)[0] if i["Type"] in ("Block", "Standard") else None)
             for i in root[1:]]
    assert kinds == [("Block", "consent_text"), ("Branch", None), ("Branch", None),
                     ("Standard", "tutorial_intro"), ("Branch", None), ("Branch", None),
                     ("BlockRandomizer", None), ("Standard", "baseline_recap"),
                     ("Standard", "predict_t0"),
                     ("Standard", "end"), ("EndSurvey", None)]
    tutorial = _pages(blocks[root[4]["ID"]])
    assert [[qid_tag[q] for q in p] for p in tutorial] == [
        ["tutorial_intro"], ["tutorial_page1"], ["tutorial_page2"],
        ["tutorial_check", "comprehension_1", "comprehension_2"]]
    # each comprehension check: a wrong answer ends the survey, saying why
    for branch, chk in zip(root[5:7], study.checks_of("comprehension"), strict=True):
        cond = branch["BranchLogic"]["0"]["0"]
        assert cond["QuestionID"] == tags[chk.tag]["QuestionID"]
        assert cond["ChoiceLocator"].endswith(f"/SelectableChoice/{chk.correct}")
        assert cond["Operator"] == "NotSelected"
        assert [i["Type"] for i in branch["Flow"]] == ["Standard", "EndSurvey"]
        message = tags[f"end_{chk.tag}"]["QuestionText"]
        assert "tutorial was not correct" in message and "return your submission" in message
    assert "return your submission" in tags["end_declined"]["QuestionText"]
    assert "desktop" in tags["end_device"]["QuestionText"]
    # the end redirects to Prolific with the code; the early ends do not
    assert root[-1] == {"Type": "EndSurvey", "FlowID": root[-1]["FlowID"],
                        "EndingType": "Advanced", "Options": {
                            "Advanced": "true", "SurveyTermination": "Redirect",
                            "EOSRedirectURL": "https://app.prolific.com/submissions/complete"
                                              "?cc=ABC123"}}
    parsed = parse_qsf(qsf)
    assert parsed.redirects == ["https://app.prolific.com/submissions/complete?cc=ABC123"]
    assert parsed.url_fields == ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]
    # the checks' export tags are their CSV columns, with the study's choices
    for chk in study.checks:
        q = tags[chk.tag]
        assert (q["QuestionType"], q["Selector"]) == ("MC", "SAVR")
        assert [q["Choices"][k]["Display"] for k in q["ChoiceOrder"]] == chk.choices
        assert q["Validation"]["Settings"]["ForceResponse"] == "ON"


def test_explanation_stays_visible_and_rows_are_randomised(full) -> None:
    study, _, qsf = full
    tags = _by_tag(qsf)
    qid_tag = {p["QuestionID"]: t for t, p in tags.items()}
    blocks = _blocks(qsf)
    relevance = next(b for b in blocks if b["Description"] == "Attribute relevance")
    pages = [[qid_tag[q] for q in p] for p in _pages(relevance)]
    assert pages == [[f"{c.key}_recap" for c in study.conditions]
                     + ["relevance", "attention_1", "confidence"]]  # one page
    for cond in study.conditions:
        recap = tags[f"{cond.key}_recap"]
        logic = recap["DisplayLogic"]["0"]["0"]
        assert (logic["LogicType"], logic["LeftOperand"], logic["Operator"],
                logic["RightOperand"]) == ("EmbeddedField", "condition", "EqualTo", cond.key)
        srcs = re.findall(r'<img [^>]*src="([^"]+)"', recap["QuestionText"])
        assert srcs == [f"{BASE_URL}/{quote(img.path)}" for p in cond.pages for img in p.images]
    for tag in ("relevance", "confidence"):
        assert tags[tag]["Randomization"]["Type"] == "All"
    assert "DisplayLogic" not in tags["relevance"]


def test_attention_checks_sit_among_the_questions(full) -> None:
    study, _, qsf = full
    tags = _by_tag(qsf)
    qid_tag = {p["QuestionID"]: t for t, p in tags.items()}
    prediction = next(b for b in _blocks(qsf) if b["Description"] == "Prediction tasks")
    pages = [[qid_tag[q] for q in p] for p in _pages(prediction)]
    order = [p[0] for p in pages]
    assert all(len(p) == 1 for p in pages)
    assert sorted(order) == sorted(["attention_2"] + [f"predict_{t.key}" for t in study.tasks])
    i = order.index("attention_2")
    assert 0 < i < len(order) - 1  # between tasks, not first or last
    for chk in study.checks_of("attention"):
        text = tags[chk.tag]["QuestionText"]
        # instructional: the question text itself says which choice to pick
        assert chk.choices[chk.correct - 1] in re.sub(r"<[^>]+>", "", text)


def test_every_image_is_at_least_128_css_px(full) -> None:
    _, _, qsf = full
    text = " ".join(e["Payload"]["QuestionText"] for e in _elements(qsf, "SQ"))
    tags = re.findall(r"<img [^>]*>", text)
    assert len(tags) > 10
    for tag in tags:
        width = re.search(r"width:(\d+)px", tag)
        assert width and int(width.group(1)) >= 128, tag
        assert "max-width:none" in tag, tag


def _break_next_choice(q: dict) -> None:
    _elements(q, "SQ")[1]["Payload"]["NextChoiceId"] = 1


def _break_display_field(q: dict) -> None:
    for e in _elements(q, "SQ"):
        if "DisplayLogic" in e["Payload"]:
            e["Payload"]["DisplayLogic"]["0"]["0"]["LeftOperand"] = "condtion"
            return


def _break_redirect(q: dict) -> None:
    _first(q, "FL")["Payload"]["Flow"][-1]["Options"]["EOSRedirectURL"] = "app.prolific.com"


def _break_custom_value(q: dict) -> None:
    for item in _walk(_first(q, "FL")["Payload"]["Flow"]):
        if item["Type"] == "EmbeddedData" and item["EmbeddedData"][0]["Type"] == "Custom":
            del item["EmbeddedData"][0]["Value"]
            return


def _break_locator(q: dict) -> None:
    for item in _first(q, "FL")["Payload"]["Flow"]:
        if item["Type"] == "Branch":
            expr = item["BranchLogic"]["0"]["0"]
            expr["ChoiceLocator"] = expr["ChoiceLocator"].rsplit("/", 1)[0] + "/9"
            return


def _break_answer_order(q: dict) -> None:
    for e in _elements(q, "SQ"):
        if e["Payload"]["QuestionType"] == "Matrix":
            e["Payload"]["AnswerOrder"].pop()
            return


def _break_randomization(q: dict) -> None:
    for e in _elements(q, "SQ"):
        if "Randomization" in e["Payload"]:
            e["Payload"]["Randomization"] = {"Type": "Shuffle"}
            return


def _break_stat(q: dict) -> None:
    q["SurveyElements"].append(copy.deepcopy(_first(q, "STAT")))


@pytest.mark.parametrize(("breaker", "message"), [
    (_break_next_choice, "NextChoiceId 1 is not above"),
    (_break_display_field, "embedded field 'condtion'"),
    (_break_redirect, "not an http(s) URL"),
    (_break_custom_value, "needs a string Value"),
    (_break_locator, "refers to choice 9"),
    (_break_answer_order, "AnswerOrder does not match"),
    (_break_randomization, "Randomization must have a Type"),
    (_break_stat, "at most one STAT"),
])
def test_validator_detects_broken_full_surveys(full, breaker, message: str) -> None:
    _assert_detected(full, breaker, message)


def test_reader_accepts_blocks_as_an_object(full) -> None:
    """Older exports key the blocks "0", "1", ...: read and validated the same."""
    _, folder, qsf = full
    keyed = copy.deepcopy(qsf)
    bl = _first(keyed, "BL")
    bl["Payload"] = {str(i): b for i, b in enumerate(bl["Payload"])}
    assert validate_qsf(keyed, folder, BASE_URL) == []
    assert parse_qsf(keyed).blocks == parse_qsf(qsf).blocks


def test_response_layout_has_checks_device_and_prolific_ids(full) -> None:
    study, folder, qsf = full
    layout = response_layout(study, read_qsf(folder / "study.qsf"))
    tags = _by_tag(qsf)
    assert {t: c.import_id for t, c in layout.checks.items()} == {
        c.tag: tags[c.tag]["QuestionID"] for c in study.checks}
    assert layout.device is not None and layout.device.import_id == tags["device"]["QuestionID"]
    assert sorted(layout.embedded) == ["PROLIFIC_PID", "SESSION_ID", "STUDY_ID"]
    study.checks[0].tag = "comprehension_9"
    with pytest.raises(QsfError, match="comprehension_9"):
        response_layout(study, read_qsf(folder / "study.qsf"))


def test_without_prolific_there_is_no_redirect(full_study_dir) -> None:
    study, folder = full_study_dir
    study.prolific_completion_code = None
    qsf = build_qsf(study, BASE_URL, created=CREATED)
    root = _first(qsf, "FL")["Payload"]["Flow"]
    assert root[0]["Type"] == "Block" and root[-1] == {"Type": "EndSurvey",
                                                       "FlowID": root[-1]["FlowID"]}
    assert "Prolific" not in json.dumps(qsf)
    assert validate_qsf(qsf, folder, BASE_URL) == []
    study.prolific_completion_code = "has space"
    with pytest.raises(QsfError, match="prolific_completion_code"):
        build_qsf(study, BASE_URL)



# ---------------------------------------------------------------------- like Qualtrics' exports


def test_survey_options_are_those_of_real_exports(written) -> None:
    _, _, qsf = written
    options = _first(qsf, "SO")["Payload"]
    assert set(SURVEY_OPTIONS_KEYS) <= set(options)
    assert options["ValidationMessage"] is None and options["NewScoring"] == 1
    assert options["SkinType"] == "templated" and options["Skin"]["templateId"] == "*base"
    assert "SurveyLanguage" not in options  # it belongs in the entry
    assert qsf["SurveyEntry"]["SurveyLanguage"] == "EN"


def test_display_logic_has_no_hidden_expression(full) -> None:
    _, _, qsf = full
    logics = [e["Payload"]["DisplayLogic"] for e in _elements(qsf, "SQ")
              if "DisplayLogic" in e["Payload"]]
    assert len(logics) == 3  # one explanation recap per condition
    for logic in logics:
        assert set(logic["0"]["0"]) == {"LogicType", "LeftOperand", "Operator", "RightOperand",
                                        "Type", "Description"}
        assert logic["inPage"] is False and logic["0"]["Type"] == "If"


def test_questions_carry_grading_data(full) -> None:
    _, _, qsf = full
    payloads = [e["Payload"] for e in _elements(qsf, "SQ")]
    assert payloads and all(p["GradingData"] == [] for p in payloads)


def test_early_ends_are_flagged_screened(full) -> None:
    """Declined consent, a phone and a failed comprehension check end the survey as
    screened out, not complete; the regular end is not flagged."""
    _, _, qsf = full
    root = _first(qsf, "FL")["Payload"]["Flow"]
    branches = [i for i in root if i["Type"] == "Branch"]
    assert len(branches) == 4  # declined, device, two comprehension checks
    for branch in branches:
        end = branch["Flow"][-1]
        assert end["Type"] == "EndSurvey" and end["EndingType"] == "Advanced"
        assert end["Options"] == {"Advanced": "true", "SurveyTermination": "DefaultMessage",
                                  "ResponseFlag": "Screened"}
    assert "ResponseFlag" not in root[-1]["Options"]
    assert parse_qsf(qsf).redirects == [root[-1]["Options"]["EOSRedirectURL"]]


def test_question_count_is_the_qid_counter(full) -> None:
    _, _, qsf = full
    numbers = [int(e["PrimaryAttribute"][3:]) for e in _elements(qsf, "SQ")]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert _first(qsf, "QC")["SecondaryAttribute"] == str(max(numbers))


def test_file_is_ascii_json(full) -> None:
    _, folder, qsf = full
    raw = (folder / "study.qsf").read_bytes()
    raw.decode("ascii")  # no byte beyond ASCII
    assert "\u2192" in _first(qsf, "SO")["Payload"]["NextButton"]
    assert b"\\u2192" in raw  # escaped, as Qualtrics writes it
    assert json.loads(raw) == qsf


def test_our_surveys_carry_the_writer_mark(written) -> None:
    _, _, qsf = written
    assert written_by_dubfiv(qsf)
    del qsf["SurveyEntry"]["SurveyDescription"]
    assert not written_by_dubfiv(qsf)
    assert not written_by_dubfiv({"SurveyEntry": None})


SID = "SV_0123456789abcde"


def _element(kind: str, primary: str, secondary: str | None, payload: object,
             tertiary: str | None = None) -> dict:
    return {"SurveyID": SID, "Element": kind, "PrimaryAttribute": primary,
            "SecondaryAttribute": secondary, "TertiaryAttribute": tertiary, "Payload": payload}


def _exported_question(qid: str, tag: str, qtype: str, selector: str, text: str,
                       **extra: object) -> dict:
    payload = {"QuestionText": text, "DefaultChoices": False, "DataExportTag": tag,
               "QuestionType": qtype, "Selector": selector,
               "DataVisibility": {"Private": False, "Hidden": False},
               "Configuration": {"QuestionDescriptionOption": "UseText"},
               "QuestionDescription": text, "Validation": {"Settings": {"Type": "None"}},
               "GradingData": [], "Language": [], "NextChoiceId": 4, "NextAnswerId": 1,
               "QuestionID": qid, **extra}
    return _element("SQ", qid, text, payload)


def _choices(*labels: str) -> dict:
    return {str(i + 1): {"Display": label} for i, label in enumerate(labels)}


def _qualtrics_export() -> dict:
    """A survey as Qualtrics itself exports one (the facts of ../shared/QUALTRICS.md):
    export tags used twice, Timing/Meta questions without ChoiceOrder, rank order (RO)
    and constant sum (CS) questions, display logic with ``Displayed`` and a matrix-cell
    locator, QIDs with gaps (QC above the largest), ``SubSet`` as a string, a
    WebService flow item, branch logic on ``DeviceType`` and on an embedded field (with
    ``_HiddenExpression``), early ends flagged screened, a Prolific redirect."""
    questions = [
        _exported_question("QID1", "Q1", "MC", "SAVR", "Do you agree?", SubSelector="TX",
                           Choices=_choices("Yes", "No"), ChoiceOrder=["1", "2"],
                           NextChoiceId=3),
        _exported_question("QID2", "Q2", "Matrix", "Likert", "How relevant is...",
                           SubSelector="SingleAnswer", Choices=_choices("colour", "arms"),
                           ChoiceOrder=[1, 2], Answers=_choices("no", "maybe", "yes"),
                           AnswerOrder=[1, 2, 3], NextChoiceId=3, NextAnswerId=4),
        _exported_question("QID3", "Q3", "Timing", "PageTimer", "Timing",
                           Choices=_choices("First Click", "Last Click", "Page Submit",
                                            "Click Count")),
        _exported_question("QID5", "Q2", "RO", "DND", "Rank these", SubSelector="TX",
                           Choices=_choices("a", "b", "c"), ChoiceOrder=["1", "2", "3"],
                           DisplayLogic={
                               "0": {"0": {"LogicType": "Question", "QuestionID": "QID2",
                                           "QuestionIsInLoop": "no",
                                           "ChoiceLocator": "q://QID2/SelectableAnswer/1",
                                           "Operator": "Selected",
                                           "QuestionIDFromLocator": "QID2",
                                           "LeftOperand": "q://QID2/SelectableAnswer/1",
                                           "Type": "Expression", "Description": "..."},
                                     "1": {"LogicType": "Question", "QuestionID": "QID1",
                                           "QuestionIsInLoop": "no",
                                           "ChoiceLocator": "q://QID1/DisplayableChoice/1",
                                           "Operator": "Displayed",
                                           "QuestionIDFromLocator": "QID1",
                                           "LeftOperand": "q://QID1/DisplayableChoice/1",
                                           "Type": "Expression", "Description": "...",
                                           "Conjuction": "Or"},
                                     "Type": "If"},
                               "Type": "BooleanExpression", "inPage": False}),
        _exported_question("QID6", "Q6", "CS", "VRTL", "Split 100 points",
                           Choices=_choices("x", "y"), ChoiceOrder=["1", "2"]),
        _exported_question("QID7", "Q7", "Meta", "Browser", "Browser Meta Info",
                           Choices=_choices("Browser", "Version", "Operating System",
                                            "Resolution")),
    ]
    blocks = [
        {"Type": "Default", "Description": "Default Question Block", "ID": "BL_default0000001",
         "BlockElements": [{"Type": "Question", "QuestionID": "QID1"}, {"Type": "Page Break"},
                           {"Type": "Question", "QuestionID": "QID7"}]},
        {"Type": "Trash", "Description": "Trash / Unused Questions", "ID": "BL_trash00000001",
         "BlockElements": []},
        {"Type": "Standard", "SubType": "", "Description": "Block A", "ID": "BL_blockA0000001",
         "BlockElements": [{"Type": "Question", "QuestionID": "QID2"},
                           {"Type": "Question", "QuestionID": "QID3"}],
         "Options": {"BlockLocking": "false", "RandomizeQuestions": "false",
                     "BlockVisibility": "Expanded"}},
        {"Type": "Standard", "SubType": "", "Description": "Block B", "ID": "BL_blockB0000001",
         "BlockElements": [{"Type": "Question", "QuestionID": "QID5"},
                           {"Type": "Question", "QuestionID": "QID6"}]},
    ]
    screened = {"Advanced": "true", "SurveyTermination": "DefaultMessage",
                "ResponseFlag": "Screened"}

    def group(flow_id: int, value: str, block: str) -> dict:
        return {"Type": "Group", "FlowID": f"FL_{flow_id}", "Description": f"group {value}",
                "Flow": [{"Type": "EmbeddedData", "FlowID": f"FL_{flow_id + 1}",
                          "EmbeddedData": [{"Description": "condition", "Type": "Custom",
                                            "Field": "condition", "VariableType": "String",
                                            "DataVisibility": [], "AnalyzeText": False,
                                            "Value": value}]},
                         {"Type": "Standard", "ID": block, "FlowID": f"FL_{flow_id + 2}",
                          "Autofill": []}]}

    flow = [
        {"Type": "EmbeddedData", "FlowID": "FL_2", "EmbeddedData": [
            {"Description": "PROLIFIC_PID", "Type": "Recipient", "Field": "PROLIFIC_PID",
             "VariableType": "String", "DataVisibility": [], "AnalyzeText": False}]},
        {"Type": "WebService", "FlowID": "FL_3", "URL": "https://example.org/api",
         "Method": "GET", "RequestParams": [], "EditBodyParams": [],
         "ResponseMap": [{"key": "id", "value": "api_id"}], "FireAndForget": False},
        {"Type": "Block", "ID": "BL_default0000001", "FlowID": "FL_4", "Autofill": []},
        {"Type": "Branch", "FlowID": "FL_5", "Description": "New Branch", "BranchLogic": {
            "0": {"0": {"LogicType": "DeviceType", "LeftOperand": "DeviceType",
                        "Operator": "EqualTo", "RightOperand": "Mobile",
                        "Type": "Expression", "Description": "If device is mobile"},
                  "Type": "If"}, "Type": "BooleanExpression"},
         "Flow": [{"Type": "EndSurvey", "FlowID": "FL_6", "EndingType": "Advanced",
                   "Options": dict(screened)}]},
        {"Type": "Branch", "FlowID": "FL_7", "Description": "New Branch", "BranchLogic": {
            "0": {"0": {"LogicType": "EmbeddedField", "LeftOperand": "api_id",
                        "Operator": "Empty", "_HiddenExpression": False,
                        "Type": "Expression", "Description": "If api_id Is Empty"},
                  "Type": "If"}, "Type": "BooleanExpression"},
         "Flow": [{"Type": "EndSurvey", "FlowID": "FL_8", "EndingType": "Advanced",
                   "Options": dict(screened)}]},
        {"Type": "BlockRandomizer", "FlowID": "FL_9", "SubSet": "1", "EvenPresentation": True,
         "Flow": [group(10, "a", "BL_blockA0000001"), group(13, "b", "BL_blockB0000001")]},
        {"Type": "EndSurvey", "FlowID": "FL_16", "EndingType": "Advanced", "Options": {
            "Advanced": "true", "SurveyTermination": "Redirect",
            "EOSRedirectURL": "https://app.prolific.com/submissions/complete?cc=C0DE"}},
    ]
    options = {"BackButton": "false", "SaveAndContinue": "true",
               "SurveyProtection": "PublicSurvey", "BallotBoxStuffingPrevention": "false",
               "NoIndex": "Yes", "SecureResponseFiles": "true", "SurveyExpiration": "None",
               "SurveyTermination": "DefaultMessage", "Header": "", "Footer": "",
               "ProgressBarDisplay": "None", "PartialData": "+1 week",
               "ValidationMessage": None, "PreviousButton": " \u2190 ",
               "NextButton": " \u2192 ", "SurveyTitle": "Qualtrics Survey",
               "SkinLibrary": "examplebrand", "SkinType": "templated",
               "Skin": {"brandingId": "1234", "templateId": "*base", "overrides": None},
               "NewScoring": 1}
    elements = [
        _element("BL", "Survey Blocks", None, blocks),
        _element("FL", "Survey Flow", None, {"Type": "Root", "FlowID": "FL_1", "Flow": flow,
                                             "Properties": {"Count": 16}}),
        _element("PROJ", "CORE", None, {"ProjectCategory": "CORE", "SchemaVersion": "1.1.0"},
                 "1.1.0"),
        _element("SO", "Survey Options", None, options),
        _element("SCO", "Scoring", None, {"ScoringCategories": [],
                                          "ScoringCategoryGroups": []}),
        _element("STAT", "Survey Statistics", None, {"MobileCompatible": True,
                                                     "ID": "Survey Statistics"}),
        *questions,
        _element("QC", "Survey Question Count", "8", None),  # QID4 and QID8 were deleted
        _element("RS", "RS_0123456789abcde", "Default Response Set", None),
    ]
    entry = {"SurveyID": SID, "SurveyName": "An exported survey", "SurveyDescription": None,
             "SurveyOwnerID": "UR_0123456789abcde", "SurveyBrandID": "examplebrand",
             "DivisionID": None, "SurveyLanguage": "EN",
             "SurveyActiveResponseSet": "RS_0123456789abcde", "SurveyStatus": "Inactive",
             "SurveyStartDate": "0000-00-00 00:00:00",
             "SurveyExpirationDate": "0000-00-00 00:00:00",
             "SurveyCreationDate": "2021-03-04 05:06:07", "CreatorID": "UR_0123456789abcde",
             "LastModified": "2021-03-05 05:06:07", "LastAccessed": "0000-00-00 00:00:00",
             "LastActivated": "0000-00-00 00:00:00", "Deleted": None}
    return {"SurveyEntry": entry, "SurveyElements": elements}


def test_reader_accepts_a_survey_qualtrics_exported(tmp_path: Path) -> None:
    export = _qualtrics_export()
    assert not written_by_dubfiv(export)
    assert validate_qsf(export) == []
    path = tmp_path / "export.qsf"
    path.write_text(json.dumps(export, separators=(",", ":")), encoding="ascii")
    parsed = read_qsf(path)
    assert parsed.conditions == ["a", "b"]
    assert parsed.randomizer_subset == 1  # from the string "1"
    assert parsed.condition_blocks == {"a": "BL_blockA0000001", "b": "BL_blockB0000001"}
    assert parsed.url_fields == ["PROLIFIC_PID"]
    assert parsed.redirects == ["https://app.prolific.com/submissions/complete?cc=C0DE"]
    assert parsed.questions["QID3"].choices["4"] == "Click Count"
    assert parsed.block("BL_default0000001").n_pages == 2
    # what is accepted here is exactly what the strict checks of our surveys refuse
    problems = "\n".join(validate_qsf(export, strict=True))
    for message in ("duplicate or empty DataExportTags ['Q2']",
                    "SQ QID5: unknown QuestionType 'RO'", "SQ QID6: unknown QuestionType 'CS'",
                    "SQ QID3: ChoiceOrder does not match", "SQ QID7: ChoiceOrder does not match",
                    "operator 'Displayed'", "'q://QID2/SelectableAnswer/1' is not",
                    "QC says 8 questions, there are 6", "not QID1 .. QID",
                    "SubSet '1'", "unknown Type 'WebService'",
                    "branch FL_5 has no question condition",  # on DeviceType
                    "branch FL_7 has no question condition"):  # on an embedded field
        assert message in problems, message


def _export_missing_question(q: dict) -> None:
    _first(q, "BL")["Payload"][2]["BlockElements"].append(
        {"Type": "Question", "QuestionID": "QID9"})


def _export_branch_to_missing_question(q: dict) -> None:
    expr = _first(q, "FL")["Payload"]["Flow"][3]["BranchLogic"]["0"]["0"]
    expr.update(LogicType="Question", QuestionID="QID4")


def _export_subset(q: dict) -> None:
    _first(q, "FL")["Payload"]["Flow"][5]["SubSet"] = "3"


def _export_qc(q: dict) -> None:
    _first(q, "QC")["SecondaryAttribute"] = "5"


def _export_redirect(q: dict) -> None:
    _first(q, "FL")["Payload"]["Flow"][-1]["Options"]["EOSRedirectURL"] = "app.prolific.com"


def _export_flow_id(q: dict) -> None:
    _first(q, "FL")["Payload"]["Flow"][1]["FlowID"] = "FL_2"


@pytest.mark.parametrize(("breaker", "message"), [
    (_export_missing_question, "lists missing question QID9"),
    (_export_branch_to_missing_question, "refers to missing question QID4"),
    (_export_subset, "SubSet '3' for 2 children"),
    (_export_qc, "QC says 5, below the largest question id QID7"),
    (_export_redirect, "not an http(s) URL"),
    (_export_flow_id, "duplicate or missing FlowIDs ['FL_2']"),
])
def test_reader_still_rejects_broken_exports(breaker, message: str) -> None:
    export = _qualtrics_export()
    breaker(export)
    problems = validate_qsf(export)
    assert any(message in p for p in problems), problems


def _ours_duplicate_tag(q: dict) -> None:
    _by_tag(q)["end"]["DataExportTag"] = "consent"


def _ours_rank_order(q: dict) -> None:
    _by_tag(q)["end"]["QuestionType"] = "RO"


def _ours_subset_string(q: dict) -> None:
    for item in _walk(_first(q, "FL")["Payload"]["Flow"]):
        if item["Type"] == "BlockRandomizer":
            item["SubSet"] = "1"


def _ours_web_service(q: dict) -> None:
    _first(q, "FL")["Payload"]["Flow"].insert(1, {"Type": "WebService", "FlowID": "FL_999"})


def _ours_hidden_expression(q: dict) -> None:
    recap = _by_tag(q)["inn_recap"]
    recap["DisplayLogic"]["0"]["0"]["_HiddenExpression"] = False


def _ours_language_in_options(q: dict) -> None:
    _first(q, "SO")["Payload"]["SurveyLanguage"] = "EN"


def _ours_no_skin(q: dict) -> None:
    del _first(q, "SO")["Payload"]["Skin"]


def _ours_no_grading(q: dict) -> None:
    del _by_tag(q)["consent"]["GradingData"]


def _ours_unscreened(q: dict) -> None:
    branch = next(i for i in _first(q, "FL")["Payload"]["Flow"] if i["Type"] == "Branch")
    del branch["Flow"][-1]["Options"]["ResponseFlag"]


def _ours_gap_in_qids(q: dict) -> None:
    _first(q, "QC")["SecondaryAttribute"] = "99"


@pytest.mark.parametrize(("breaker", "message"), [
    (_ours_duplicate_tag, "duplicate or empty DataExportTags ['consent']"),
    (_ours_rank_order, "unknown QuestionType 'RO'"),
    (_ours_subset_string, "SubSet '1'"),
    (_ours_web_service, "unknown Type 'WebService'"),
    (_ours_hidden_expression, "has _HiddenExpression"),
    (_ours_language_in_options, "hold SurveyLanguage"),
    (_ours_no_skin, "lack ['Skin']"),
    (_ours_no_grading, "no GradingData"),
    (_ours_unscreened, "is not flagged Screened"),
    (_ours_gap_in_qids, "QC says 99 questions"),
])
def test_strict_checks_reject_broken_surveys_of_ours(full, breaker, message: str) -> None:
    """A survey of ours is checked strictly, also for what a Qualtrics export may do."""
    _assert_detected(full, breaker, message)


def test_strictness_follows_the_writer_mark(full) -> None:
    _, folder, qsf = full
    broken = copy.deepcopy(qsf)
    _ours_duplicate_tag(broken)
    _ours_subset_string(broken)
    assert len(validate_qsf(broken, folder, BASE_URL)) == 2
    assert validate_qsf(broken, folder, BASE_URL, strict=False) == []
    broken["SurveyEntry"]["SurveyDescription"] = None  # no longer ours: an export
    assert validate_qsf(broken, folder, BASE_URL) == []
    assert len(validate_qsf(broken, folder, BASE_URL, strict=True)) == 2


def test_base_url_check_is_one_function(study_dir) -> None:
    assert check_base_url("https://example.org/s/") == "https://example.org/s"
    for url, message in (("images/", "must be an http"), ("ftp://x", "must be an http"),
                         ("https://example.org/a b", "percent-encode"),
                         ('https://example.org/"a"', "percent-encode"),
                         ("https://example.org/s?x=1", "query or fragment"),
                         ("https://example.org/s#top", "query or fragment")):
        with pytest.raises(QsfError, match=message) as info:
            check_base_url(url)
        assert str(info.value).startswith("image_base_url")
    study, _ = study_dir
    with pytest.raises(QsfError, match="percent-encode"):
        build_qsf(study, "https://example.org/my study")
