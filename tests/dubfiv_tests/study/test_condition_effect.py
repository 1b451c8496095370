"""The between-condition comparison recovers a simulated effect and finds none when there
is none; its pieces agree with independent computations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from dubfiv.study.qsf.responses_csv import write_responses_csv
from dubfiv.study.qsf.writer import write_qsf
from dubfiv.study.results.analysis import AnalysisConfig, ResultsError, analyse_study
from dubfiv.study.results.condition_effect import (
    ParticipantAccuracy,
    bootstrap_difference,
    cluster_robust_logit,
    mixed_logit,
)
from dubfiv.study.results.simulate import (
    SimulationConfig,
    estimate_power,
    marginal_accuracy,
    simulate,
)

KEYS = ["baseline", "inn", "concepts"]


@pytest.fixture()
def saved(study_dir):
    study, folder = study_dir
    study.save(folder)
    write_qsf(folder / "study.qsf", study)
    return study, folder


def _analyse(study, folder: Path, tmp_path: Path, config: SimulationConfig,
             mixed: bool = False) -> tuple[dict, dict]:
    sim = simulate(study, config)
    path = write_responses_csv(tmp_path / f"sim_{config.seed}.csv", study, sim.rows)
    res = analyse_study(path, folder, AnalysisConfig(mixed_model=mixed, n_boot=1000))
    return res, sim.truth


def test_recovers_a_known_effect(saved, tmp_path: Path) -> None:
    """inn: +1.0 conditional log-odds, concepts: -0.6, participant SD 1; 300 each
    (standard error ~0.1, so the tolerance of 0.25 is ~2.5 standard errors)."""
    study, folder = saved
    config = SimulationConfig(n_per_condition=300, reference_accuracy=0.6,
                              log_odds_effects={"inn": 1.0, "concepts": -0.6},
                              participant_sd=1.0, seed=11)
    res, truth = _analyse(study, folder, tmp_path, config)
    acc = res["accuracy"]
    assert acc["reference"] == "baseline" and res["n_used"] == 900
    for key in ("inn", "concepts"):
        true = truth["marginal_log_odds_ratio"][key]
        got = acc["primary"]["contrasts"][key]
        lo, hi = got["log_odds_ratio_ci95"]
        assert lo < true < hi, (key, true, got)
        assert got["log_odds_ratio"] == pytest.approx(true, abs=0.25)
        assert got["p_value"] < 0.01
        assert got["odds_ratio"] == pytest.approx(np.exp(got["log_odds_ratio"]))
        # the raw accuracy difference, against the simulated marginal accuracies
        diff = acc["accuracy_difference"][key]
        true_diff = truth["marginal_accuracy"][key] - truth["marginal_accuracy"]["baseline"]
        assert diff["ci95"][0] < true_diff < diff["ci95"][1]
    # |marginal| < |conditional| when participants differ
    assert abs(truth["marginal_log_odds_ratio"]["inn"]) < 1.0


def test_mixed_model_recovers_the_conditional_effect(saved, tmp_path: Path) -> None:
    """The sensitivity analysis estimates the conditional log-odds ratio (and the SD).

    Loosely: its variational posterior SDs (~0.1 here) are narrower than its errors
    across seeds (up to ~0.3), which is why it is not the primary analysis."""
    study, folder = saved
    config = SimulationConfig(n_per_condition=70, log_odds_effects={"inn": 1.2},
                              participant_sd=1.0, seed=21)
    res, truth = _analyse(study, folder, tmp_path, config, mixed=True)
    mixed = res["accuracy"]["sensitivity"]
    for key in ("inn", "concepts"):
        got = mixed["contrasts"][key]["log_odds_ratio"]
        assert got == pytest.approx(truth["conditional_log_odds_ratio"][key], abs=0.35)
    assert mixed["participant_sd"] == pytest.approx(1.0, abs=0.4)
    assert "p_value" not in mixed["contrasts"]["inn"]


def test_finds_no_effect_when_there_is_none(saved, tmp_path: Path) -> None:
    study, folder = saved
    config = SimulationConfig(n_per_condition=60, participant_sd=1.0, seed=3)
    res, truth = _analyse(study, folder, tmp_path, config)
    assert truth["marginal_log_odds_ratio"] == dict.fromkeys(KEYS, 0.0)
    for key in ("inn", "concepts"):
        got = res["accuracy"]["primary"]["contrasts"][key]
        lo, hi = got["log_odds_ratio_ci95"]
        assert lo < 0 < hi and got["p_value"] > 0.05
        olo, ohi = got["odds_ratio_ci95"]
        assert olo < 1 < ohi
        dlo, dhi = res["accuracy"]["accuracy_difference"][key]["ci95"]
        assert dlo < 0 < dhi


def test_false_positive_rate_and_power(saved) -> None:
    """Without an effect, across 100 seeds x 2 contrasts, p < 0.05 happens as often as
    0.05 allows (participant SD 1.5, so clustering matters: a fit that ignores it had
    38 of 200 here, the clustered one 12). An effect of 1.0 log-odds with 40 participants
    per condition is found nearly always."""
    study, _ = saved
    n_sim = 100
    null = estimate_power(study, SimulationConfig(n_per_condition=40, participant_sd=1.5,
                                                  seed=100), n_sim)
    false_pos = sum(round(v * n_sim) for v in null.values())
    # reject only if the count is implausible under a true rate of 0.05 (one-sided, 0.1%)
    assert false_pos <= binom.ppf(0.999, 2 * n_sim, 0.05) == 21, null
    n_sim = 40
    power = estimate_power(study, SimulationConfig(n_per_condition=40, seed=200,
                                                   log_odds_effects={"inn": 1.0}), n_sim)
    assert power["inn"] >= 0.75 and power["concepts"] <= 0.2, power


def _cluster_logit_by_hand(parts: list[ParticipantAccuracy], keys: list[str]
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Saturated logistic model: log-odds ratios and their cluster-robust SEs in closed
    form (delta method), with statsmodels' small-sample factor G/(G-1) (N-1)/(N-K)."""
    g, n_total, k = len(parts), sum(p.n for p in parts), len(keys)
    factor = g / (g - 1) * (n_total - 1) / (n_total - k)
    logit, var = [], []
    for key in keys:
        mine = [p for p in parts if p.condition == key]
        kk = np.array([sum(p.outcomes) for p in mine], dtype=float)
        nn = np.array([p.n for p in mine], dtype=float)
        phat = kk.sum() / nn.sum()
        logit.append(np.log(phat / (1 - phat)))
        # score of the condition's log-odds per participant: k_j - n_j p
        meat = np.sum((kk - nn * phat) ** 2)
        bread = nn.sum() * phat * (1 - phat)
        var.append(factor * meat / bread ** 2)
    logit, var = np.array(logit), np.array(var)
    return logit[1:] - logit[0], np.sqrt(var[1:] + var[0])


