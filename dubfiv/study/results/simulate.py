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
(``docs/study_analysis.md``). :func:`participant_plans` gives the same simulated
participants as answer plans for a browser test that plays them on the jsPsych page
(:func:`spoil_plan` makes one end early or fail a check; :func:`plan_row` is the
row the analysis should read back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np

from dubfiv.study.content import Study
from dubfiv.study.layout import attention_slots
from dubfiv.study.qsf.reader import TAG_CONSENT, TAG_DEVICE
from dubfiv.study.results.condition_effect import (
    ParticipantAccuracy,
    cluster_robust_logit,
    default_reference,
)
from dubfiv.study.results.responses import ResultsError

__all__ = [
    "SPOILS",
    "ParticipantPlan",
    "ParticipantPlans",
    "Simulation",
    "SimulationConfig",
    "answer_tags",
    "estimate_power",
    "participant_plans",
    "plan_row",
    "simulate",
    "spoil_plan",
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


# ---------------------------------------------------------------------- answer plans


@dataclasses.dataclass
class ParticipantPlan:
    """How one simulated participant answers the jsPsych page.

    ``answers``: export tag -> 1-based choice number (``consent``, ``device``, each
    check's tag, ``relevance_<i>``, ``confidence_<i>``, ``predict_<task key>``; the
    radio inputs of the page are named by these tags), only the questions the
    participant gets to. ``end``: how the page ends (``finished``, ``declined``,
    ``device``, ``comprehension``); ``exclusion``: the rule of
    :data:`dubfiv.study.results.exclusions.RULES` that will exclude the participant
    (``None``: kept, if not too fast or a duplicate).
    """

    participant: str
    condition: str
    answers: dict[str, int]
    duration_s: float
    prolific_pid: str
    end: str = "finished"
    exclusion: str | None = None
    row: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    """The row :func:`simulate` drew (metadata and answers before any :func:`spoil_plan`)."""


@dataclasses.dataclass
class ParticipantPlans:
    """Answer plans per condition key (study order), the truth, the simulation drawn."""

    plans: dict[str, list[ParticipantPlan]]
    truth: dict[str, Any]
    simulation: Simulation


def answer_tags(study: Study) -> list[str]:
    """The export tags of every question the page asks, in page order (consent page,
    comprehension page, attribute page, the prediction tasks with the other attention
    checks among them; :mod:`dubfiv.study.layout`)."""
    on_attributes, slots = attention_slots(study)
    n = len(study.attributes)
    tags = [TAG_CONSENT, *([TAG_DEVICE] if study.device_choices else [])]
    tags += [c.tag for c in study.checks_of("comprehension")]
    tags += [f"relevance_{i}" for i in range(1, n + 1)] + [c.tag for c in on_attributes]
    tags += [f"confidence_{i}" for i in range(1, n + 1)]
    for i, task in enumerate(study.tasks):
        tags += [c.tag for c in slots.get(i, [])] + [f"predict_{task.key}"]
    return tags


def participant_plans(study: Study, config: SimulationConfig | None = None
                      ) -> ParticipantPlans:
    """The participants of :func:`simulate` (same model, same draws for the same
    ``config``) as answer plans, all of which finish and pass every check.

    The caller picks who misbehaves: :func:`spoil_plan` (decline, wrong device, a
    failed comprehension or attention check); a duplicate attempt is a second plan
    played with the same ``prolific_pid``; an unfinished one is a plan the driver
    abandons part way. ``config.missing_rate`` must be 0: the page requires every
    answer.

    Raises:
        ResultsError: ``config`` does not fit the study, or ``missing_rate`` > 0.
    """
    config = config or SimulationConfig()
    if config.missing_rate:
        raise ResultsError(f"`missing_rate` must be 0 for answer plans (the jsPsych page "
                           f"requires every answer), got {config.missing_rate}")
    sim = simulate(study, config)
    tags = answer_tags(study)
    plans: dict[str, list[ParticipantPlan]] = {c.key: [] for c in study.conditions}
    for row in sim.rows:
        plans[row["condition"]].append(ParticipantPlan(
            row["ResponseId"], row["condition"], {t: int(row[t]) for t in tags},
            float(row["Duration (in seconds)"]), row["PROLIFIC_PID"], row=dict(row)))
    return ParticipantPlans(plans, sim.truth, sim)


SPOILS = ("declined", "device", "comprehension", "attention")
"""What :func:`spoil_plan` can do to a plan."""


def _wrong(correct: int, n_choices: int) -> int:
    return next(k for k in range(1, n_choices + 1) if k != correct)


def spoil_plan(study: Study, plan: ParticipantPlan, how: str) -> ParticipantPlan:
    """A copy of ``plan`` that ``how`` (one of :data:`SPOILS`): ``declined`` consent;
    answers the ``device`` question with a phone or tablet; answers the first
    ``comprehension`` check wrongly (the page ends after the comprehension page); or
    answers the first ``attention`` check wrongly (finishes, then excluded). The wrong
    choice is the first choice that is not the right one.

    Raises:
        ResultsError: unknown ``how``, or the study has no such question.
    """
    answers = dict(plan.answers)
    first_of = {kind: study.checks_of(kind)[:1] for kind in ("comprehension", "attention")}
    if how == "declined":
        kept, end, rule = [TAG_CONSENT], "declined", "declined"
        answers[TAG_CONSENT] = 2
    elif how == "device" and study.device_choices:
        kept, end, rule = [TAG_CONSENT, TAG_DEVICE], "device", "wrong_device"
        answers[TAG_DEVICE] = 2
    elif how in ("comprehension", "attention") and first_of[how]:
        chk = first_of[how][0]
        answers[chk.tag] = _wrong(chk.correct, len(chk.choices))
        rule = f"failed_{how}"
        if how == "comprehension":
            kept = [TAG_CONSENT, TAG_DEVICE, *(c.tag for c in study.checks_of(how))]
            end = "comprehension"
        else:
            kept, end = list(answers), "finished"
    else:
        what = how if how in SPOILS else None
        raise ResultsError(f"cannot spoil a plan with {how!r}: " + (
            f"the study has no {what} question" if what else f"choose one of {SPOILS}"))
    return dataclasses.replace(plan, answers={t: v for t, v in answers.items() if t in kept},
                               end=end, exclusion=rule, row=dict(plan.row))


def plan_row(study: Study, plan: ParticipantPlan) -> dict[str, str]:
    """The response row the analysis should read for ``plan`` (keys as in
    :func:`simulate`, for :func:`dubfiv.study.qsf.responses_csv.write_responses_csv`):
    its answers, the others empty, ``Finished`` 1 only for a plan that finishes."""
    row = {k: v for k, v in plan.row.items() if k not in answer_tags(study)}
    row.update({t: str(v) for t, v in plan.answers.items()})
    row["Finished"] = "1" if plan.end == "finished" else "0"
    return row

