"""Simulated participants for a study: test the analysis, plan the sample size.

The generative model (log-odds scale) for participant ``j`` in condition ``c``
answering an attribute question whose ground truth is known:

    P(correct) = expit(alpha + beta_c + u_j),   u_j ~ Normal(0, participant_sd^2)

``alpha = logit(reference_accuracy)`` (a typical participant of the reference
condition), ``beta_c`` the condition's effect (``log_odds_effects``, 0 for the
reference). ``beta_c`` is a *conditional* log-odds ratio (for one participant);
the population-averaged log-odds ratio that a cluster-robust logistic
regression estimates is smaller in magnitude and is given in the truth as
``marginal_log_odds_ratio`` (by Gauss-Hermite quadrature over ``u``).
Attributes with unknown truth get a fair coin; prediction tasks are answered
like the model with the same probability; every check is passed; consent given;
the device question (if asked) answered with its first choice.

:func:`simulate` returns rows keyed by the export tags of Qualtrics' CSV export
(:func:`dubfiv.study.qsf.responses_csv.write_responses_csv` writes them as that
file), and
:func:`estimate_power` repeats the analysis on many simulated studies
(``docs/study_analysis.md``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np

from dubfiv.study.content import Study
from dubfiv.study.qsf.reader import TAG_DEVICE
from dubfiv.study.results.condition_effect import (
    ParticipantAccuracy,
    cluster_robust_logit,
    default_reference,
)
from dubfiv.study.results.responses import ResultsError

__all__ = [
    "Simulation",
    "SimulationConfig",
    "estimate_power",
    "simulate",
]

_START = dt.datetime(2024, 5, 1, 9, 0, 0)


@dataclasses.dataclass
class SimulationConfig:
    """Parameters of :func:`simulate` (see the module docstring for the model)."""

    #: Participants per condition (all pass every exclusion rule).
    n_per_condition: int = 50
    #: Accuracy of a typical participant (``u = 0``) in the reference condition.
    reference_accuracy: float = 0.6
    #: Condition key -> conditional log-odds effect vs the reference (absent: 0).
    log_odds_effects: dict[str, float] = dataclasses.field(default_factory=dict)
    #: SD of the participants' random intercepts (log-odds).
    participant_sd: float = 1.0
    #: Reference condition (default :func:`default_reference`).
    reference: str | None = None
    #: Share of attribute answers left unanswered (written as ``-99``).
    missing_rate: float = 0.0
    #: Median of the simulated ``Duration (in seconds)`` (log-normal, sigma 0.3);
    #: ``None``: the study's estimate (``Study.estimated_minutes``), else 900 s. A
    #: third of the median (the default ``min_duration_s``) is 3.7 sigma below it.
    median_duration_s: float | None = None
    seed: int = 0

    def check(self, study: Study) -> str:
        """Validate against ``study``; return the reference condition."""
        keys = [c.key for c in study.conditions]
        ref = self.reference or default_reference(keys)
        problems = []
        if ref not in keys:
            problems.append(f"`reference` {ref!r} is not a condition of the study {keys}")
        unknown = sorted(set(self.log_odds_effects) - set(keys))
        if unknown:
            problems.append(f"`log_odds_effects` names unknown condition(s) {unknown}; "
                            f"conditions: {keys}")
        if self.log_odds_effects.get(ref, 0.0) != 0.0:
            problems.append(f"`log_odds_effects`[{ref!r}] must be 0: it is the reference")
        if not 0 < self.reference_accuracy < 1:
            problems.append(f"`reference_accuracy` must be in (0, 1), got "
                            f"{self.reference_accuracy}")
        if self.n_per_condition < 1 or self.participant_sd < 0:
            problems.append("`n_per_condition` must be >= 1 and `participant_sd` >= 0")
        if not 0 <= self.missing_rate < 1:
            problems.append(f"`missing_rate` must be in [0, 1), got {self.missing_rate}")
        if not any(a.relevant is not None for a in study.attributes):
            problems.append("the study has no attribute with known ground truth "
                            "(Attribute.relevant)")
        if problems:
            raise ResultsError("cannot simulate: " + "; ".join(problems))
        return ref


@dataclasses.dataclass
class Simulation:
    """Simulated responses: CSV rows (column tag -> cell), the truth, the outcomes."""

    rows: list[dict[str, str]]
    truth: dict[str, Any]
    participants: list[ParticipantAccuracy]


def _expit(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x)))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def marginal_accuracy(log_odds: float, sd: float, n_nodes: int = 80) -> float:
    """``E[expit(log_odds + u)]`` for ``u ~ Normal(0, sd^2)`` (Gauss-Hermite)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    return float(np.sum(weights * _expit(log_odds + sd * nodes)) / np.sum(weights))


