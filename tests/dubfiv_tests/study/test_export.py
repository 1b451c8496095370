"""dubfiv_export_user_study on the small trained run (``small_run``).

One export with all three conditions (few rows, few concepts, all 150 images
per split) is shared by most tests; the ground-truth and rerun tests export
the baseline condition of a copy of the run through the CLI. The run is always
copied first: the export writes the analysis cache beside the run. The
tutorial's renderer is replaced by a fast fake here (:func:`fake_render`);
``test_tutorial.py`` renders it for real.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import toml
import torch
from browser_check import check_page, require_browser
from PIL import Image

import dubfiv
from dubfiv.cli.export_user_study import main
from dubfiv.study.build.bundle import MANIFEST, verify_manifest
from dubfiv.study.build.export import export_user_study
from dubfiv.study.build.export_config import (
    PLACEHOLDER_BASE_URL,
    ExportConfig,
    ExportError,
    ExportResult,
)
from dubfiv.study.build.names import NAMES_RECORD
from dubfiv.study.build.task import answer_attributes, read_ground_truth, select_prediction_tasks
from dubfiv.study.content import Study, default_attributes
from dubfiv.study.jspsych.writer import PAGE_FILES
from dubfiv.study.qsf.image_urls import replace_image_urls
from dubfiv.study.qsf.reader import QsfError, read_qsf
from dubfiv.study.qsf.validate import validate_qsf
from two4two.scene_parameters import load_jsonl

BASE = "https://example.org/exported%20study/v1"
ROWS, N_TASKS, CONCEPT_IMAGES = 2, 8, 3
SETTINGS = {"n_samples": 0, "rows": ROWS, "n_tasks": N_TASKS, "n_concepts": 4,
            "concepts_per_sign": 1, "concept_images": CONCEPT_IMAGES,
            "concept_fit_images": 60, "concept_eval_images": 60, "device": "cpu",
            "progress": False}
HAND_TRUTH = {"arm_position": True, "obj_color": True, "bg_color": False,
              "obj_rotation_roll": False, "obj_rotation_pitch": False,
              "obj_rotation_yaw": False, "position_x": True}
# expected answers: spherical and bending have no verdict; position is relevant through
# position_x although position_y is missing; rotation is irrelevant (all three known)
EXPECTED_TRUTH = {"arm_position": True, "obj_color": True, "bg_color": False,
                  "spherical": None, "rotation": False, "bending": None, "position": True}


NEUTRAL = re.compile(r"public/[0-9a-f]{16}\.png")
N_TUTORIAL_IMAGES = 7 * 5 + 2 * 2  # a row of five per attribute, two pairs


def fake_render(scenes, settings, progress=None) -> list[np.ndarray]:
    """Stand-in for Cycles: the background colour with a block of the object colour whose
    size, place and shape follow the scene's other attributes (every scene differs)."""
    out = []
    for i, scene in enumerate(scenes):
        res = settings.resolution
        image = np.empty((res, res, 3), np.uint8)
        image[:] = np.round(np.asarray(scene.bg_color_rgba[:3]) * 255)
        size = int(res * (0.2 + 0.2 * scene.arm_position + 0.1 * scene.spherical))
        x0 = int(res * (0.3 + 0.1 * scene.position_x + 0.05 * scene.bending))
        y0 = int(res * (0.3 - 0.1 * scene.position_y + 0.05 * scene.obj_rotation_yaw
                        + 0.05 * scene.obj_rotation_pitch))
        image[y0:y0 + size, x0:x0 + size] = np.round(np.asarray(scene.obj_color_rgba[:3]) * 255)
        out.append(image)
        if progress is not None:
            progress(i + 1, len(scenes))
    return out


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def _fast_tutorial():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dubfiv.study.build.tutorial.render_scenes", fake_render)
        yield


