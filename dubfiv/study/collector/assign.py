"""Balanced assignment of conditions: the arm with the fewest counted sessions.

A session counts while it runs and once it finished; sessions that ended early
(declined, wrong device, failed comprehension check) do not, so screened-out
participants do not unbalance the arms. Ties are broken at random.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from dubfiv.errors import ParameterError

__all__ = ["COUNTED_ENDS", "choose_arm"]

COUNTED_ENDS = (None, "finished")
"""``end_reason`` values of the sessions an arm's count includes (``None``: running)."""


def choose_arm(arms: Sequence[str], counts: Mapping[str, int], rng: random.Random) -> str:
    """The arm of ``arms`` with the fewest sessions in ``counts`` (missing: 0); among
    equally few, one drawn with ``rng``.

    Raises:
        ParameterError: ``arms`` is empty.
    """
    if not arms:
        raise ParameterError("arms is empty: the study has no conditions", "arms")
    fewest = min(counts.get(arm, 0) for arm in arms)
    candidates = [arm for arm in arms if counts.get(arm, 0) == fewest]
    return candidates[0] if len(candidates) == 1 else rng.choice(candidates)
