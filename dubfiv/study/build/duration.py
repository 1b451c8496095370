"""How long the survey takes: an estimate from its pages, questions, words and images.

The estimate adds, over the pages of a participant who completes the survey
(:func:`dubfiv.study.layout.participant_pages`), the seconds of
:class:`Timing` per page, per word read, per image looked at, per answer and
per matrix row, for each condition; the consent text names the longest
condition's total, rounded up to whole minutes (:func:`estimate`).

The per-item seconds (:class:`Timing` defaults) are assumptions, not
measurements of this survey: reading at 240 words per minute (4 words/s), the
usual figure for attentive reading of plain text on screen; 4 s per page for
loading, scrolling and clicking *next*; 2 s per tutorial or task image; 10 s
per explanation image the first time it is studied (the explanation is what
participants have to work out the model from), 1 s per explanation image seen
again above the questions; 4 s per single-choice answer after reading it and
4 s per matrix row. Compare them with the durations of a pilot run
(Qualtrics' ``Duration (in seconds)`` column) and pass your own
:class:`Timing` if they differ.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dubfiv.study.content import Study, consent_with_duration
from dubfiv.study.layout import SurveyPage, participant_pages

__all__ = ["Estimate", "Timing", "estimate", "page_seconds"]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds a participant spends per item (see the module docstring)."""

    per_page: float = 4.0
    words_per_second: float = 4.0
    per_image: float = 2.0
    per_explanation_image: float = 10.0
    per_repeated_image: float = 1.0
    per_choice: float = 4.0
    per_matrix_row: float = 4.0


def page_seconds(page: SurveyPage, timing: Timing) -> float:
    """Estimated seconds of one page."""
    total = timing.per_page
    for item in page.items:
        total += item.words / timing.words_per_second
        if item.repeated:
            total += item.images * timing.per_repeated_image
        elif item.study_images:
            total += item.images * timing.per_explanation_image
        else:
            total += item.images * timing.per_image
        if item.kind == "choice":
            total += timing.per_choice
        elif item.kind == "matrix":
            total += item.rows * timing.per_matrix_row
    return total


@dataclasses.dataclass
class Estimate:
    """Per condition: pages, questions and seconds; ``minutes``: the longest, rounded up."""

    per_condition: dict[str, dict[str, float]]
    minutes: int
    timing: Timing

    def to_dict(self) -> dict[str, Any]:
        return {"per_condition": self.per_condition, "minutes": self.minutes,
                "seconds_per_item": dataclasses.asdict(self.timing)}


def estimate(study: Study, timing: Timing | None = None) -> Estimate:
    """Estimate the time of a complete survey for each condition of ``study``."""
    timing = timing or Timing()
    per: dict[str, dict[str, float]] = {}
    for cond in study.conditions:
        pages = participant_pages(study, cond)
        seconds = sum(page_seconds(p, timing) for p in pages)
        per[cond.key] = {"pages": len(pages), "questions": sum(p.questions for p in pages),
                         "seconds": round(seconds, 1)}
    longest = max((v["seconds"] for v in per.values()), default=0.0)
    return Estimate(per, max(1, math.ceil(longest / 60.0)), timing)


def settle_consent(study: Study, tutorial: bool, attention_checks: bool,
                   timing: Timing | None = None) -> Estimate:
    """Write the consent text, which names the survey's estimated duration, into ``study``.

    The consent's own words count towards the duration, so the text is rewritten
    until the minutes it names are the minutes estimated with it (a fixed point,
    reached in one or two rounds; at most five, after which the last estimate is
    named; ``timing``: as for :func:`estimate`). Sets ``study.estimated_minutes``;
    returns the final estimate.
    """
    duration = estimate(study, timing)
    for _ in range(5):
        study.consent_text = consent_with_duration(duration.minutes, study.prolific, tutorial,
                                                   attention_checks)
        named, duration = duration.minutes, estimate(study, timing)
        if duration.minutes == named:
            break
    else:
        study.consent_text = consent_with_duration(duration.minutes, study.prolific, tutorial,
                                                   attention_checks)
    study.estimated_minutes = duration.minutes
    return duration