@pytest.fixture(scope="module")
def run_copy(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(small_run, dest,
                    ignore=shutil.ignore_patterns("user_study", "ground_truth", "analysis"))
    return dest


@pytest.fixture(scope="module")
def exported(run_copy: Path, small_dataset: Path) -> ExportResult:
    config = ExportConfig(run_dir=run_copy, output=run_copy.parent / "study",
                          dataset_dir=small_dataset.parent, image_base_url=BASE, seed=0,
                          **SETTINGS)  # type: ignore[arg-type]
    return export_user_study(config, ["dubfiv_export_user_study", "--model", str(run_copy)])


@pytest.fixture(scope="module")
def model(run_copy: Path):
    from dubfiv.runs import load_run

    run = load_run(run_copy, device="cpu")
    return run.flow, run.heads[0]


def _logits_of_files(model, paths: list[Path]) -> np.ndarray:
    """Logits of image files: PIL -> [0, 1] -> flow up to the head's layer -> w.h + b (float64)."""
    flow, head = model
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32)
                                      / 255.0).permute(2, 0, 1) for p in paths])
    with torch.no_grad():
        h = flow(x, 0, head.after_layer + 1).h.flatten(1).double()
        w, b = head.fc.weight.double(), head.fc.bias.double()
        return (h @ w.T + b)[:, 0].numpy()


def _dataset_file(dataset: Path, split: str, image_id: str) -> Path:
    return dataset / split / f"{image_id}.png"


def _scenes(dataset: Path, split: str) -> dict[str, dict]:
    return {p.id: p.state_dict() for p in load_jsonl(dataset / split / "parameters.jsonl")}


def _record(folder: Path, name: str) -> dict:
    return json.loads((folder / "records" / f"{name}.json").read_text(encoding="utf-8"))


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli_args(run: Path, out: Path, dataset: Path, *extra: str,
              base_url: str | None = "https://example.org/s") -> list[str]:
    """Fast CLI arguments: the baseline condition of all images (the analysis cache's key)."""
    args = ["--model", str(run), "--output", str(out), "--condition", "baseline",
            "--dataset_dir", str(dataset.parent), "--n_samples", "0", "--rows", str(ROWS),
            "--device", "cpu", "--quiet", *extra]
    return args + (["--image-base-url", base_url] if base_url is not None else [])