def _truth(study: Study, config: SimulationConfig, ref: str) -> dict[str, Any]:
    alpha = _logit(config.reference_accuracy)
    beta = {c.key: float(config.log_odds_effects.get(c.key, 0.0)) for c in study.conditions}
    marg = {k: marginal_accuracy(alpha + b, config.participant_sd) for k, b in beta.items()}
    return {"reference": ref, "reference_log_odds": alpha, "participant_sd":
            config.participant_sd, "conditional_log_odds_ratio": beta,
            "marginal_accuracy": marg,
            "marginal_log_odds_ratio": {k: _logit(m) - _logit(marg[ref])
                                        for k, m in marg.items()}}


def simulate(study: Study, config: SimulationConfig | None = None) -> Simulation:
    """Simulate ``config.n_per_condition`` complete responses per condition.

    Rows hold numeric codes (choice numbers, ``Finished`` ``1``) in the columns
    of :func:`dubfiv.study.qsf.responses_csv.write_responses_csv`; a response's ``ResponseId`` is
    ``R_sim<number>``.
    """
    config = config or SimulationConfig()
    ref = config.check(study)
    truth = _truth(study, config, ref)
    rng = np.random.default_rng(config.seed)
    alpha = truth["reference_log_odds"]
    model = [study.class_names.index(study.model_prediction(t)) for t in study.tasks]
    median_s = config.median_duration_s or (
        60.0 * study.estimated_minutes if study.estimated_minutes else 900.0)
    rows, participants = [], []
    n = 0
    for cond in study.conditions:
        beta = truth["conditional_log_odds_ratio"][cond.key]
        for _ in range(config.n_per_condition):
            p = float(_expit(alpha + beta + config.participant_sd * rng.standard_normal()))
            rid = f"R_sim{n:010d}"
            start = _START + dt.timedelta(seconds=61 * n)
            secs = float(median_s * math.exp(0.3 * rng.standard_normal()))
            row = {"StartDate": f"{start:%Y-%m-%d %H:%M:%S}",
                   "EndDate": f"{start + dt.timedelta(seconds=secs):%Y-%m-%d %H:%M:%S}",
                   "Status": "0", "IPAddress": "", "Progress": "100",
                   "Duration (in seconds)": str(round(secs)), "Finished": "1",
                   "RecordedDate": f"{start + dt.timedelta(seconds=secs + 1):%Y-%m-%d %H:%M:%S}",
                   "ResponseId": rid, "DistributionChannel": "anonymous",
                   "UserLanguage": "EN", "consent": "1",
                   "PROLIFIC_PID": f"{rng.integers(0, 2**63):024x}"[-24:],
                   "STUDY_ID": "5f0c0ffee0ddba11d00dfeed",
                   "SESSION_ID": f"{rng.integers(0, 2**63):024x}"[-24:],
                   "condition": cond.key}
            for chk in study.checks:
                row[chk.tag] = str(chk.correct)
            if study.device_choices:
                row[TAG_DEVICE] = "1"
            outcomes = []
            for i, attr in enumerate(study.attributes, start=1):
                if attr.relevant is None:
                    says_relevant = bool(rng.random() < 0.5)
                else:
                    correct = bool(rng.random() < p)
                    says_relevant = attr.relevant == correct
                if rng.random() < config.missing_rate:
                    row[f"relevance_{i}"] = "-99"
                elif attr.relevant is not None:
                    outcomes.append(int(says_relevant == attr.relevant))
                    row[f"relevance_{i}"] = "1" if says_relevant else "2"
                else:
                    row[f"relevance_{i}"] = "1" if says_relevant else "2"
                row[f"confidence_{i}"] = str(rng.integers(1, len(study.confidence_answers) + 1))
            for task, m in zip(study.tasks, model, strict=True):
                row[f"predict_{task.key}"] = str((m if rng.random() < p else 1 - m) + 1)
            rows.append(row)
            participants.append(ParticipantAccuracy(rid, cond.key, outcomes))
            n += 1
    return Simulation(rows, truth, participants)


def estimate_power(study: Study, config: SimulationConfig, n_simulations: int = 200,
                   alpha: float = 0.05) -> dict[str, float]:
    """Share of simulated studies whose primary analysis finds each condition's effect.

    Runs :func:`simulate` ``n_simulations`` times (seeds ``config.seed + i``) and
    fits :func:`dubfiv.study.results.condition_effect.cluster_robust_logit` on the
    outcomes; returns condition -> share with ``p < alpha`` (for a condition
    without effect: the false-positive rate).
    """
    ref = config.check(study)
    others = [c.key for c in study.conditions if c.key != ref]
    hits = dict.fromkeys(others, 0)
    keys = [c.key for c in study.conditions]
    for i in range(n_simulations):
        sim = simulate(study, dataclasses.replace(config, seed=config.seed + i))
        fit = cluster_robust_logit(sim.participants, keys, ref)
        for key in others:
            entry = fit["contrasts"].get(key)
            hits[key] += int(entry is not None and entry["p_value"] < alpha)
    return {k: v / n_simulations for k, v in hits.items()}
