"""``dubfiv_model_summary`` and ``dubfiv_print_shapes``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dubfiv import config as cfg
from dubfiv.cli import model_summary, print_shapes
from dubfiv.flow import build_flow
from dubfiv.summary import summarize
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import train

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "model.toml"
SMALL = ROOT / "config" / "small_model.toml"


def _json(capsys: pytest.CaptureFixture, module: object, args: list[str]) -> object:
    assert module.main(args) == 0  # type: ignore[attr-defined]
    return json.loads(capsys.readouterr().out)


def test_paper_config_head_reads_768_features_at_641(capsys: pytest.CaptureFixture) -> None:
    summary = _json(capsys, model_summary, [str(PAPER), "--json"])
    assert summary["heads"] == [{"after_layer": 641, "in_features": 768, "label": "obj_name",
                                 "layer_kind": "InvConv1x1", "layer_output_shape": [768, 1, 1]}]
    # 7 stages: 1 + 96 layers, then 6 x (2 + 96), then the final ActNorm and 1x1 conv
    assert summary["n_layers"] == 97 + 6 * 98 + 2 == 687
    shapes = [tuple(s["output_shape"]) for s in summary["stages"] if s["name"] != "final"]
    assert shapes == [(12, 64, 64), (24, 32, 32), (48, 16, 16), (96, 8, 8), (192, 4, 4),
                      (384, 2, 2), (768, 1, 1)]
    assert summary["n_parameters"] == summary["n_parameters_flow"] + 769


def test_parameter_count_matches_a_built_model() -> None:
    experiment = cfg.load_experiment(SMALL)
    summary = summarize(experiment)
    flow = build_flow(experiment.model)
    assert summary["n_parameters_flow"] == sum(p.numel() for p in flow.parameters())
    (head,) = summary["heads"]
    with torch.no_grad():
        out = flow(torch.rand(1, 3, 64, 64), capture=(head["after_layer"],))
    assert out.activations[head["after_layer"]][0].numel() == head["in_features"]
    assert summary["n_layers"] == len(flow.layers)


def test_image_size_option(capsys: pytest.CaptureFixture) -> None:
    summary = _json(capsys, model_summary, [str(SMALL), "--json", "--image_size", "128"])
    assert summary["stages"][0]["output_shape"] == [12, 64, 64]
    assert summary["heads"][0]["in_features"] == 384 * 2 * 2
    assert model_summary.main([str(PAPER), "--image_size", "32"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dubfiv_model_summary: error:") and len(err.splitlines()) == 1


def test_text_output(capsys: pytest.CaptureFixture) -> None:
    assert model_summary.main([str(PAPER)]) == 0
    out = capsys.readouterr().out
    assert "layers: 687" in out and "768x1x1" in out
    assert "head 0: after layer 641 (InvConv1x1, 768x1x1) -> 768 features" in out


def test_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.set_num_threads(1)
    write_fake_two4two(tmp_path / "fake", {"train": 16, "validation": 8}, image_size=16)
    run_dir = train(tiny_experiment(tmp_path, n_train_samples=8, val_every_samples=0,
                                    checkpoint_every_samples=0, sample_every_samples=0),
                    tmp_path / "runs", device="cpu", progress=False)
    summary = _json(capsys, model_summary, [str(run_dir), "--json"])
    assert summary["heads"] == [{"after_layer": 13, "in_features": 384, "label": "obj_name",
                                 "layer_kind": "InvConv1x1", "layer_output_shape": [24, 4, 4]}]
    assert summary["n_layers"] == 17


def test_print_shapes(capsys: pytest.CaptureFixture) -> None:
    rows = _json(capsys, print_shapes, [str(PAPER), "--json"])
    assert len(rows) == 687 and [r["index"] for r in rows] == list(range(687))
    assert rows[0] == {"index": 0, "kind": "SpaceToDepth", "output_shape": [12, 64, 64]}
    assert rows[97]["kind"] == "Split" and rows[98]["kind"] == "SpaceToDepth"
    assert rows[641] == {"index": 641, "kind": "InvConv1x1", "output_shape": [768, 1, 1]}
    assert print_shapes.main([str(SMALL)]) == 0
    lines = capsys.readouterr().out.splitlines()
    n_layers = len(build_flow(cfg.load_experiment(SMALL).model, random_init=False).layers)
    assert len(lines) == 1 + n_layers and lines[1].split() == ["0", "SpaceToDepth", "12x32x32"]


def test_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for module, prog in ((model_summary, "dubfiv_model_summary"),
                         (print_shapes, "dubfiv_print_shapes")):
        assert module.main([str(tmp_path / "nope.toml")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{prog}: error:") and "nope.toml" in err
        assert len(err.splitlines()) == 1
