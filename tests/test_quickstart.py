"""End to end: the quick start with a reduced budget, on the session's rendered dataset.

The render step is exercised by reuse (the small dataset rendered by the session
fixture is linked into the output folder, as a second quick start would find
it); training, the ground truth and the study export run for real. A second call
must reuse everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dubfiv.cli.quickstart import main
from dubfiv.quickstart import QuickstartConfig, run_quickstart
from dubfiv.study.build.bundle import verify_manifest
from dubfiv.study.build.export_config import PLACEHOLDER_BASE_URL
from dubfiv.study.qsf.reader import read_qsf
from dubfiv.study.qsf.validate import validate_qsf

TRAIN_SAMPLES = 1600


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> Path:
    out = tmp_path_factory.mktemp("quickstart")
    (out / "data").mkdir()
    (out / "data" / small_dataset.name).symlink_to(small_dataset, target_is_directory=True)
    status = main(["--output", str(out), "--device", "cpu",
                   "--train_samples", str(TRAIN_SAMPLES), "--quiet"])
    assert status == 0
    return out


def _image_std(path: Path) -> float:
    return float(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64).std())


def test_run_and_reports_exist(quickstart: Path) -> None:
    runs = [p for p in (quickstart / "models").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = runs[0]
    assert (run / "models" / "models.torch").is_file()
    report = json.loads((run / "ground_truth" / "ground_truth.json").read_text())
    assert {"arm_position", "obj_color", "bg_color"} <= set(report["attributes"])
    for attr in report["attributes"].values():
        assert isinstance(attr["relevant"], bool)
        assert np.isfinite(attr["mean_abs_delta_logit"]["value"])
    assert _image_std(run / "ground_truth" / "ground_truth.png") > 5


def test_study_folder_is_complete_and_non_trivial(quickstart: Path) -> None:
    study = quickstart / "user_study"
    assert verify_manifest(study) == []
    qsf = json.loads((study / "study.qsf").read_text())
    assert validate_qsf(qsf, folder=study / "public", image_base_url=PLACEHOLDER_BASE_URL) == []
    assert set(read_qsf(study / "study.qsf").conditions) == {"baseline", "inn", "concepts"}
    for condition in ("baseline", "inn", "concepts"):
        figure = study / "figures" / f"{condition}.png"
        assert _image_std(figure) > 5, f"{figure} is (nearly) constant"
        cells = [study / c["path"] for c in json.loads(
            (study / "records" / f"{condition}.json").read_text())["cells"]]
        assert len(cells) >= 5
        assert max(_image_std(c) for c in cells) > 5
    record = json.loads((study / "records" / "baseline.json").read_text())
    logits = np.array([c["logit"] for row in record["explanation"]["cells"] for c in row])
    assert logits.std() > 0.05, "the head's logits do not spread"
    assert (logits < 0).any() and (logits > 0).any()
    inn = json.loads((study / "records" / "inn.json").read_text())
    assert inn["explanation"]["max_abs_logit_deviation"] < 1e-3


def test_second_call_reuses_everything(quickstart: Path) -> None:
    run = next(p for p in (quickstart / "models").iterdir() if p.is_dir())
    checkpoint = run / "models" / "models.torch"
    before = checkpoint.stat().st_mtime_ns
    result = run_quickstart(
        QuickstartConfig(output=quickstart, device="cpu", train_samples=TRAIN_SAMPLES,
                         progress=False),
        log=lambda _: None,
    )
    assert result.steps == {"dataset": "reused", "model": "reused",
                            "ground_truth": "reused", "user_study": "reused"}
    assert result.run_dir == run
    assert checkpoint.stat().st_mtime_ns == before


def test_changed_export_settings_are_not_reused(quickstart: Path) -> None:
    """A second call with another image base URL or seed must export the study again (the
    export's own note tells users to do exactly that): the reuse check compares the settings
    recorded in the study's export.json; the device, batch size and progress do not count."""
    import dataclasses

    from dubfiv.quickstart import _same_export_settings
    from dubfiv.study.build.export_config import ExportConfig

    study = quickstart / "user_study"
    stored = json.loads((study / "export.json").read_text())["config"]
    same = ExportConfig(run_dir=Path(stored["run_dir"]), output=study, seed=stored["seed"],
                        dataset_dir=Path(stored["dataset_dir"]), device="cpu",
                        rows=stored["rows"], progress=True, batch_size=7)
    assert _same_export_settings(study, same)
    assert not _same_export_settings(study, dataclasses.replace(same, seed=stored["seed"] + 1))
    assert not _same_export_settings(
        study, dataclasses.replace(same, image_base_url="https://me.example.org/study"))
    assert not _same_export_settings(study, dataclasses.replace(same, rows=same.rows + 1))
    assert not _same_export_settings(quickstart / "no_study", same)


def test_missing_config_is_one_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--output", str(tmp_path), "--model_config", str(tmp_path / "nope.toml"),
                   "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1 and "nope.toml" in err and "not found" in err
    assert not (tmp_path / "models").exists()


def test_a_run_killed_before_its_first_checkpoint_is_picked_up(tmp_path: Path) -> None:
    """A quick start killed while training began leaves a run folder with its config and no
    checkpoint; the next one resumes that folder (which starts it over) instead of leaving
    it behind and training into a new one."""
    import torch

    from dubfiv.checkpoint import save_checkpoint
    from dubfiv.config import ExperimentConfig, TrainConfig, save_experiment
    from dubfiv.quickstart import _existing_run
    from dubfiv.rundir import RunPaths

    experiment = ExperimentConfig(train=TrainConfig(n_train_samples=64))
    other = ExperimentConfig(train=TrainConfig(n_train_samples=128))
    models = tmp_path / "models"
    older, killed, unrelated = (RunPaths(models / name) for name in
                                ("dubfiv_1", "dubfiv_2", "dubfiv_3"))
    save_experiment(experiment, older.experiment)
    save_checkpoint({"samples_seen": 32, "w": torch.zeros(1)}, older.checkpoint)
    save_experiment(experiment, killed.experiment)
    save_experiment(other, unrelated.experiment)
    assert _existing_run(models, experiment) == (killed.root, 0)
    save_checkpoint({"samples_seen": 48, "w": torch.zeros(1)}, killed.checkpoint)
    assert _existing_run(models, experiment) == (killed.root, 48)
