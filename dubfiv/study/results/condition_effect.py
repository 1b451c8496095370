"""Does a condition change how often participants judge attributes correctly?

Each participant answers several attribute questions, so answers are not
independent: a participant who understood the explanation gets most right.
The comparison therefore works on per-answer outcomes (``1`` = the answer
"relevant"/"irrelevant" matches :attr:`dubfiv.study.content.Attribute.relevant`)
clustered by participant:

* **primary** -- a logistic regression ``correct ~ condition`` (treatment coding,
  the reference condition as baseline) with a cluster-robust (sandwich)
  covariance by participant (:func:`cluster_robust_logit`). It gives Wald 95%
  intervals and p-values whose validity does not depend on the distribution of
  participants' abilities, it is deterministic and fast (so it can be simulated
  thousands of times for a power analysis), and its odds ratio is the
  *population-averaged* one: how the odds of a correct answer of a random
  participant change with the condition.
* **sensitivity** -- a mixed-effects logistic regression with a random
  intercept per participant (statsmodels' ``BinomialBayesMixedGLM``, variational
  Bayes; :func:`mixed_logit`). Its odds ratio is the *conditional* one (for a
  given participant), larger in magnitude than the population-averaged one when
  participants differ; its posterior intervals come from a mean-field
  approximation that is known to be too narrow, and it has no p-values -- hence
  not the primary analysis.
* the **raw accuracy difference** -- mean per-participant accuracy of a condition
  minus that of the reference, with a percentile interval from resampling
  participants within each condition (:func:`bootstrap_difference`).

See ``docs/study_analysis.md``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ParticipantAccuracy",
    "bootstrap_difference",
    "bootstrap_mean",
    "cluster_robust_logit",
    "compare_conditions",
    "default_reference",
    "long_format",
    "mixed_logit",
]

Z95 = 1.959963984540054


@dataclasses.dataclass
class ParticipantAccuracy:
    """One participant's attribute answers with known ground truth.

    ``outcomes`` are 0/1 per answered attribute (1 = correct), in the order of
    the study's attributes; unanswered and unknown-truth attributes are left out.
    """

    participant: str
    condition: str
    outcomes: list[int]

    @property
    def n(self) -> int:
        return len(self.outcomes)

    @property
    def accuracy(self) -> float | None:
        """Share correct, ``None`` without answers."""
        return sum(self.outcomes) / self.n if self.n else None


def default_reference(keys: Sequence[str]) -> str:
    """The reference condition: ``baseline`` if present, else the first."""
    return "baseline" if "baseline" in keys else keys[0]


def long_format(participants: Sequence[ParticipantAccuracy], conditions: Sequence[str]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-answer arrays ``(correct, condition index, participant index)``, each ``(N,)``.

    Only participants of ``conditions`` with at least one answer count; the
    condition index is the position in ``conditions``.
    """
    pos = {c: i for i, c in enumerate(conditions)}
    y, cond, group = [], [], []
    g = 0
    for p in participants:
        if p.condition not in pos or not p.n:
            continue
        y += p.outcomes
        cond += [pos[p.condition]] * p.n
        group += [g] * p.n
        g += 1
    return (np.asarray(y, dtype=float), np.asarray(cond, dtype=int),
            np.asarray(group, dtype=int))


def _design(cond: np.ndarray, n_conditions: int) -> np.ndarray:
    """Intercept + one indicator per non-reference condition (index 0 = reference)."""
    x = np.zeros((cond.size, n_conditions))
    x[:, 0] = 1.0
    for c in range(1, n_conditions):
        x[:, c] = cond == c
    return x


def _estimable(participants: Sequence[ParticipantAccuracy], conditions: list[str]
               ) -> tuple[list[str], dict[str, str]]:
    """Conditions the logistic models can use, and why the others cannot."""
    why: dict[str, str] = {}
    ok = []
    for key in conditions:
        outcomes = [o for p in participants if p.condition == key for o in p.outcomes]
        n_part = sum(1 for p in participants if p.condition == key and p.n)
        if n_part < 2:
            why[key] = f"{n_part} participant(s) with answers; need at least 2"
        elif sum(outcomes) in (0, len(outcomes)):
            state = "correct" if sum(outcomes) else "wrong"
            why[key] = f"all {len(outcomes)} answers {state}: the odds ratio is not estimable"
        else:
            ok.append(key)
    return ok, why


def _entry(log_or: float, se: float, lo: float, hi: float) -> dict[str, float]:
    return {"log_odds_ratio": log_or, "se": se, "log_odds_ratio_ci95": [lo, hi],
            "odds_ratio": math.exp(log_or), "odds_ratio_ci95": [math.exp(lo), math.exp(hi)]}


