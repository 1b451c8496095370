"""Supervised baseline: model building, targets and metrics against independent
computations, learning beats a constant predictor, resume equals an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sklearn.metrics
import torch

from dubfiv import stats
from dubfiv.supervised import (
    SupervisedConfig,
    SupervisedError,
    TargetSpec,
    build_model,
    constant_baseline,
    fit_target_spec,
    load_supervised,
    parse_model_kwargs,
    r2_score,
    train_supervised,
)
from dubfiv.supervised.targets import scene_values

# --------------------------------------------------------------------------- building


def test_build_model_by_name_without_weights() -> None:
    torch.manual_seed(0)
    model = build_model("mobilenet_v2", {"width_mult": 0.25}, 5, (3, 32, 32))
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 5)
    resnet = build_model("resnet18", {}, 3)
    assert resnet.fc.out_features == 3


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("mobilenet_v9", {}, r"not a torchvision classification model; choose one of: .*resnet18"),
    ("mobilenet_v2", {"width": 0.5}, r"do not fit torchvision's mobilenet_v2"),
    ("resnet18", {"weights": "DEFAULT"}, r"'weights' is not allowed"),
])
def test_build_model_errors_name_the_fix(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(SupervisedError, match=match):
        build_model(name, kwargs, 3)


def test_parse_model_kwargs() -> None:
    assert parse_model_kwargs('{"width_mult": 0.5}') == {"width_mult": 0.5}
    assert parse_model_kwargs(None) == {}
    with pytest.raises(SupervisedError, match="not valid JSON"):
        parse_model_kwargs("{width_mult: 0.5}")
    with pytest.raises(SupervisedError, match="must be a JSON object"):
        parse_model_kwargs("[0.5]")


@pytest.mark.parametrize(("argv", "match"), [
    (["--model_kwargs", "{bad"], "--model_kwargs '{bad' is not valid JSON"),
    (["--model_name", "nonet"], "--model_name 'nonet' is not a torchvision"),
])
def test_cli_reports_bad_model_in_one_line(small_dataset: Path, tmp_path: Path, argv: list[str],
                                           match: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dubfiv.cli.supervised import main

    status = main(["--data_output_dir", str(tmp_path / "out"), "--dataset", small_dataset.name,
                   "--dataset_dir", str(small_dataset.parent), "--quiet", *argv])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and match in err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- targets, metrics


def test_target_spec_encode_decode_and_loss_float64() -> None:
    spec = TargetSpec(names=("obj_name", "bg_color", "bending"), binary=(True, False, False),
                      mean=(0.4, 0.5, 0.0), std=(1.0, 0.25, 0.2))
    values = torch.tensor([[1.0, 0.75, -0.1], [0.0, 0.25, 0.3]], dtype=torch.float64)
    encoded = spec.encode(values)
    torch.testing.assert_close(encoded, torch.tensor([[1.0, 1.0, -0.5], [0.0, -1.0, 1.5]],
                                                     dtype=torch.float64))
    outputs = torch.tensor([[2.0, 1.0, -0.5], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    decoded = spec.decode(outputs)
    torch.testing.assert_close(decoded[:, 0], torch.sigmoid(outputs[:, 0]))
    torch.testing.assert_close(decoded[:, 1:], outputs[:, 1:] * torch.tensor([0.25, 0.2],
                                                                             dtype=torch.float64)
                               + torch.tensor([0.5, 0.0], dtype=torch.float64))
    # loss: mean over the 6 entries of BCE (column 0) and squared error (columns 1, 2)
    p = 1 / (1 + np.exp(-outputs[:, 0].numpy()))
    y = encoded.numpy()
    bce = -(y[:, 0] * np.log(p) + (1 - y[:, 0]) * np.log(1 - p))
    mse = (outputs[:, 1:].numpy() - y[:, 1:]) ** 2
    expected = (bce.sum() + mse.sum()) / 6
    assert float(spec.loss(outputs, encoded)) == pytest.approx(expected, rel=1e-12)
    assert TargetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_fit_target_spec_standardises_with_train_statistics(small_dataset: Path) -> None:
    from two4two.pytorch import Two4Two

    train = Two4Two(small_dataset, "train", return_segmentation_mask=False)
    spec = fit_target_spec(train.params)
    assert spec.names[0] == "obj_name" and spec.binary[0]
    assert {"obj_color", "bg_color", "arm_position", "spherical"} <= set(spec.names)
    assert "fliplr" not in spec.names  # boolean, always False
    values = scene_values(train.params, spec.names)
    encoded = spec.encode(torch.from_numpy(values)).numpy()
    continuous = ~np.array(spec.binary)
    np.testing.assert_allclose(encoded[:, continuous].mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(encoded[:, continuous].std(0), 1, atol=1e-9)


def test_r2_matches_sklearn_and_constant_predictors_score_at_most_zero() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    pred = y + 0.5 * rng.normal(size=200)
    assert r2_score(y, pred) == pytest.approx(sklearn.metrics.r2_score(y, pred), rel=1e-12)
    spec = TargetSpec(("obj_name", "bg_color"), (True, False), (0.7, 0.3), (1.0, 0.2))
    heldout = np.stack([rng.uniform(size=200) < 0.4, rng.uniform(size=200)], axis=1)
    base = constant_baseline(spec, heldout.astype(float))
    assert base["bg_color_r2"] <= 0
    assert base["obj_name_accuracy"] == pytest.approx(np.mean(heldout[:, 0] == 1))  # majority 1


# --------------------------------------------------------------------------- learning


def test_trained_model_beats_a_constant_predictor_on_held_out_data(
        small_supervised: Path, small_dataset: Path) -> None:
    """On the test split (never used in training) the model's accuracy for obj_name and R^2
    for obj_color and bg_color beat the constant predictor fitted on train (majority class /
    train mean), by a margin whose bootstrap 95% interval excludes 0."""
    from dubfiv.data import to_unit
    from two4two.pytorch import Two4Two

    model = load_supervised(small_supervised, device="cpu")
    test = Two4Two(small_dataset, "test", return_segmentation_mask=False)
    images = to_unit(torch.stack([test[i][0] for i in range(len(test))]))
    predicted = model.predict(images)
    true = scene_values(test.params, model.spec.names)
    j = {name: model.spec.names.index(name) for name in ("obj_name", "obj_color", "bg_color")}
    majority = 1.0 if model.spec.mean[j["obj_name"]] > 0.5 else 0.0
    correct = (predicted[:, j["obj_name"]] > 0.5) == (true[:, j["obj_name"]] > 0.5)
    constant_correct = true[:, j["obj_name"]] == majority
    gain = stats.bootstrap(stats.mean, [correct.astype(float) - constant_correct], seed=0)
    assert gain.low > 0, gain
    for name in ("obj_color", "bg_color"):
        y, p = true[:, j[name]], predicted[:, j[name]]
        mean_train = model.spec.mean[j[name]]
        r2 = sklearn.metrics.r2_score(y, p)
        assert sklearn.metrics.r2_score(y, np.full_like(y, mean_train)) <= 0
        # R^2 minus the constant's, resampling test images
        r2_gain = stats.bootstrap(
            lambda a, b, m=mean_train: 1 - np.sum((a - b) ** 2, -1) / np.sum((a - m) ** 2, -1),
            [y, p], seed=1)
        assert r2 > 0.4 and r2_gain.low > 0, (name, r2, r2_gain)
    # the history recorded the same kind of numbers on the validation split every epoch
    history = json.loads((small_supervised / "history.json").read_text())
    assert len(history["epochs"]) == model.config.num_epochs
    assert {"obj_name_accuracy", "obj_color_r2", "bg_color_r2"} <= set(history["epochs"][-1])
    assert history["test"]["bg_color_r2"] == pytest.approx(
        sklearn.metrics.r2_score(true[:, j["bg_color"]], predicted[:, j["bg_color"]]), abs=1e-4)
    assert (small_supervised / "metrics.png").stat().st_size > 1000


def test_run_state_round_trips_through_the_checkpoint_format(tmp_path: Path) -> None:
    """The trainer's typed state is stored as the plain dict of ``dubfiv.supervised/1``
    and read back with the same field values and types."""
    from dubfiv.checkpoint import save_checkpoint
    from dubfiv.supervised.train import FORMAT, SupervisedRun, read_checkpoint

    config = SupervisedConfig(dataset="d", model_kwargs={"width_mult": 0.25}, image_size=32)
    spec = TargetSpec(("obj_name", "bg_color"), (True, False), (0.5, 0.2), (1.0, 0.1))
    torch.manual_seed(0)
    model = build_model(config.model_name, config.model_kwargs, spec.n, (3, 32, 32))
    run = SupervisedRun(config=config, spec=spec, image_shape=(3, 32, 32), model=model,
                        epoch=2, history=[{"epoch": 1}, {"epoch": 2}])
    optimizer = torch.optim.AdamW(model.parameters())
    stored = run.to_checkpoint(optimizer.state_dict())
    assert set(stored) == {"format", "config", "targets", "image_shape", "model_state",
                           "optimizer_state", "epoch", "history"}
    assert stored["format"] == FORMAT and stored["image_shape"] == [3, 32, 32]
    assert isinstance(stored["config"], dict) and isinstance(stored["targets"], dict)
    save_checkpoint(stored, tmp_path / "checkpoint.pt")
    back = read_checkpoint(tmp_path / "checkpoint.pt", check_shape=True)
    assert isinstance(back, SupervisedRun)
    assert (back.config, back.spec, back.image_shape, back.epoch, back.history) == (
        config, spec, (3, 32, 32), 2, run.history)
    assert back.optimizer_state is not None and "param_groups" in back.optimizer_state
    for key, value in model.state_dict().items():
        torch.testing.assert_close(back.model.state_dict()[key], value, rtol=0, atol=0)


def test_resume_continues_exactly_like_an_uninterrupted_run(
        small_dataset: Path, tmp_path: Path) -> None:
    """Two epochs straight vs one epoch, stop, resume through the CLI: same weights and the
    same second-epoch record (CPU, one thread, same seed)."""
    from dubfiv.cli.supervised import main

    config = SupervisedConfig(dataset=small_dataset.name, dataset_dir=str(small_dataset.parent),
                              model_name="mobilenet_v2", model_kwargs={"width_mult": 0.25},
                              batch_size=50, num_epochs=2, ckpt_freq=1, lr=3e-3,
                              image_size=32, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = train_supervised(config, tmp_path / "straight", device="cpu", progress=False)
        flags = ["--data_output_dir", str(tmp_path / "resumed"), "--dataset", config.dataset,
                 "--dataset_dir", config.dataset_dir, "--model_name", config.model_name,
                 "--model_kwargs", json.dumps(config.model_kwargs), "--batch_size", "50",
                 "--num_epochs", "2", "--ckpt_freq", "1", "--lr", "3e-3", "--image_size", "32",
                 "--seed", "3", "--device", "cpu", "--quiet"]
        assert main([*flags, "--stop_after_epochs", "1"]) == 0
        half = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
        assert half["epoch"] == 1
        # a second start without --resume is refused; --resume with settings too
        assert main(flags) == 1
        with pytest.raises(SystemExit):
            main(["--data_output_dir", str(tmp_path / "resumed"), "--resume", "--lr", "1"])
        assert main(["--data_output_dir", str(tmp_path / "resumed"), "--resume", "--device",
                     "cpu", "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][key], value, rtol=0, atol=0, msg=key)
    # the model changed during epoch 2 (so the comparison above is not vacuous)
    assert any(not torch.equal(half["model_state"][k], v)
               for k, v in a["model_state"].items() if v.is_floating_point())
    rec_a, rec_b = a["history"][1], b["history"][1]
    for key in rec_a:
        if key != "seconds":
            assert rec_b[key] == pytest.approx(rec_a[key], rel=0, abs=0), key