def test_cluster_robust_logit_matches_closed_form(saved) -> None:
    study, _ = saved
    sim = simulate(study, SimulationConfig(n_per_condition=30, missing_rate=0.2, seed=8,
                                           log_odds_effects={"concepts": 0.5}))
    fit = cluster_robust_logit(sim.participants, KEYS, "baseline")
    log_or, se = _cluster_logit_by_hand(sim.participants, KEYS)
    for i, key in enumerate(KEYS[1:]):
        got = fit["contrasts"][key]
        assert got["log_odds_ratio"] == pytest.approx(log_or[i], abs=1e-6)
        assert got["se"] == pytest.approx(se[i], rel=1e-5)
        assert got["log_odds_ratio_ci95"] == pytest.approx(
            [log_or[i] - 1.959964 * se[i], log_or[i] + 1.959964 * se[i]], rel=1e-5)
    # another reference: the contrasts flip sign
    flipped = cluster_robust_logit(sim.participants, KEYS, "concepts")
    assert flipped["contrasts"]["baseline"]["log_odds_ratio"] == pytest.approx(-log_or[1])


def test_bootstrap_difference_matches_the_normal_approximation() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.beta(6, 3, 200), rng.beta(4, 4, 150)
    got = bootstrap_difference(a, b, np.random.default_rng(1), n_boot=4000)
    assert got["difference"] == pytest.approx(a.mean() - b.mean())
    half = 1.96 * np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert got["ci95"][0] == pytest.approx(got["difference"] - half, abs=0.01)
    assert got["ci95"][1] == pytest.approx(got["difference"] + half, abs=0.01)