def cluster_robust_logit(participants: Sequence[ParticipantAccuracy],
                         conditions: Sequence[str], reference: str) -> dict[str, Any]:
    """Logistic regression ``correct ~ condition``, covariance clustered by participant.

    Returns ``{"reference_log_odds", "n_participants", "n_answers", "contrasts":
    {condition: {log_odds_ratio, se, log_odds_ratio_ci95, odds_ratio,
    odds_ratio_ci95, p_value}}, "not_estimable": {condition: reason}}``; 95%
    Wald intervals with statsmodels' small-sample correction of the cluster
    covariance; p-values two-sided (normal).
    """
    import statsmodels.api as sm

    order = [reference] + [c for c in conditions if c != reference]
    usable, why = _estimable(participants, order)
    out: dict[str, Any] = {"method": "logistic regression, cluster-robust by participant",
                           "reference": reference, "contrasts": {}, "not_estimable": why}
    if reference not in usable or len(usable) < 2:
        out["reference_log_odds"] = None
        return out
    y, cond, group = long_format(participants, usable)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = sm.GLM(y, _design(cond, len(usable)), family=sm.families.Binomial()).fit(
            cov_type="cluster", cov_kwds={"groups": group})
    out["warnings"] = sorted({str(w.message) for w in caught})
    params, bse, ci, pvals = (np.asarray(fit.params), np.asarray(fit.bse),
                              np.asarray(fit.conf_int(0.05)), np.asarray(fit.pvalues))
    out.update(reference_log_odds=float(params[0]), n_participants=int(group.max() + 1),
               n_answers=int(y.size))
    for c, key in enumerate(usable[1:], start=1):
        out["contrasts"][key] = {**_entry(float(params[c]), float(bse[c]), float(ci[c, 0]),
                                          float(ci[c, 1])),
                                 "p_value": float(pvals[c])}
    return out


def mixed_logit(participants: Sequence[ParticipantAccuracy], conditions: Sequence[str],
                reference: str) -> dict[str, Any]:
    """Mixed logistic regression, random intercept per participant (variational Bayes).

    Returns the same layout as :func:`cluster_robust_logit` with posterior
    means, posterior SDs (``se``) and mean +- 1.96 SD intervals (no p-values),
    plus ``participant_sd``, the estimated SD of the random intercepts (log-odds).
    """
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM

    order = [reference] + [c for c in conditions if c != reference]
    usable, why = _estimable(participants, order)
    out: dict[str, Any] = {"method": "mixed logistic regression, random intercept per "
                                     "participant (variational Bayes)",
                           "reference": reference, "contrasts": {}, "not_estimable": why}
    if reference not in usable or len(usable) < 2:
        out["reference_log_odds"] = None
        return out
    y, cond, group = long_format(participants, usable)
    n_groups = int(group.max() + 1)
    z = np.zeros((y.size, n_groups))
    z[np.arange(y.size), group] = 1.0
    model = BinomialBayesMixedGLM(y, _design(cond, len(usable)), z,
                                  ident=np.zeros(n_groups, dtype=int), vcp_p=2.0, fe_p=5.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit_vb()
    out["warnings"] = sorted({str(w.message) for w in caught})
    mean, sd = np.asarray(fit.fe_mean), np.asarray(fit.fe_sd)
    out.update(reference_log_odds=float(mean[0]), n_participants=n_groups,
               n_answers=int(y.size), participant_sd=float(np.exp(fit.vcp_mean[0])))
    for c, key in enumerate(usable[1:], start=1):
        m, s = float(mean[c]), float(sd[c])
        out["contrasts"][key] = _entry(m, s, m - Z95 * s, m + Z95 * s)
    return out


def bootstrap_mean(values: Sequence[float], rng: np.random.Generator, n_boot: int = 2000
                   ) -> np.ndarray:
    """``(n_boot,)`` means of ``values`` resampled with replacement."""
    a = np.asarray(values, dtype=float)
    return a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)


def bootstrap_difference(values: Sequence[float], reference: Sequence[float],
                         rng: np.random.Generator, n_boot: int = 2000) -> dict[str, Any]:
    """Mean of ``values`` minus mean of ``reference``, 95% percentile interval.

    Participants are resampled within each group (each group keeps its size).
    """
    diff = bootstrap_mean(values, rng, n_boot) - bootstrap_mean(reference, rng, n_boot)
    lo, hi = np.quantile(diff, [0.025, 0.975])
    return {"difference": float(np.mean(values) - np.mean(reference)),
            "ci95": [float(lo), float(hi)], "n_boot": n_boot}


def compare_conditions(participants: Sequence[ParticipantAccuracy], conditions: Sequence[str],
                       reference: str, seed: int = 0, n_boot: int = 2000,
                       mixed: bool = True) -> dict[str, Any]:
    """Per-condition accuracy summaries and every comparison with ``reference``.

    ``conditions`` are the study's condition keys; ``seed`` fixes the bootstrap.
    """
    if reference not in conditions:
        raise ValueError(f"reference condition {reference!r} is not one of {list(conditions)}")
    rng = np.random.default_rng(seed)
    acc = {c: [p.accuracy for p in participants if p.condition == c and p.n]
           for c in conditions}
    summaries = {}
    for c in conditions:
        values = acc[c]
        entry: dict[str, Any] = {"n_participants": len(values), "mean_accuracy": None,
                                 "sd": None, "ci95": None,
                                 "n_answers": sum(p.n for p in participants if p.condition == c)}
        if values:
            boot = bootstrap_mean(values, rng, n_boot)
            entry.update(mean_accuracy=float(np.mean(values)),
                         sd=float(np.std(values, ddof=1)) if len(values) > 1 else None,
                         ci95=[float(v) for v in np.quantile(boot, [0.025, 0.975])])
        summaries[c] = entry
    differences = {c: bootstrap_difference(acc[c], acc[reference], rng, n_boot)
                   for c in conditions if c != reference and acc[c] and acc[reference]}
    out = {"reference": reference, "conditions": summaries,
           "accuracy_difference": differences,
           "primary": cluster_robust_logit(participants, conditions, reference)}
    if mixed:
        out["sensitivity"] = mixed_logit(participants, conditions, reference)
    return out
