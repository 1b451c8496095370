"""Errors of training (caught by the CLI and printed as one line)."""

from __future__ import annotations

from dubfiv.errors import DubfivError

__all__ = ["InverseCheckError", "NonFiniteLossError", "TrainingError"]


class TrainingError(DubfivError, RuntimeError):
    """Training cannot start or continue (bad setup, missing package, ...)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, message: str, step: int, samples: int) -> None:
        super().__init__(message)
        self.step = step
        self.samples = samples


class InverseCheckError(TrainingError):
    """The flow does not invert its own output (checked before training)."""
