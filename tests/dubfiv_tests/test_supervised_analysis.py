"""Supervised analysis: the regression against numpy/scipy, resizing, and the CLI's files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from dubfiv import stats
from dubfiv.supervised.analysis import CounterfactualReadout, regress_attributes


def test_linear_fit_matches_polyfit_and_linregress() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=500) * 3
    y = -0.7 * x + 2.0 + rng.normal(size=500)
    fit = stats.linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    ref = scipy.stats.linregress(x, y)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-10)
    assert fit.r == pytest.approx(ref.rvalue, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue ** 2, rel=1e-10)
    assert fit.slope_stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.n == 500
    # and the known answer, within the standard error
    assert abs(fit.slope + 0.7) < 4 * fit.slope_stderr


def test_linear_fit_degenerate_inputs_are_nan_not_errors() -> None:
    fit = stats.linear_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert np.isnan(fit.slope) and np.isnan(fit.r)
    flat = stats.linear_fit([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert flat.slope == 0.0 and np.isnan(flat.r2)
    assert flat.to_dict()["r2"] is None
    with pytest.raises(ValueError, match="differ"):
        stats.linear_fit([1.0, 2.0], [1.0])


def test_regress_attributes_recovers_known_slopes() -> None:
    """Synthetic readout: attribute a changes by 0.2 per logit, b not at all."""
    rng = np.random.default_rng(1)
    n, t = 40, 7
    targets = np.linspace(-3, 3, t)
    delta_logit = targets[None, :] - rng.normal(size=(n, 1)) + 0.01 * rng.normal(size=(n, t))
    delta = np.stack([0.2 * delta_logit + 0.02 * rng.normal(size=(n, t)),
                      0.05 * rng.normal(size=(n, t))], axis=-1)
    readout = CounterfactualReadout(["a", "b"], delta_logit, delta, targets, np.zeros(n), {})
    result = regress_attributes(readout, {"a": 0.5, "b": 2.0}, n_bootstrap=500, seed=0)
    a, b = result["a"], result["b"]
    ref = scipy.stats.linregress(delta_logit.ravel(), delta[..., 0].ravel())
    assert a["slope"] == pytest.approx(ref.slope, rel=1e-10)
    assert a["intercept"] == pytest.approx(ref.intercept, rel=1e-8, abs=1e-12)
    assert a["r2"] == pytest.approx(ref.rvalue ** 2, rel=1e-10)
    assert a["slope_interval"]["low"] <= 0.2 <= a["slope_interval"]["high"]
    assert a["slope_per_std"] == pytest.approx(a["slope"] / 0.5)
    assert a["n"] == n * t and a["n_images"] == n
    assert a["mean_abs_change"] == pytest.approx(np.abs(delta[..., 0]).mean())
    assert a["r2"] > 0.95 and b["r2"] < 0.05
    assert b["slope_interval"]["low"] <= 0.0 <= b["slope_interval"]["high"]


def test_predict_resizes_to_the_training_size(small_supervised: Path) -> None:
    from dubfiv.supervised import load_supervised, resize_images

    model = load_supervised(small_supervised, device="cpu")
    assert model.image_shape[1:] != (64, 64)  # the fixture trains at a smaller size
    images = torch.rand(5, 3, 64, 64)
    direct = model.predict(images)
    resized = model.predict(resize_images(images, model.image_shape[1:]))
    assert direct.shape == (5, model.spec.n)
    np.testing.assert_allclose(direct, resized, rtol=0, atol=1e-6)
    probability = direct[:, model.spec.names.index("obj_name")]
    assert ((probability >= 0) & (probability <= 1)).all()


def test_cli_writes_json_and_figure(small_supervised: Path, small_run: Path,
                                    small_dataset: Path, tmp_path: Path) -> None:
    from dubfiv.cli.supervised_analysis import main

    out = tmp_path / "analysis"
    status = main(["--supervised_dir", str(small_supervised), "--model", str(small_run),
                   "--dataset_dir", str(small_dataset.parent), "--dataset", small_dataset.name,
                   "--n_images", "6", "--n_steps", "5", "--output", str(out), "--device",
                   "cpu", "--n_bootstrap", "200", "--quiet"])
    assert status == 0
    report = json.loads((out / "supervised_analysis.json").read_text())
    assert (out / "supervised_analysis.png").stat().st_size > 1000
    assert report["resized"] is True
    # the raw points are kept for figures drawn later (dubfiv_generate_figures)
    assert np.shape(report["points"]["delta_logit"]) == (6, 5)
    assert set(report["points"]["delta_attributes"]) == set(report["attributes"])
    assert len(report["target_logits"]) == 5 and report["n_images"] == 6
    hi = report["logit_bins"]["values"][-1]
    assert report["target_logits"] == pytest.approx(list(np.linspace(-hi, hi, 5)))
    # the counterfactuals reach their target logits (re-encoded), as the design requires
    assert report["counterfactuals"]["max_abs_logit_deviation"] < 1e-2
    names = {"obj_name", "obj_color", "bg_color", "arm_position", "spherical"}
    assert names <= set(report["attributes"])
    for entry in report["attributes"].values():
        assert entry["n"] == 30 and entry["n_images"] == 6
        for key in ("slope", "intercept", "r", "r2", "mean_abs_change"):
            assert entry[key] is not None and np.isfinite(entry[key])
        assert -1 <= entry["r"] <= 1 and 0 <= entry["r2"] <= 1


def test_cli_errors_are_one_line(small_run: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from dubfiv.cli.supervised_analysis import main

    status = main(["--supervised_dir", str(tmp_path), "--model", str(small_run)])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and "checkpoint.pt: not found" in err
