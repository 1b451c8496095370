"""Intervention report: bootstrap statistics against independent computations, pairing,
errors, and the report of a trained run on the small dataset's intervention sets."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from dubfiv import stats
from dubfiv.ground_truth import (
    GroundTruthError,
    InterventionSet,
    PairedLogits,
    effect_of_set,
    find_intervention_sets,
    pair_indices,
    summarise_attributes,
)

# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_mean_matches_normal_theory_interval() -> None:
    """For n = 2000 normal draws the percentile interval of the mean is mean +- 1.96 s / sqrt(n)."""
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=2000)
    est = stats.bootstrap(stats.mean, [x], n_bootstrap=4000, seed=0)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(x.size)
    assert est.value == pytest.approx(x.mean(), abs=1e-12)
    assert est.low == pytest.approx(x.mean() - half, abs=0.08 * half)
    assert est.high == pytest.approx(x.mean() + half, abs=0.08 * half)
    assert est.covers(est.value) and est.covers(3.0)


def test_bootstrap_correlation_matches_fisher_z_and_scipy() -> None:
    """Pearson r of a bivariate normal with rho = 0.5: the interval agrees with the Fisher-z
    interval and with scipy.stats.bootstrap (percentile method), and covers rho."""
    rng = np.random.default_rng(2)
    n, rho = 1500, 0.5
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.normal(size=n)
    est = stats.bootstrap(stats.pearson, [x, y], n_bootstrap=4000, seed=3)
    r = np.corrcoef(x, y)[0, 1]
    assert est.value == pytest.approx(r, abs=1e-12)
    z, se = math.atanh(r), 1 / math.sqrt(n - 3)
    fisher = (math.tanh(z - 1.959964 * se), math.tanh(z + 1.959964 * se))
    width = fisher[1] - fisher[0]
    assert est.low == pytest.approx(fisher[0], abs=0.1 * width)
    assert est.high == pytest.approx(fisher[1], abs=0.1 * width)
    ref = scipy.stats.bootstrap((x, y), lambda a, b, axis=-1: stats.pearson(a, b), paired=True,
                                vectorized=True, n_resamples=4000, method="percentile",
                                random_state=np.random.default_rng(4))
    assert est.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * width)
    assert est.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * width)
    assert est.covers(rho)


def test_bootstrap_flip_share_matches_wilson_interval() -> None:
    """A share of 0.3 in n = 1000: percentile interval close to the Wilson interval."""
    rng = np.random.default_rng(5)
    flips = (rng.uniform(size=1000) < 0.3).astype(float)
    est = stats.bootstrap(stats.mean, [flips], n_bootstrap=4000, seed=0)
    p, n, z = flips.mean(), flips.size, 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert est.low == pytest.approx(centre - half, abs=0.1 * half)
    assert est.high == pytest.approx(centre + half, abs=0.1 * half)


def test_bootstrap_coverage_of_the_true_mean_abs() -> None:
    """Over 300 synthetic data sets the 95% interval of E|X| (X ~ N(0.5, 1)) covers the
    true value about 95% of the time (a wrong interval fails: e.g. half width -> ~70%)."""
    # E|X| = sigma sqrt(2/pi) exp(-mu^2 / 2 sigma^2) + mu (1 - 2 Phi(-mu / sigma))
    true = math.sqrt(2 / math.pi) * math.exp(-0.125) + 0.5 * (1 - 2 * scipy.stats.norm.cdf(-0.5))
    rng = np.random.default_rng(6)
    hits = 0
    trials = 300
    for k in range(trials):
        x = rng.normal(0.5, 1.0, size=80)
        hits += stats.bootstrap(stats.mean_abs, [x], n_bootstrap=500, seed=k).covers(true)
    assert 0.89 <= hits / trials <= 0.99


def test_bootstrap_is_seeded_and_clustered_resampling_matches_a_loop() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(30, 5))
    y = 2 * x + rng.normal(size=(30, 5)) + rng.normal(size=(30, 1))  # shared per-cluster noise
    a = stats.bootstrap(stats.slope, [x, y], n_bootstrap=300, seed=11)
    b = stats.bootstrap(stats.slope, [x, y], n_bootstrap=300, seed=11)
    assert a == b
    assert a.value == pytest.approx(np.polyfit(x.ravel(), y.ravel(), 1)[0], rel=1e-10)
    # the same replicates by a plain loop over the resampled clusters
    idx = stats.bootstrap_indices(30, 300, 11)
    reps = [np.polyfit(x[i].ravel(), y[i].ravel(), 1)[0] for i in idx]
    low, high = np.quantile(reps, [0.025, 0.975])
    assert (a.low, a.high) == pytest.approx((low, high), rel=1e-9)
    assert a.covers(a.value) and a.n == 30


def test_bootstrap_rejects_bad_input_and_reports_undefined_replicates() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        stats.bootstrap(stats.mean, [np.array([])])
    with pytest.raises(ValueError, match="level"):
        stats.bootstrap(stats.mean, [np.ones(3)], level=1.5)
    # 3 points, one distinct: many resamples have a constant x -> undefined correlation
    est = stats.bootstrap(stats.pearson, [np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, 3.0])],
                          n_bootstrap=500, seed=0)
    assert 0.2 < est.undefined_share < 0.8
    assert est.to_dict()["undefined_share"] == est.undefined_share


# --------------------------------------------------------------------------- one set


def test_effect_of_set_on_a_synthetic_model_with_known_answer() -> None:
    """logit = 4 (a - 0.5) + noise. Resampling a moves the logit along a: linear effect
    sqrt(2) (std of 4 (a' - a) over std of 4 a for independent uniforms). Resampling b,
    which the model does not use, jitters the logit as much as a does (like a new
    background colour), but without direction: not relevant."""
    rng = np.random.default_rng(8)
    n = 400
    a, a_new = rng.uniform(size=n), rng.uniform(size=n)
    b, b_new = rng.uniform(size=n), rng.uniform(size=n)
    logit = 4 * (a - 0.5) + 0.05 * rng.normal(size=n)
    spread = float(np.std(logit))
    after_a = 4 * (a_new - 0.5) + 0.05 * rng.normal(size=n)
    after_b = logit + 1.6 * rng.normal(size=n)  # mean |delta| ~ 1.3, like after_a's
    set_a = PairedLogits(InterventionSet("test_a", ("a",), Path(".")), logit, after_a,
                         {"a": (a, a_new)})
    set_b = PairedLogits(InterventionSet("test_b", ("b",), Path(".")), logit, after_b,
                         {"b": (b, b_new)})
    ra = effect_of_set(set_a, spread, 0.1, n_bootstrap=1000, seed=0)
    rb = effect_of_set(set_b, spread, 0.1, n_bootstrap=1000, seed=0)
    delta = after_a - logit
    ea, eb = ra["per_attribute"]["a"], rb["per_attribute"]["b"]
    # point estimates against direct computations
    assert ra["mean_abs_delta_logit"]["value"] == pytest.approx(np.abs(delta).mean())
    assert ra["relative_effect"]["value"] == pytest.approx(np.abs(delta).mean() / spread)
    assert ra["flip_share"]["value"] == pytest.approx(np.mean((logit > 0) != (after_a > 0)))
    r = np.corrcoef(a_new - a, delta)[0, 1]
    assert ea["correlation"]["value"] == pytest.approx(r)
    assert ea["linear_effect"]["value"] == pytest.approx(abs(r) * delta.std() / spread)
    assert ea["slope"]["value"] == pytest.approx(np.polyfit(a_new - a, delta, 1)[0])
    # known answers inside the intervals
    assert ea["linear_effect"]["low"] <= math.sqrt(2) <= ea["linear_effect"]["high"]
    assert ea["slope"]["low"] <= 4.0 <= ea["slope"]["high"]
    assert eb["correlation"]["low"] <= 0.0 <= eb["correlation"]["high"]
    # the verdicts: a relevant, b not, although b moves the logit as much on average
    assert ea["relevant"] and ea["confident"] and ra["relevant"]
    assert not eb["relevant"] and not rb["relevant"]
    assert eb["confident"] == (eb["linear_effect"]["high"] <= 0.1)  # jitter widens it
    assert rb["relative_effect"]["low"] > 0.5 * ra["relative_effect"]["value"]
    for report in (ra, rb):
        for key in ("mean_abs_delta_logit", "relative_effect", "flip_share"):
            assert report[key]["low"] <= report[key]["value"] <= report[key]["high"]
    summary = summarise_attributes([rb, ra])
    assert list(summary) == ["a", "b"]
    assert summary["a"]["relevant"] and not summary["b"]["relevant"]
    assert summary["a"]["source"] == "test_a" and summary["a"]["jointly_with"] == []


def test_folded_interval_of_the_absolute_effect() -> None:
    """|x| from x: an interval containing 0 starts at 0, a one-sided one is mirrored; and on
    an unused attribute (true effect 0) the folded interval covers the estimate, which the
    bootstrap interval of |r| itself misses (every replicate's |r| exceeds the sample's)."""
    from dubfiv.ground_truth import fold

    def est(value: float, low: float, high: float) -> stats.Estimate:
        return stats.Estimate(value, low, high, 0.95, 100, 1000)

    near_zero = fold(est(-0.01, -0.2, 0.1))
    assert (near_zero.value, near_zero.low, near_zero.high) == (0.01, 0.0, 0.2)
    negative = fold(est(-0.5, -0.7, -0.3))
    assert (negative.value, negative.low, negative.high) == (0.5, 0.3, 0.7)
    rng = np.random.default_rng(3)
    change, delta = rng.normal(size=150), rng.normal(size=150)
    change = change - np.polyfit(delta, change, 1)[0] * delta  # sample correlation ~0
    absolute = stats.bootstrap(lambda c, d: np.abs(stats.pearson(c, d)), [change, delta],
                               n_bootstrap=1000, seed=0)
    assert not absolute.covers(absolute.value)
    folded = fold(stats.bootstrap(stats.pearson, [change, delta], n_bootstrap=1000, seed=0))
    assert folded.covers(folded.value) and folded.low == 0.0


def test_multi_attribute_set_gives_each_attribute_its_own_verdict() -> None:
    rng = np.random.default_rng(9)
    n = 400
    a0, a1 = rng.uniform(size=n), rng.uniform(size=n)
    c0, c1 = rng.uniform(size=n), rng.uniform(size=n)
    logit, after = 3 * a0, 3 * a1 + 0.01 * rng.normal(size=n)  # only a matters
    paired = PairedLogits(InterventionSet("test_a_c", ("a", "c"), Path(".")), logit, after,
                          {"a": (a0, a1), "c": (c0, c1)})
    report = effect_of_set(paired, float(np.std(logit)), 0.1, n_bootstrap=1000, seed=1)
    assert report["relevant"]
    assert report["per_attribute"]["a"]["relevant"]
    assert not report["per_attribute"]["c"]["relevant"]
    summary = summarise_attributes([report])
    assert summary["a"]["jointly_with"] == ["c"] and summary["a"]["relevant"]
    assert not summary["c"]["relevant"]
    # a single-attribute set decides over a joint one
    single = effect_of_set(PairedLogits(InterventionSet("test_c", ("c",), Path(".")), logit,
                                        logit + 3 * (c1 - c0), {"c": (c0, c1)}),
                           float(np.std(logit)), 0.1, n_bootstrap=200, seed=2)
    summary = summarise_attributes([report, single])
    assert summary["c"]["relevant"] and summary["c"]["source"] == "test_c"


# --------------------------------------------------------------------------- data errors


def test_pairing_and_unpaired_ids() -> None:
    scene = lambda i, o: types.SimpleNamespace(id=i, original_id=o)  # noqa: E731
    index = pair_indices(["x", "y", "z"], [scene("c", "z"), scene("a", "x")], "set")
    assert index.tolist() == [2, 0]
    with pytest.raises(GroundTruthError, match=r"1 of 2 scenes have no original.*'q'"):
        pair_indices(["x"], [scene("a", "x"), scene("b", "q")], "test_bg_color")
    with pytest.raises(GroundTruthError, match="no original"):
        pair_indices(["x"], [scene("a", None)], "test_bg_color")


def test_missing_intervention_dirs_say_how_to_render(tmp_path: Path) -> None:
    (tmp_path / "ds" / "test").mkdir(parents=True)
    (tmp_path / "ds" / "test" / "parameters.jsonl").write_text("")
    with pytest.raises(GroundTruthError, match=r"no intervention directories.*python -m two4two"):
        find_intervention_sets(tmp_path / "ds")
    with pytest.raises(GroundTruthError, match="split not found"):
        find_intervention_sets(tmp_path / "nothing")


# --------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def small_report(small_run: Path, small_dataset: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[dict, Path]:
    from dubfiv.cli.ground_truth import main

    out = tmp_path_factory.mktemp("ground_truth")
    status = main(["--model", str(small_run), "--dataset_dir", str(small_dataset.parent),
                   "--dataset", small_dataset.name, "--output", str(out), "--device", "cpu",
                   "--n_bootstrap", "1000", "--quiet"])
    assert status == 0
    return json.loads((out / "ground_truth.json").read_text()), out


def test_cli_writes_report_and_plot(small_report: tuple[dict, Path], small_dataset: Path) -> None:
    from two4two.pytorch import Two4Two

    report, out = small_report
    n_test = len(Two4Two(small_dataset, "test", return_segmentation_mask=False))
    assert (out / "ground_truth.png").stat().st_size > 1000
    names = {s["name"] for s in report["sets"]}
    assert names == {"test_arm_position", "test_obj_color", "test_bg_color", "test_spherical"}
    assert set(report["attributes"]) == {"arm_position", "obj_color", "bg_color", "spherical"}
    for s in report["sets"]:
        assert s["n"] == n_test
        for key in ("mean_abs_delta_logit", "relative_effect", "flip_share"):
            assert s[key]["low"] <= s[key]["value"] <= s[key]["high"]
        entry = s["per_attribute"][s["attributes"][0]]
        for key in ("linear_effect", "correlation", "slope"):
            assert entry[key]["low"] <= entry[key]["value"] <= entry[key]["high"]
        assert isinstance(entry["relevant"], bool)
    assert report["rule"]["threshold_logits"] == pytest.approx(
        report["rule"]["relative_threshold"] * report["logit_spread"]["std"])


def test_report_matches_independently_computed_logits(small_report: tuple[dict, Path],
                                                      small_run: Path,
                                                      small_dataset: Path) -> None:
    """Re-derive one set's numbers with the flow and head directly (pairing by id)."""
    import torch

    from dubfiv.runs import load_run
    from two4two.pytorch import Two4Two

    report, _ = small_report
    run = load_run(small_run, device="cpu")
    head = run.heads[0]

    def logits(split: str) -> tuple[list, np.ndarray]:
        data = Two4Two(small_dataset, split, return_segmentation_mask=False)
        x = torch.stack([data[i][0] for i in range(len(data))])  # ToTensor: k / 255
        with torch.no_grad():
            return data.params, head(run.flow(x, 0, head.after_layer + 1).h).double().numpy()

    originals, base = logits("test")
    scenes, moved = logits("test_obj_color")
    by_id = {p.id: i for i, p in enumerate(originals)}
    before = base[[by_id[p.original_id] for p in scenes]]
    s = next(s for s in report["sets"] if s["name"] == "test_obj_color")
    assert s["mean_abs_delta_logit"]["value"] == pytest.approx(np.abs(moved - before).mean(),
                                                               rel=1e-4, abs=1e-5)
    # a logit within float error of 0 may flip differently: allow one pair
    assert s["flip_share"]["value"] == pytest.approx(np.mean((moved > 0) != (before > 0)),
                                                     abs=1.01 / len(scenes))
    change = np.array([p.obj_color for p in scenes]) - np.array(
        [originals[by_id[p.original_id]].obj_color for p in scenes])
    r = np.corrcoef(change, moved - before)[0, 1]
    assert s["per_attribute"]["obj_color"]["correlation"]["value"] == pytest.approx(r, abs=1e-3)
    assert report["logit_spread"]["std"] == pytest.approx(base.std(), rel=1e-4)


def test_small_run_ranks_arm_position_and_object_colour_above_background(
        small_report: tuple[dict, Path]) -> None:
    """The shared small run (12000 samples on 2000 biased images, validation accuracy ~0.7)
    uses the class's carriers: arm position and object colour are relevant (their linear
    effects' intervals lie above the threshold), both push towards stretchy as they grow,
    and the background colour and the (unbiased) spherical shape rank below both and are
    not relevant (measured linear effects: object colour 0.76 [0.62, 0.89], arm position
    0.42 [0.24, 0.58], background 0.13 [0.01, 0.27], spherical 0.01 [0.00, 0.14])."""
    report, _ = small_report
    attrs = report["attributes"]
    order = list(attrs)
    for ignored in ("bg_color", "spherical"):
        assert order.index(ignored) > max(order.index("arm_position"), order.index("obj_color"))
        assert not attrs[ignored]["relevant"]
    assert attrs["arm_position"]["relevant"] and attrs["obj_color"]["relevant"]
    for name in ("arm_position", "obj_color"):
        assert attrs[name]["correlation"]["low"] > 0
    assert attrs["obj_color"]["linear_effect"]["low"] > attrs["bg_color"]["linear_effect"]["high"]


@pytest.mark.slow
def test_trained_model_uses_arm_position_and_colour_not_background(
        medium_run: Path, medium_dataset: Path) -> None:
    """The small model trained for 18000 samples on 3000 biased images uses arm position
    and object colour -- the class's carriers in the biased data, both pushing towards
    stretchy as they grow -- and not the background colour or the spherical shape.
    Clearer separation than the small run: both intervals above the background's.
    """
    from dubfiv.ground_truth import evaluate_run

    report = evaluate_run(medium_run, dataset_dir=medium_dataset.parent,
                          dataset=medium_dataset.name, device="cpu", progress=False)
    attrs = report["attributes"]
    assert attrs["arm_position"]["relevant"] and attrs["obj_color"]["relevant"]
    assert not attrs["bg_color"]["relevant"]
    for name in ("arm_position", "obj_color"):
        assert attrs[name]["linear_effect"]["low"] > attrs["bg_color"]["linear_effect"]["high"]
        assert attrs[name]["correlation"]["low"] > 0
    assert set(list(attrs)[-2:]) == {"bg_color", "spherical"}  # spherical is unbiased here


def test_cli_error_without_intervention_sets_is_one_line(
        small_run: Path, small_dataset: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A dataset whose test split has no intervention directories: exit 1, one line that
    says how to render them, and nothing written."""
    import shutil

    from dubfiv.cli.ground_truth import main

    shutil.copytree(small_dataset / "test", tmp_path / "plain" / "test")
    status = main(["--model", str(small_run), "--dataset_dir", str(tmp_path), "--dataset",
                   "plain", "--output", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "no intervention directories" in err and "python -m two4two" in err
    assert not (tmp_path / "out").exists()
