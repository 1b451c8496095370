"""Learning-rate schedules as pure functions of the samples seen.

All schedules take ``s`` = training samples seen *before* the current step
(0 for the first step) and ``n`` = the run's total training samples, and return
a learning rate (the same unit as ``lr``), as ``docs/flow.md`` states:

* ``constant``:        ``lr``
* ``cosine``:          ``lr * (cos(pi*s/n) + 1) / 2``
* ``fade_in_cosine``:  ``cosine(s) * min(1, s / fade_in_steps)`` (``fade_in_steps`` in samples;
  0 disables the warm-up)
* ``hill``:            ``lr * (cos(2*pi*s/n - pi) + 1) / 2`` (0 at both ends, ``lr`` half-way)

``s`` is clipped to ``[0, n]``. A schedule is a function of ``s`` only, so a
resumed run needs no scheduler state beyond the sample count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from dubfiv.config import OptimizerConfig, ScheduleConfig
from dubfiv.errors import ParameterError

__all__ = [
    "SCHEDULES",
    "constant",
    "cosine",
    "fade_in_cosine",
    "hill",
    "learning_rate",
    "set_learning_rate",
]


def _fraction(s: float, n: float) -> float:
    if n <= 0:
        raise ParameterError(f"total samples must be positive, got {n}")
    return min(max(s, 0.0), n) / n


def constant(lr: float, s: float, n: float) -> float:
    """``lr`` at every sample count."""
    _fraction(s, n)
    return lr


def cosine(lr: float, s: float, n: float) -> float:
    """Cosine decay from ``lr`` at ``s = 0`` to 0 at ``s = n``."""
    return lr * (math.cos(math.pi * _fraction(s, n)) + 1.0) / 2.0


def fade_in_cosine(lr: float, s: float, n: float, fade_in_steps: float) -> float:
    """Cosine decay times a linear warm-up over ``fade_in_steps`` samples (0: no warm-up)."""
    warm = 1.0 if fade_in_steps <= 0 else min(1.0, max(s, 0.0) / fade_in_steps)
    return cosine(lr, s, n) * warm


def hill(lr: float, s: float, n: float) -> float:
    """Raised cosine: 0 at ``s = 0``, ``lr`` at ``s = n/2``, 0 at ``s = n``."""
    return lr * (math.cos(2.0 * math.pi * _fraction(s, n) - math.pi) + 1.0) / 2.0


SCHEDULES = ("constant", "cosine", "fade_in_cosine", "hill")


def learning_rate(schedule: ScheduleConfig, lr: float, s: float, n: float) -> float:
    """The learning rate of ``schedule`` with peak ``lr`` after ``s`` of ``n`` samples."""
    if schedule.name == "constant":
        return constant(lr, s, n)
    if schedule.name == "cosine":
        return cosine(lr, s, n)
    if schedule.name == "fade_in_cosine":
        return fade_in_cosine(lr, s, n, schedule.fade_in_steps)
    if schedule.name == "hill":
        return hill(lr, s, n)
    raise ParameterError(f"unknown schedule {schedule.name!r}; known: {', '.join(SCHEDULES)}")


def set_learning_rate(
    optimizers: Iterable[torch.optim.Optimizer] | torch.optim.Optimizer,
    config: OptimizerConfig,
    s: float,
    n: float,
) -> float:
    """Set every parameter group's ``lr`` to the schedule's value; returns that value."""
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = [optimizers]
    value = learning_rate(config.schedule, config.lr, s, n)
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = value
    return value
