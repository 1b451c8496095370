"""``dubfiv_collect_runs``: one table of tiny trained runs, failures listed, commands printed."""

from __future__ import annotations

import csv
import dataclasses
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dubfiv.cli.collect_runs import main
from dubfiv.config import OptimizerConfig, ScheduleConfig
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import train
from dubfiv.workflow.collect_runs import (
    collect,
    differing_keys,
    flatten,
    ground_truth_columns,
    log_train_seconds,
)

# the schema of dubfiv.ground_truth's report, reduced to what the table reads
GROUND_TRUTH = {
    "attributes": {
        "arm_position": {"relevant": True, "mean_abs_delta_logit": {"value": 2.5, "low": 2.0,
                                                                     "high": 3.0},
                         "relative_effect": {"value": 1.25, "low": 1.0, "high": 1.5}},
        "bg_color": {"relevant": False, "mean_abs_delta_logit": {"value": 0.01},
                     "relative_effect": {"value": 0.005}},
    },
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny runs that differ in the learning rate and the training budget, a run
    directory with a damaged checkpoint and one that never wrote a checkpoint."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("collect")
    write_fake_two4two(base / "data" / "fake", {"train": 32, "validation": 16, "test": 16},
                       image_size=16)
    parent = base / "models"
    config = tiny_experiment(base / "data", n_train_samples=48, val_every_samples=16,
                             checkpoint_every_samples=0, sample_every_samples=0)
    first = train(config, parent, device="cpu", progress=False)
    other = dataclasses.replace(config, train=dataclasses.replace(
        config.train, n_train_samples=64, optimizer=OptimizerConfig(
            name="adam", lr=2e-3, schedule=ScheduleConfig("fade_in_cosine", 80))))
    second = train(other, parent, device="cpu", progress=False)
    (first / "ground_truth").mkdir()
    (first / "ground_truth" / "ground_truth.json").write_text(json.dumps(GROUND_TRUTH))
    broken = parent / "broken_run"
    (broken / "models").mkdir(parents=True)
    (broken / "models" / "models.torch").write_bytes(b"not a checkpoint")
    unfinished = parent / "unfinished_run"
    (unfinished / "models").mkdir(parents=True)
    (unfinished / "models" / "experiment.toml").write_text("marker = 'x'\n")
    return {"first": first, "second": second, "broken": broken, "unfinished": unfinished,
            "parent": parent, "data": base / "data"}


def test_evaluate_adds_test_accuracy(runs: dict[str, Path], tmp_path: Path) -> None:
    """--evaluate fills the analysis cache; the table's test accuracy equals the accuracy
    of the head's logits computed directly on every test image."""
    from dubfiv.data import open_split
    from dubfiv.ground_truth import compute_logits
    from dubfiv.runs import load_run

    run = Path(shutil.copytree(runs["first"], tmp_path / runs["first"].name))
    [record] = collect([run], evaluate=True, device="cpu", progress=False)
    assert record.ok and not record.notes, record.notes
    loaded = load_run(run, device="cpu")
    test = open_split(runs["data"], "fake", "test", ["obj_name"])
    logits = compute_logits(loaded.flow, loaded.heads[0], test, progress=False)
    labels = np.array([float(test[i][1][0]) for i in range(len(test))])
    assert record.metrics["test_accuracy:head_0"] == pytest.approx(
        float(np.mean((logits > 0) == (labels > 0.5))), abs=1e-12)
    # a run whose dataset is missing gets a note, not a failure
    [record] = collect([run], evaluate=True, device="cpu", progress=False,
                       dataset_dir=tmp_path / "nowhere")
    assert record.ok and any(note.startswith("`evaluate`:") for note in record.notes)


def test_table_of_runs(runs: dict[str, Path]) -> None:
    records = collect([runs["parent"]])
    by_name = {r.path.name: r for r in records}
    assert set(by_name) == {runs[k].name for k in ("first", "second", "broken", "unfinished")}
    first, second = by_name[runs["first"].name], by_name[runs["second"].name]
    assert first.ok and second.ok, (first.error, second.error)
    assert not by_name["broken_run"].ok and "cannot read checkpoint" in by_name[
        "broken_run"].error
    assert not by_name["unfinished_run"].ok and "checkpoint not found" in by_name[
        "unfinished_run"].error
    # exactly the keys that differ
    assert differing_keys([first.config, second.config]) == [
        "train.n_train_samples", "train.optimizer.lr"]
    for record, run, samples in ((first, runs["first"], 48), (second, runs["second"], 64)):
        state = torch.load(run / "models" / "models.torch", weights_only=True)
        history = state["history"]
        bpd = [r["bits_per_dim"] for r in history["validation"]]
        assert len(bpd) >= 3  # validated every 16 samples
        m = record.metrics
        assert m["samples_seen"] == samples and m["finished"] is True
        assert m["val_bpd_final"] == bpd[-1] and m["val_bpd_best"] == min(bpd)
        assert m["val_bpd_best_samples"] == history["validation"][int(np.argmin(bpd))]["samples"]
        assert m["validation_accuracy:head_0"] == history["validation"][-1]["head_0_accuracy"]
        assert m["train_seconds"] == history["train_seconds"] > 0
        assert m["train_time_source"] == "history"
        assert record.config_source == "experiment.toml"
    assert first.metrics["relevant:arm_position"] is True
    assert first.metrics["relevant:bg_color"] is False
    assert first.metrics["mean_abs_delta_logit:arm_position"] == 2.5
    assert first.metrics["relative_effect:bg_color"] == 0.005
    assert first.metrics["gt_relevant"] == "arm_position"
    assert "relevant:arm_position" not in second.metrics


def test_test_accuracy_from_the_analysis_cache(runs: dict[str, Path], tmp_path: Path) -> None:
    from dubfiv.explain.cache import (
        CACHE_DIRNAME,
        SplitData,
        checkpoint_fingerprint,
        load_or_compute,
    )

    run = tmp_path / "run"
    shutil.copytree(runs["second"], run)
    rng = np.random.default_rng(0)

    def split_data(split: str, n: int) -> SplitData:
        return SplitData(split=split, indices=np.arange(n), image_ids=[str(i) for i in range(n)],
                         labels=rng.integers(0, 2, n).astype(np.float32),
                         activations=np.zeros((n, 2), np.float32),
                         logits=rng.normal(size=n).astype(np.float32))

    cache = run / CACHE_DIRNAME
    fingerprint = checkpoint_fingerprint(run / "models" / "models.torch")
    small, large = split_data("test", 10), split_data("test", 30)
    for data in (small, large, split_data("validation", 12)):
        load_or_compute(cache, {"split": data.split, "n_samples": len(data), "head": 0},
                        fingerprint, lambda data=data: data)
    load_or_compute(cache, {"split": "test", "n_samples": 50, "head": 0}, "an older checkpoint",
                    lambda: split_data("test", 50))
    [record] = collect([run])
    expected = sum((lo > 0) == (la == 1) for lo, la in zip(large.logits, large.labels,
                                                            strict=True)) / 30
    assert record.metrics["test_accuracy:head_0"] == pytest.approx(expected)
    assert record.metrics["test_n:head_0"] == 30  # the largest current sample
    assert "validation_accuracy:head_0" in record.metrics  # from the history, not the cache
    assert record.metrics["validation_accuracy:head_0"] == torch.load(
        run / "models" / "models.torch", weights_only=True)["history"]["validation"][-1][
        "head_0_accuracy"]
    assert "1 analysis cache file(s) of an older checkpoint ignored" in record.notes


def test_cli_prints_summary_and_writes_csv(runs: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    out_csv = tmp_path / "runs.csv"
    assert main([str(runs["first"]), str(runs["second"]), str(runs["broken"]),
                 str(tmp_path / "nowhere"), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:3] == ["run", "train.n_train_samples", "train.optimizer.lr"]
    assert {"val_bpd_final", "val_bpd_best", "validation_accuracy:head_0",
            "train_time", "gt_relevant"} <= set(header)
    assert runs["first"].name in out and runs["second"].name in out
    assert "2 failed:" in out and "nowhere: no such folder" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]
    assert rows[1]["train.optimizer.lr"] == "0.002" and rows[1]["train.n_train_samples"] == "64"
    assert rows[0]["relevant:arm_position"] == "True" and rows[1]["relevant:arm_position"] == ""
    state = torch.load(runs["second"] / "models" / "models.torch", weights_only=True)
    assert float(rows[1]["val_bpd_final"]) == state["history"]["validation"][-1]["bits_per_dim"]
    assert "cannot read checkpoint" in rows[2]["error"]


def test_cli_commands(runs: dict[str, Path], tmp_path: Path,
                      capsys: pytest.CaptureFixture) -> None:
    assert main([str(runs["parent"]), "--command", "ground_truth"]) == 0
    out, err = capsys.readouterr()
    commands = [shlex.split(line) for line in out.splitlines()]
    assert commands == [["dubfiv_ground_truth", "--model", str(run), "--dataset_dir",
                         str(runs["data"]), "--dataset", "fake"]
                        for run in sorted([runs["first"], runs["second"]])]
    assert "# skipped" in err and "broken_run" in err
    assert main([str(runs["parent"]), "--command", "ground_truth", "--only_missing"]) == 0
    assert [shlex.split(line)[2] for line in capsys.readouterr().out.splitlines()] == [
        str(runs["second"])]
    assert main([str(runs["first"]), "--command", "export", "--output_base",
                 str(tmp_path / "studies")]) == 0
    assert shlex.split(capsys.readouterr().out) == [
        "dubfiv_export_user_study", "--model", str(runs["first"]), "--output",
        str(tmp_path / "studies" / runs["first"].name)]


def test_nothing_readable_is_an_error(runs: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    assert main([str(runs["broken"]), str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "no run could be read" in captured.out
    assert captured.err.strip().startswith("dubfiv_collect_runs: error: no run could be read")


def test_log_train_seconds_sums_sessions() -> None:
    log = "\n".join([
        "2024-05-01 10:00:00,000 INFO training steps 0..10 of 20 (batch 8, 1 processes)",
        "2024-05-01 10:00:30,500 INFO validation at 40 samples: ...",
        "2024-05-01 10:01:00,250 INFO stopped at 80 samples; continue with --resume x",
        "a line without a time stamp",
        "2024-05-03 09:00:00,000 INFO resumed from x at 80 samples",
        "2024-05-03 09:00:01,000 INFO training steps 10..20 of 20 (batch 8, 1 processes)",
        "2024-05-03 09:02:01,000 INFO finished: ...",
    ])
    assert log_train_seconds(log) == pytest.approx(60.25 + 0.0 + 120.0)
    assert log_train_seconds("no times here") is None


def test_flatten_and_ground_truth_layouts() -> None:
    nested = {"a": {"b": 1, "c": [1, 2]}, "layers": [{"n": 1}, {"n": 2, "k": "x"}], "m": "s"}
    assert flatten(nested) == {"a.b": 1, "a.c": [1, 2], "layers.0.n": 1, "layers.1.n": 2,
                               "layers.1.k": "x", "m": "s"}
    assert differing_keys([{"x": 1, "y": [1]}, {"x": 1, "y": [2], "z": 0}]) == ["y", "z"]
    listed = {"sets": [{"name": "obj_color", "relevant": True, "mean_abs_delta_logit": 1.5}]}
    assert ground_truth_columns(listed) == {"relevant:obj_color": True,
                                            "mean_abs_delta_logit:obj_color": 1.5,
                                            "gt_relevant": "obj_color"}
    assert ground_truth_columns({"something": "else"}) == {}