def _run_cli(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's usage errors
        return int(exc.code or 0)


@pytest.fixture(scope="module")
def gt_run(exported: ExportResult, run_copy: Path, tmp_path_factory) -> Path:
    """A copy of the run (with the warm analysis cache) and a hand-written ground truth."""
    dest = tmp_path_factory.mktemp("gt") / "run"
    shutil.copytree(run_copy, dest, ignore=shutil.ignore_patterns("user_study"))
    (dest / "ground_truth").mkdir()
    report = {"attributes": {k: {"relevant": v, "linear_effect": {"value": 0.5}}
                             for k, v in HAND_TRUTH.items()}}
    report["attributes"]["spherical"] = {"relevant": "maybe"}  # not a bool: ignored
    (dest / "ground_truth" / "ground_truth.json").write_text(json.dumps(report))
    return dest


# ---------------------------------------------------------------------- files


def test_all_files_present_and_in_the_manifest(exported: ExportResult, run_copy: Path) -> None:
    folder = exported.output
    for rel in ("study.json", "study.qsf", "index.html", "README.md", "export.json",
                "records/task.json", "records/tutorial.json", NAMES_RECORD,
                *[f"{d}/{c}.{e}" for c in ("baseline", "inn", "concepts")
                  for d, e in (("figures", "png"), ("records", "json"))]):
        assert (folder / rel).is_file(), rel
    manifest = json.loads((folder / MANIFEST).read_text())
    on_disk = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert {e["path"]: e["sha256"] for e in manifest["files"]} == on_disk
    assert all(e["bytes"] == (folder / e["path"]).stat().st_size for e in manifest["files"])
    assert verify_manifest(folder) == []
    assert manifest["run"]["path"] == str(run_copy.absolute())
    config = run_copy / "models" / "experiment.toml"
    assert manifest["config"] == {"path": str(config.absolute()),
                                  "sha256": hashlib.sha256(config.read_bytes()).hexdigest()}
    assert manifest["command_line"]["args"][:2] == ["dubfiv_export_user_study", "--model"]
    assert manifest["library"]["version"] == dubfiv.__version__
    newest = max((folder / e["path"]).stat().st_mtime_ns for e in manifest["files"])
    assert (folder / MANIFEST).stat().st_mtime_ns >= newest  # written last
    study = Study.load(folder)
    listed = {e["path"] for e in manifest["files"]}
    assert {img.path for img in study.images()} <= listed
    assert not _leftovers(folder.parent, folder.name)


def test_qsf_is_an_importable_survey_of_the_study(exported: ExportResult) -> None:
    folder, study = exported.output, exported.study
    qsf = json.loads((folder / "study.qsf").read_text(encoding="utf-8"))
    entry = qsf["SurveyEntry"]
    for key in ("SurveyID", "SurveyName", "SurveyLanguage", "SurveyStatus",
                "SurveyActiveResponseSet"):
        assert entry[key]
    kinds = [e["Element"] for e in qsf["SurveyElements"]]
    assert kinds.count("BL") == kinds.count("FL") == kinds.count("QC") == 1
    questions = [e for e in qsf["SurveyElements"] if e["Element"] == "SQ"]
    qids = [e["PrimaryAttribute"] for e in questions]
    assert len(qids) == len(set(qids)) and all(e["Payload"]["QuestionID"] == e["PrimaryAttribute"]
                                               for e in questions)
    qc = next(e for e in qsf["SurveyElements"] if e["Element"] == "QC")
    assert qc["SecondaryAttribute"] == str(len(questions))
    blocks = next(e for e in qsf["SurveyElements"] if e["Element"] == "BL")["Payload"]
    assert isinstance(blocks, list)  # as in Qualtrics' own exports
    for kind in ("SCO", "PROJ", "STAT"):
        assert kinds.count(kind) == 1, kind
    assert all(isinstance(e["Payload"]["NextChoiceId"], int)
               and isinstance(e["Payload"]["NextAnswerId"], int) for e in questions)
    in_blocks = [el["QuestionID"] for b in blocks for el in b["BlockElements"]
                 if el["Type"] == "Question"]
    assert sorted(in_blocks) == sorted(qids)  # every question in exactly one block
    flow_ids = json.dumps(next(e for e in qsf["SurveyElements"] if e["Element"] == "FL"))
    for block in blocks:
        if block["Type"] != "Trash":
            assert f'"{block["ID"]}"' in flow_ids

    parsed = read_qsf(folder / "study.qsf")
    assert parsed.conditions == ["baseline", "inn", "concepts"]
    assert parsed.randomizer_subset == 1
    assert parsed.attributes == [a.label for a in study.attributes]
    assert {f"predict_{t.key}" for t in study.tasks} <= set(parsed.export_tags)
    paths = parsed.image_paths(BASE)
    assert len(paths) == len(parsed.image_urls)  # every image is under the base URL
    assert sorted(paths) == sorted({study.hosted_path(img) for img in study.images()})
    assert all(re.fullmatch(r"[0-9a-f]{16}\.png", p) for p in paths)
    assert all((folder / "public" / p).is_file() for p in paths)
    assert validate_qsf(qsf, folder / "public", BASE) == []
    assert Study.load(folder) == study and study.validate(folder) == []


def test_public_folder_is_participant_safe(exported: ExportResult) -> None:
    """public/ holds only neutral-named PNGs the survey shows and the jsPsych page's own
    files (checked in test_jspsych_export.py); everything else stays out."""
    folder, study = exported.output, exported.study
    page = {f"public/{name}" for name in PAGE_FILES}
    hosted = sorted(p.relative_to(folder).as_posix() for p in (folder / "public").rglob("*"))
    assert page <= set(hosted)
    public = [p for p in hosted if p not in page]
    assert public and all(NEUTRAL.fullmatch(p) for p in public)
    assert public == sorted({img.path for img in study.images()})
    outside = [p for p in folder.rglob("*") if p.is_file() and "public" not in p.parts]
    assert not [p for p in outside if p.suffix == ".png" and p.parent.name != "figures"]
    for name in ("study.json", "records", "figures"):
        assert not (folder / "public" / name).exists()
    # public/index.html is the participants' page, not the researcher preview
    assert (folder / "public" / "index.html").read_text() != (folder / "index.html").read_text()
    # the private table says what each neutral name is; the names say nothing
    table = json.loads((folder / NAMES_RECORD).read_text())["images"]
    assert sorted(e["path"] for e in table) == public
    keys = [e["key"] for e in table]
    assert any("bin" in k for k in keys) and any(k.startswith("tasks/") for k in keys)
    for word in ("bin", "logit", "label", "peaky", "stretchy", "task", "row", "target"):
        assert not any(word in p.lower() for p in public), word
    # the records point at the same neutral files
    baseline = _record(folder, "baseline")["cells"]
    by_key = {e["key"]: e["path"] for e in table}
    assert all(by_key[c["key"]] == c["path"] for c in baseline)
    # the survey and the preview reference the images by these names only
    qsf_text = (folder / "study.qsf").read_text()
    assert "/images/" not in qsf_text and "row1_bin" not in qsf_text
    assert "row1_bin" not in (folder / "index.html").read_text()


def test_survey_has_tutorial_checks_and_an_estimate(exported: ExportResult) -> None:
    folder, study = exported.output, exported.study
    info = json.loads((folder / "export.json").read_text())
    minutes = info["duration"]["minutes"]
    assert study.estimated_minutes == minutes and f"about <b>{minutes} minutes</b>" in (
        study.consent_text)
    assert "20 minutes" not in study.consent_text or minutes == 20
    longest = max(v["seconds"] for v in info["duration"]["per_condition"].values())
    assert minutes == -(-longest // 60)
    assert info["duration"]["seconds_per_item"]["words_per_second"] == 4.0
    parsed = read_qsf(folder / "study.qsf")
    for chk in study.checks:
        assert chk.tag in parsed.export_tags
    assert [c.kind for c in study.checks] == ["comprehension"] * 2 + ["attention"] * 2
    assert len(study.tutorial) == 7 and study.comprehension_page is not None
    assert parsed.redirects == [] and parsed.url_fields == []  # no Prolific code given
    assert any("no Prolific completion code" in n for n in exported.notes)
    readme = (folder / "README.md").read_text()
    assert "Only the folder **`public/`**" in readme


# ---------------------------------------------------------------------- images and records


def test_pngs_are_print_quality(exported: ExportResult) -> None:
    folder = exported.output
    pngs = sorted(folder.rglob("*.png"))
    n_cells = (ROWS * 5 + ROWS * 6 + len(exported.study.conditions[2].pages[0].images)
               + N_TASKS + N_TUTORIAL_IMAGES)
    assert len(pngs) == 3 + n_cells
    assert len(list((folder / "public").glob("*.png"))) == n_cells
    for path in pngs:
        with Image.open(path) as im:
            assert min(im.info["dpi"]) >= 300, path
            assert min(im.size) >= 256, (path, im.size)
    for name in ("baseline", "inn", "concepts"):
        fig = _record(folder, name)["figure"]
        with Image.open(folder / fig["path"]) as im:
            assert im.size == (fig["width"], fig["height"])


def test_baseline_record_matches_the_images(exported: ExportResult, small_dataset: Path,
                                            model) -> None:
    folder = exported.output
    record = _record(folder, "baseline")
    page = exported.study.condition("baseline").pages[0]
    cells = record["cells"]
    assert (page.grid.rows, page.grid.cols) == (ROWS, 5) and len(cells) == ROWS * 5
    assert [c["path"] for c in cells] == [img.path for img in page.images]
    bins = record["explanation"]["bins"]
    edges = [float(e) for e in bins["edges"]]
    scenes = _scenes(small_dataset, "validation")
    for i, cell in enumerate(cells):
        assert (cell["row"], cell["col"]) == divmod(i, 5)
        assert cell["bin"] == cell["col"]
        assert edges[cell["col"]] <= cell["logit"] < edges[cell["col"] + 1]
        assert cell["bin_value"] == pytest.approx(bins["values"][cell["col"]])
        scene = scenes[cell["image_id"]]
        assert cell["scene"] == {k: v for k, v in scene.items() if not k.startswith("_")}
        assert cell["label_name"] == scene["obj_name"]
        # the cell file is the dataset image, enlarged by an integer factor
        original = np.asarray(Image.open(_dataset_file(small_dataset, "validation",
                                                       cell["image_id"])).convert("RGB"))
        shown = np.asarray(Image.open(folder / cell["path"]))
        factor = shown.shape[0] // original.shape[0]
        assert np.array_equal(shown[::factor, ::factor], original)
        assert np.array_equal(shown, original.repeat(factor, 0).repeat(factor, 1))
    files = [_dataset_file(small_dataset, "validation", c["image_id"]) for c in cells]
    np.testing.assert_allclose(_logits_of_files(model, files), [c["logit"] for c in cells],
                               atol=1e-3)
    ids = [c["image_id"] for c in cells]
    assert len(set(ids)) == len(ids)  # drawn without replacement


def test_inn_and_concept_records_match_the_grids(exported: ExportResult, small_dataset: Path,
                                                 model) -> None:
    folder = exported.output
    inn = _record(folder, "inn")
    page = exported.study.condition("inn").pages[0]
    assert (page.grid.rows, page.grid.cols) == (ROWS, 6) and len(inn["cells"]) == ROWS * 6
    assert [c["path"] for c in inn["cells"]] == [img.path for img in page.images]
    targets = inn["explanation"]["targets"]
    edges = [float(e) for e in inn["explanation"]["bins"]["edges"]]
    for row in range(ROWS):
        real, *counterfactuals = inn["cells"][row * 6:(row + 1) * 6]
        assert real["kind"] == "real" and real["col"] == 0
        assert real["scene"]["id"] == real["image_id"]
        for t, cell in enumerate(counterfactuals):
            assert cell["kind"] == "counterfactual" and cell["source"]["image_id"] == \
                real["image_id"] and cell["source_scene"] == real["scene"]
            assert cell["target_logit"] == pytest.approx(targets[t])
            assert abs(cell["logit"] - targets[t]) < 1e-3
            assert cell["bin"] == cell["target_bin"] == t
            assert edges[t] <= cell["logit"] < edges[t + 1]
    reals = [c for c in inn["cells"] if c["kind"] == "real"]
    np.testing.assert_allclose(
        _logits_of_files(model, [_dataset_file(small_dataset, "validation", c["image_id"])
                                 for c in reals]), [c["logit"] for c in reals], atol=1e-3)

    concepts = _record(folder, "concepts")
    page = exported.study.condition("concepts").pages[0]
    cells = concepts["cells"]
    assert page.grid.cols == CONCEPT_IMAGES and len(cells) == page.grid.rows * CONCEPT_IMAGES
    assert len(page.grid.row_labels) == page.grid.rows == len(concepts["explanation"]["shown"])
    assert [c["path"] for c in cells] == [img.path for img in page.images]
    for cell in cells:
        shown = concepts["explanation"]["shown"][cell["row"]]
        assert cell["image_id"] == shown["image_ids"][cell["col"]]
        assert cell["score"] == pytest.approx(shown["scores"][cell["col"]])
        pixels = np.asarray(Image.open(folder / cell["path"]))
        red = np.all(pixels == (255, 0, 0), axis=-1).any()
        assert red == (0 < cell["outlined_fraction"] < 1)
    np.testing.assert_allclose(
        _logits_of_files(model, [_dataset_file(small_dataset, "validation", c["image_id"])
                                 for c in cells]), [c["logit"] for c in cells], atol=1e-3)


def test_prediction_tasks_are_balanced_and_recorded(exported: ExportResult,
                                                    small_dataset: Path, model) -> None:
    folder, study = exported.output, exported.study
    record = _record(folder, "task")["prediction"]
    tasks = record["tasks"]
    assert len(study.tasks) == len(tasks) == N_TASKS
    predicted = [t["model_prediction"] for t in tasks]
    assert abs(predicted.count("Peaky") - predicted.count("Stretchy")) <= 1
    if record["split_accuracy"] < 1:
        assert record["n_model_wrong"] >= 1
    scenes = _scenes(small_dataset, "test")
    for task, rec in zip(study.tasks, tasks, strict=True):
        assert task.image.path == rec["path"] and task.model_logit == rec["logit"]
        assert rec["true_label"].lower() == scenes[rec["image_id"]]["obj_name"]
        assert task.true_label == rec["true_label"]
        assert rec["model_prediction"] == study.model_prediction(task)
        assert rec["model_correct"] == (rec["model_prediction"] == rec["true_label"])
        assert NEUTRAL.fullmatch(rec["path"]), rec["path"]
        assert task.image.alt.startswith("Image ")
    assert len({t["image_id"] for t in tasks}) == N_TASKS
    files = [_dataset_file(small_dataset, "test", t["image_id"]) for t in tasks]
    np.testing.assert_allclose(_logits_of_files(model, files), [t["logit"] for t in tasks],
                               atol=1e-3)


def test_task_selection_on_synthetic_logits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=200)
    labels = (logits + rng.normal(scale=0.7, size=200) > 0).astype(float)
    pos = select_prediction_tasks(logits, labels, 11, seed=1)
    assert len(set(pos.tolist())) == 11
    pred, truth = logits[pos] > 0, labels[pos] > 0.5
    assert sorted([pred.sum(), (~pred).sum()]) == [5, 6]
    for c in (True, False):
        assert ((pred == c) & (truth != c)).sum() >= 1  # wrong ones per predicted class
        assert ((pred == c) & (truth == c)).sum() >= 1
    assert np.array_equal(pos, select_prediction_tasks(logits, labels, 11, seed=1))
    assert not np.array_equal(pos, select_prediction_tasks(logits, labels, 11, seed=2))
    # a perfect model: no wrong ones; one class predicted only 2 times: the rest spills over
    few = np.array([-1.0, -2.0] + [1.0] * 20)
    pos = select_prediction_tasks(few, (few > 0).astype(float), 8, seed=0)
    assert (few[pos] < 0).sum() == 2 and (few[pos] > 0).sum() == 6
    with pytest.raises(ValueError, match="between 1 and 22"):
        select_prediction_tasks(few, few > 0, 23, seed=0)


# ---------------------------------------------------------------------- ground truth


def test_without_ground_truth_the_answers_are_open(exported: ExportResult) -> None:
    assert [a.relevant for a in exported.study.attributes] == [None] * 7
    task = _record(exported.output, "task")
    assert task["ground_truth"]["status"] == "missing"
    assert any("no ground truth" in note for note in exported.notes)


@pytest.fixture(scope="module")
def gt_export(gt_run: Path, small_dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gt_export") / "study"
    assert main(_cli_args(gt_run, out, small_dataset, "--n_tasks", "4",
                          "--prolific-completion-code", "CODE42X", base_url=None)) == 0
    return out


def test_ground_truth_answers_follow_the_report(gt_export: Path) -> None:
    study = Study.load(gt_export)
    # only the attributes with a verdict are asked
    known = {k: v for k, v in EXPECTED_TRUTH.items() if v is not None}
    assert {a.key: a.relevant for a in study.attributes} == known
    task = _record(gt_export, "task")
    assert task["ground_truth"]["status"] == "read"
    assert task["asked"] == list(known) and task["not_asked"] == ["spherical", "bending"]
    used = {a["key"]: a["verdicts_used"] for a in task["attributes"]}
    assert used["position"] == {"position_x": True}
    assert used["rotation"] == {k: False for k in ("obj_rotation_roll", "obj_rotation_pitch",
                                                   "obj_rotation_yaw")}
    labels = {a.key: a.label for a in default_attributes()}
    assert read_qsf(gt_export / "study.qsf").attributes == [labels[k] for k in known]
    preview = (gt_export / "index.html").read_text()
    assert "position: relevant" in preview and "unknown" not in preview.split("Ground truth")[1]
    assert any("no verdict for spherical, bending" in n
               for n in json.loads((gt_export / "export.json").read_text())["notes"])


def test_prolific_flag_sets_up_the_survey(gt_export: Path) -> None:
    parsed = read_qsf(gt_export / "study.qsf")
    assert parsed.url_fields == ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"]
    assert parsed.redirects == ["https://app.prolific.com/submissions/complete?cc=CODE42X"]
    study = Study.load(gt_export)
    assert study.prolific_completion_code == "CODE42X"
    declined = next(q for q in parsed.questions.values() if q.export_tag == "end_declined")
    assert "return your submission" in declined.text


def test_placeholder_url_is_noted(gt_export: Path) -> None:
    notes = json.loads((gt_export / "export.json").read_text())["notes"]
    assert any(PLACEHOLDER_BASE_URL in n and "--image-base-url" in n for n in notes)
    assert PLACEHOLDER_BASE_URL in (gt_export / "README.md").read_text()
    urls = read_qsf(gt_export / "study.qsf").image_urls
    assert urls and all(u.startswith(PLACEHOLDER_BASE_URL + "/")
                        and NEUTRAL.fullmatch("public/" + u[len(PLACEHOLDER_BASE_URL) + 1:])
                        for u in urls)


def test_ground_truth_reader_is_defensive(tmp_path: Path) -> None:
    verdicts, info = read_ground_truth(tmp_path)
    assert verdicts == {} and info["status"] == "missing"
    (tmp_path / "ground_truth").mkdir()
    (tmp_path / "ground_truth" / "ground_truth.json").write_text("{not json")
    assert read_ground_truth(tmp_path)[1]["status"] == "unreadable"
    (tmp_path / "ground_truth" / "ground_truth.json").write_text('{"attributes": [1, 2]}')
    assert read_ground_truth(tmp_path)[1]["status"] == "no attributes"
    answered, _ = answer_attributes(default_attributes(), {"obj_rotation_yaw": True})
    assert {a.key: a.relevant for a in answered}["rotation"] is True
    answered, _ = answer_attributes(default_attributes(), {"obj_rotation_yaw": False})
    assert {a.key: a.relevant for a in answered}["rotation"] is None  # roll, pitch unknown


# ---------------------------------------------------------------------- errors and reruns


def _no_head_run(run: Path, dest: Path) -> Path:
    from dubfiv.checkpoint import load_checkpoint, save_checkpoint

    (dest / "models").mkdir(parents=True)
    state = load_checkpoint(run / "models" / "models.torch")
    state["classifiers"] = []
    state.pop("classifier_optimizers", None)
    save_checkpoint(state, dest / "models" / "models.torch")
    config = toml.loads((run / "models" / "experiment.toml").read_text())
    config.pop("classifiers", None)
    (dest / "models" / "experiment.toml").write_text(toml.dumps(config))
    return dest


@pytest.mark.parametrize("case", ["missing run", "no head", "output under a file",
                                  "foreign folder", "bad condition", "ftp url",
                                  "relative url", "url with a space", "no dataset",
                                  "too many tasks", "no cuda"])
def test_bad_input_fails_before_writing(case: str, run_copy: Path, small_dataset: Path,
                                        tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "study"
    run = run_copy
    extra: list[str] = []
    flag = {"missing run": "--model", "no head": "--model", "output under a file": "--output",
            "foreign folder": "--output", "bad condition": "--condition",
            "ftp url": "--image-base-url", "relative url": "--image-base-url",
            "url with a space": "--image-base-url", "no dataset": "--dataset_dir",
            "too many tasks": "--n_tasks", "no cuda": "--device"}[case]
    if case == "missing run":
        run = tmp_path / "no_such_run"
    elif case == "no head":
        run = _no_head_run(run_copy, tmp_path / "headless")
    elif case == "output under a file":
        (tmp_path / "out").write_text("a file")
    elif case == "foreign folder":
        out.mkdir(parents=True)
        (out / "thesis.tex").write_text("precious")
    elif case == "no dataset":
        (tmp_path / "empty").mkdir()
        extra = ["--dataset_dir", str(tmp_path / "empty")]
    elif case == "too many tasks":  # found only after the model is loaded
        extra = ["--n_tasks", "1000"]
    elif case == "no cuda":
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        extra = ["--device", "cuda"]
    elif case == "bad condition":
        extra = ["--condition", "saliency"]
    else:
        extra = ["--image-base-url", {"ftp url": "ftp://host/x", "relative url": "host/x",
                                      "url with a space": "https://host/my study"}[case]]
    before = _snapshot(tmp_path)
    args = _cli_args(run, out, small_dataset)
    if case == "bad condition":
        args = [a for a in args if a not in ("--condition", "baseline")]
    if "url" in case:
        i = args.index("--image-base-url")
        del args[i:i + 2]
    status = _run_cli(args + extra)
    err = capsys.readouterr().err.strip()
    assert status != 0
    assert len(err.splitlines()) == 1 and "error" in err and flag in err, err
    if case == "no head":
        assert "no head" in err
    assert _snapshot(tmp_path) == before  # nothing created or changed
    if (tmp_path / "out").is_dir():
        assert not _leftovers(tmp_path / "out", "study")


def test_library_names_parameters_and_the_command_names_flags(run_copy: Path, tmp_path: Path,
                                                             capsys) -> None:
    from dubfiv.cli.export_user_study import FLAGS, build_parser

    cases = [({"condition": "cnn"}, "condition", "--condition"),
             ({"rows": 0}, "rows", "--rows"),
             ({"image_base_url": "ftp://x"}, "image_base_url", "--image-base-url"),
             ({"prolific_completion_code": "a b"}, "prolific_completion_code",
              "--prolific-completion-code"),
             ({"tutorial_samples": 0}, "tutorial_samples", "--tutorial_samples")]
    for kwargs, parameter, flag in cases:
        with pytest.raises(ExportError) as info:
            export_user_study(ExportConfig(run_dir=run_copy, **kwargs))
        assert info.value.parameter == parameter and str(info.value).startswith(parameter)
        assert "--" not in str(info.value)
        assert FLAGS[parameter] == flag
    assert not (run_copy / "user_study").exists()
    # every mapped flag exists in the parser
    options = {o for a in build_parser()._actions for o in a.option_strings}
    assert set(FLAGS.values()) <= options
    assert _run_cli(["--model", str(run_copy), "--output", str(tmp_path / "s"),
                     "--tutorial_samples", "0"]) == 1
    err = capsys.readouterr().err
    assert "error: --tutorial_samples 0 must be" in err


def test_rerun_replaces_the_folder_atomically(gt_run: Path, small_dataset: Path,
                                              tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    assert main(_cli_args(gt_run, out, small_dataset, "--n_tasks", "4")) == 0
    first = _snapshot(out)
    (out / "stray.txt").write_text("left from before")
    assert main(_cli_args(gt_run, out, small_dataset, "--n_tasks", "6")) == 0
    assert not (out / "stray.txt").exists()
    tasks = Study.load(out).tasks
    assert len(tasks) == 6 and all((out / t.image.path).is_file() for t in tasks)
    assert verify_manifest(out) == []
    second = _snapshot(out)
    names = json.loads(first[NAMES_RECORD])["images"]
    baseline = [e["path"] for e in names if e["key"].startswith("baseline/")]
    assert baseline and all(first[k] == second[k] for k in baseline)  # same seed, same images
    assert not _leftovers(tmp_path, "study")
    capsys.readouterr()
    # a rerun that fails half-way (a bin too small for 1000 rows) leaves the folder as it was
    assert main(_cli_args(gt_run, out, small_dataset, "--rows", "1000")) == 1
    err = capsys.readouterr().err
    assert "--rows" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(out) == second
    assert not _leftovers(tmp_path, "study")


# ---------------------------------------------------------------------- URLs, results, browser


def test_swapping_image_urls(exported: ExportResult) -> None:
    qsf = json.loads((exported.output / "study.qsf").read_text())
    urls = read_qsf(exported.output / "study.qsf").image_urls
    library = {u: f"https://org.qualtrics.com/ControlPanel/Graphic.php?IM=IM_{i:04d}&x=1"
               for i, u in enumerate(urls)}
    swapped = replace_image_urls(qsf, library)
    assert validate_qsf(swapped) == []
    from dubfiv.study.qsf.reader import parse_qsf

    assert sorted(parse_qsf(swapped).image_urls) == sorted(library.values())
    assert BASE not in json.dumps(swapped)
    assert json.loads((exported.output / "study.qsf").read_text()) == qsf  # input untouched
    with pytest.raises(QsfError, match="no new URL for 1 image"):
        replace_image_urls(qsf, dict(list(library.items())[1:]))


def test_results_read_the_responses_of_an_export(gt_export: Path, tmp_path: Path) -> None:
    """The exported survey's columns (checks, device, Prolific ids) are what the results
    command reads: simulated participants who pass everything are all used."""
    from dubfiv.cli.study_results import main as results_main
    from dubfiv.study.qsf.responses_csv import write_responses_csv
    from dubfiv.study.results.simulate import SimulationConfig, simulate

    study = Study.load(gt_export)
    assert {c.tag for c in study.checks} == {"comprehension_1", "comprehension_2",
                                              "attention_1", "attention_2"}
    n = 12
    sim = simulate(study, SimulationConfig(n_per_condition=n, seed=5))
    path = write_responses_csv(tmp_path / "responses.csv", study, sim.rows)
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    for tag in [c.tag for c in study.checks] + ["device", "PROLIFIC_PID", "condition"]:
        assert tag in header, tag
    assert results_main(["--responses", str(path), "--study", str(gt_export),
                         "--output", str(tmp_path / "results")]) == 0
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["n_used"] == n * len(study.conditions)


def test_exported_preview_in_a_browser(exported: ExportResult, tmp_path: Path) -> None:
    binary = require_browser()
    result = check_page(binary, exported.output / "index.html", tmp_path / "profile")
    assert result["errors"] == []
    assert len(result["images"]) == len(exported.study.images())
    assert all(complete and width > 0 for _, complete, width, _ in result["images"]), result
    shown = [css for *_, css in result["images"]]
    assert min(shown) >= 128, shown  # every cell legible on screen
