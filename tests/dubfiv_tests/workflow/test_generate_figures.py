"""``dubfiv_generate_figures``: every figure of a trained run as PDF + PNG without LaTeX,
figures that show their data, missing inputs skipped with a note, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from dubfiv.cli.generate_figures import main
from dubfiv.supervised.analysis import CounterfactualReadout, readout_points, regress_attributes
from dubfiv.workflow.figures import (
    FIGURES,
    ground_truth_figure,
    moving_average,
    regression_figure,
    training_figure,
)
from dubfiv.workflow.paper_style import paper_style


@pytest.fixture()
def run_copy(small_run: Path, tmp_path: Path) -> Path:
    """A private copy of the shared run (the figures and the analysis cache go inside)."""
    return Path(shutil.copytree(small_run, tmp_path / "run"))


def synthetic_regression_report(seed: int = 0) -> dict:
    """A supervised-analysis report built by the library's own regression on data with
    known slopes: ``obj_color`` changes by 0.05 per logit, ``bg_color`` not at all."""
    rng = np.random.default_rng(seed)
    delta_logit = np.tile(np.linspace(-4, 4, 5), (12, 1)) + rng.normal(0, 0.01, (12, 5))
    slopes = np.array([0.05, 0.0])
    delta = delta_logit[..., None] * slopes + rng.normal(0, 0.02, (12, 5, 2))
    readout = CounterfactualReadout(["obj_color", "bg_color"], delta_logit, delta,
                                    np.linspace(-4, 4, 5), np.zeros(12), {})
    attributes = regress_attributes(readout, {"obj_color": 0.3, "bg_color": 0.3},
                                    n_bootstrap=100)
    return {"attributes": attributes, "points": readout_points(readout),
            "target_logits": list(np.linspace(-4, 4, 5))}


def test_all_figures_of_a_trained_run(run_copy: Path, small_dataset: Path) -> None:
    from dubfiv.ground_truth import evaluate_run, write_report

    report = evaluate_run(run_copy, dataset_dir=small_dataset.parent, dataset=small_dataset.name,
                          device="cpu", n_bootstrap=200, progress=False)
    write_report(report, run_copy / "ground_truth")
    analysis = run_copy / "supervised_analysis"
    analysis.mkdir()
    (analysis / "supervised_analysis.json").write_text(json.dumps(synthetic_regression_report()))

    out = run_copy / "paper"
    status = main(["--model", str(run_copy), "--output", str(out), "--dataset_dir",
                   str(small_dataset.parent), "--device", "cpu", "--concept_fit_images", "200",
                   "--n_rows", "3", "--quiet"])
    assert status == 0
    index = json.loads((out / "figures.json").read_text())
    assert [f["name"] for f in index["figures"]] == list(FIGURES)
    for name in FIGURES:
        pdf, png = out / f"{name}.pdf", out / f"{name}.png"
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF") and b"/FontFile2" in data, name  # TrueType embedded
        with Image.open(png) as image:
            assert image.info["dpi"][0] == pytest.approx(300, abs=1), name
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        assert pixels.std() > 5, f"{name}.png is (nearly) blank"
        entry = next(f for f in index["figures"] if f["name"] == name)
        assert entry["files"] == [f"{name}.pdf", f"{name}.png"] and entry["note"] == ""
    # no temporary file left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["figures.json"] + [f"{n}.{ext}" for n in FIGURES for ext in ("pdf", "png")])


def test_missing_inputs_are_skipped_with_a_note(run_copy: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures"
    status = main(["--model", str(run_copy), "--output", str(out), "--dataset_dir",
                   str(tmp_path / "no_data"), "--formats", "png", "--quiet"])
    assert status == 0
    printed = capsys.readouterr().out
    index = {f["name"]: f for f in json.loads((out / "figures.json").read_text())["figures"]}
    assert index["training"]["files"] == ["training.png"]
    assert "dubfiv_ground_truth" in index["ground_truth"]["note"]
    assert "dubfiv_supervised_analysis" in index["regression"]["note"]
    for name in ("baseline", "counterfactual", "concepts"):
        assert index[name]["files"] == [] and "`dataset_dir`" in index[name]["note"]
        assert f"{name}" in printed and "skipped" in printed
    assert not (out / "training.pdf").exists()


def test_a_figure_that_cannot_be_drawn_is_skipped(run_copy: Path, small_dataset: Path,
                                                  tmp_path: Path) -> None:
    """More rows than a logit bin holds images: the baseline is skipped with the reason,
    the training curves are still drawn and figures.json is written."""
    out = tmp_path / "figures"
    status = main(["--model", str(run_copy), "--output", str(out), "--dataset_dir",
                   str(small_dataset.parent), "--only", "baseline,training", "--n_rows",
                   "1000", "--formats", "png", "--quiet"])
    assert status == 0
    index = {f["name"]: f for f in json.loads((out / "figures.json").read_text())["figures"]}
    assert index["baseline"]["files"] == [] and "bin" in index["baseline"]["note"]
    assert index["training"]["files"] == ["training.png"]


def test_nothing_drawable_fails(run_copy: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--model", str(run_copy), "--output", str(tmp_path / "f"), "--only",
                   "ground_truth", "--quiet"])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dubfiv_generate_figures: error:") and "\n" not in err


@pytest.mark.parametrize("case", ["no_run", "bad_figure", "bad_format", "output_is_file",
                                  "bad_p_hi", "no_concepts", "no_cuda"])
def test_errors_are_one_line_and_write_nothing(case: str, run_copy: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "out"
    args = {"no_run": ["--model", str(tmp_path / "missing")],
            "bad_figure": ["--model", str(run_copy), "--only", "baseline,heatmap"],
            "bad_format": ["--model", str(run_copy), "--formats", "jpg"],
            "output_is_file": ["--model", str(run_copy)],
            "bad_p_hi": ["--model", str(run_copy), "--p_hi", "150"],
            "no_concepts": ["--model", str(run_copy), "--n_concepts", "0"],
            "no_cuda": ["--model", str(run_copy), "--device", "cuda"]}[case]
    if case == "no_cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    target = blocker / "sub" if case == "output_is_file" else out
    status = main([*args, "--output", str(target), "--quiet"])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dubfiv_generate_figures: error:") and "\n" not in err
    assert {"no_run": "missing", "bad_figure": "heatmap", "bad_format": "jpg",
            "output_is_file": "a_file", "bad_p_hi": "--p_hi", "no_concepts": "--n_concepts",
            "no_cuda": "CUDA is not available"}[case] in err
    assert not out.exists()


# --------------------------------------------------------------------------- figures show the data


def test_ground_truth_bars_are_the_report_values() -> None:
    report = {"rule": {"relative_threshold": 0.1}, "attributes": {
        "arm_position": {"relevant": True, "linear_effect": {"value": 0.6, "low": 0.5,
                                                             "high": 0.7},
                         "flip_share": {"value": 0.3, "low": 0.2, "high": 0.4}},
        "bg_color": {"relevant": False, "linear_effect": {"value": 0.02, "low": -0.01,
                                                          "high": 0.05},
                     "flip_share": {"value": 0.01, "low": 0.0, "high": 0.02}},
    }}
    with paper_style():
        figure = ground_truth_figure(report)
    effect, flips = figure.axes
    widths = [patch.get_width() for patch in effect.patches]
    assert widths == pytest.approx([0.6, 0.02])
    assert [patch.get_width() for patch in flips.patches] == pytest.approx([0.3, 0.01])
    # relevant and irrelevant attributes differ in colour; the threshold line is drawn at 0.1
    colors = {tuple(patch.get_facecolor()) for patch in effect.patches}
    assert len(colors) == 2
    assert any(np.allclose(np.asarray(line.get_xdata(), dtype=float), 0.1)
               for line in effect.lines)


def test_regression_lines_are_the_fitted_lines() -> None:
    report = synthetic_regression_report()
    with paper_style():
        figure = regression_figure(report)
    panels = figure.axes[:2]
    for ax, name, true_slope in zip(panels, ["obj_color", "bg_color"], [0.05, 0.0],
                                    strict=True):
        entry = report["attributes"][name]
        assert entry["slope"] == pytest.approx(true_slope, abs=0.005)
        fitted = next(line for line in ax.lines if len(line.get_xdata()) == 2
                      and not np.allclose(line.get_ydata(), 0))
        x, y = np.asarray(fitted.get_xdata()), np.asarray(fitted.get_ydata())
        assert (y[1] - y[0]) / (x[1] - x[0]) == pytest.approx(entry["slope"], rel=1e-9)
        # every point of the report is drawn
        offsets = ax.collections[0].get_offsets()
        assert len(offsets) == 12 * 5
        np.testing.assert_allclose(np.asarray(offsets)[:, 1],
                                   np.ravel(report["points"]["delta_attributes"][name]))
    assert "obj color" in panels[0].get_title()


def test_training_figure_and_moving_average() -> None:
    values = np.random.default_rng(0).normal(size=50)
    smoothed = moving_average(values, 5)
    expected = [values[max(0, i - 4):i + 1].mean() for i in range(50)]
    np.testing.assert_allclose(smoothed, expected, rtol=1e-12)
    assert training_figure({"train": [], "validation": []}, 1) is None
    history = {"train": [{"samples": 8 * i, "bits_per_dim": 6 - 0.01 * i,
                          "head_0_accuracy": 0.5} for i in range(40)],
               "validation": [{"samples": 160, "bits_per_dim": 5.5, "head_0_accuracy": 0.7},
                              {"samples": 320, "bits_per_dim": 5.2, "head_0_accuracy": 0.8}]}
    with paper_style():
        figure = training_figure(history, 1)
    assert figure is not None
    bpd, accuracy = figure.axes
    validation = bpd.lines[1]
    np.testing.assert_allclose(validation.get_ydata(), [5.5, 5.2])
    np.testing.assert_allclose(accuracy.lines[1].get_ydata(), [0.7, 0.8])


def test_paper_style_needs_no_latex(tmp_path: Path) -> None:
    from dubfiv.workflow.paper_style import new_figure, save_figure

    with matplotlib.rc_context({"text.usetex": True}):
        with paper_style():
            assert matplotlib.rcParams["text.usetex"] is False
            figure = new_figure(3.3, 2.0)
            figure.subplots().set_xlabel(r"$\Delta$ logit")
            pdf, = save_figure(figure, tmp_path / "f", ["pdf"])
        assert matplotlib.rcParams["text.usetex"] is True
    assert pdf.read_bytes().startswith(b"%PDF")
    # the same figure gives the same bytes (no creation date in the PDF)
    with paper_style():
        again, = save_figure(figure, tmp_path / "g", ["pdf"])
    assert again.read_bytes() == pdf.read_bytes()