def test_degenerate_conditions_are_reported_not_fitted() -> None:
    rng = np.random.default_rng(2)
    parts = [ParticipantAccuracy(f"b{j}", "baseline", list(rng.integers(0, 2, 6)))
             for j in range(20)]
    parts += [ParticipantAccuracy(f"i{j}", "inn", [1] * 6) for j in range(20)]
    parts += [ParticipantAccuracy(f"c{j}", "concepts", list(rng.integers(0, 2, 6)))
              for j in range(20)]
    parts.append(ParticipantAccuracy("empty", "concepts", []))
    for fit in (cluster_robust_logit(parts, KEYS, "baseline"),
                mixed_logit(parts, KEYS, "baseline")):
        assert "all 120 answers correct" in fit["not_estimable"]["inn"]
        assert set(fit["contrasts"]) == {"concepts"} and fit["n_participants"] == 40
    lonely = cluster_robust_logit(parts[:20] + parts[-2:], KEYS, "baseline")
    assert lonely["contrasts"] == {} and "1 participant(s)" in lonely["not_estimable"][
        "concepts"]


def test_marginal_accuracy_matches_monte_carlo() -> None:
    rng = np.random.default_rng(4)
    u = rng.normal(0, 1.3, 400_000)
    for log_odds in (-1.0, 0.4, 2.0):
        mc = np.mean(1 / (1 + np.exp(-(log_odds + u))))
        assert marginal_accuracy(log_odds, 1.3) == pytest.approx(mc, abs=3e-3)
    assert marginal_accuracy(0.7, 0.0) == pytest.approx(1 / (1 + np.exp(-0.7)))


def test_choice_text_export_gives_the_same_analysis(saved, tmp_path: Path) -> None:
    study, folder = saved
    sim = simulate(study, SimulationConfig(n_per_condition=15, seed=6, missing_rate=0.1))
    res = [analyse_study(write_responses_csv(tmp_path / f"{n}.csv", study, sim.rows,
                                             numeric=n), folder,
                         AnalysisConfig(mixed_model=False, n_boot=200))
           for n in (True, False)]
    assert res[0]["accuracy"] == res[1]["accuracy"]
    assert res[0]["conditions"] == res[1]["conditions"]
    # the simulator's own outcomes are what the reader recovers from the CSV
    got = {p["response_id"]: p["n_correct"] for p in res[0]["accuracy"]["participants"]}
    assert got == {p.participant: sum(p.outcomes) for p in sim.participants}


def test_simulation_config_errors(saved) -> None:
    study, _ = saved
    with pytest.raises(ResultsError, match=r"unknown condition\(s\) \['nope'\]"):
        simulate(study, SimulationConfig(log_odds_effects={"nope": 1.0}))
    with pytest.raises(ResultsError, match="must be 0: it is the reference"):
        simulate(study, SimulationConfig(log_odds_effects={"baseline": 1.0}))
    with pytest.raises(ResultsError, match="`reference_accuracy` must be in"):
        simulate(study, SimulationConfig(reference_accuracy=1.0))
    blind = dataclasses.replace(study, attributes=[dataclasses.replace(a, relevant=None)
                                                   for a in study.attributes])
    with pytest.raises(ResultsError, match="no attribute with known ground truth"):
        simulate(blind, SimulationConfig())
