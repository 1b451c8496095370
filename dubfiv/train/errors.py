"""Errors of training (caught by the CLI and printed as one line)."""

from __future__ import annotations

import errno as errnos
from collections.abc import Sequence
from pathlib import Path

from dubfiv.errors import DubfivError
from two4two.locking import FolderLockedError

__all__ = ["CheckpointWriteError", "InverseCheckError", "NonFiniteLossError", "RunLockedError",
           "TrainingError", "TrainingStopped", "WrongCheckpointError"]


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


class RunLockedError(TrainingError, FolderLockedError):
    """Another process trains in the run folder; ``holder`` names it (pid, host, since)."""


class CheckpointWriteError(TrainingError):
    """A checkpoint could not be written (full disk, read-only folder); the previous one is
    kept. ``errno`` is the failed write's error number."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    @classmethod
    def of(cls, error: OSError, path: Path, run_dir: Path,
           kept: Sequence[int]) -> CheckpointWriteError:
        """The error for a failed write of ``path``; ``kept``: the samples of the previous
        checkpoint (empty if there is none)."""
        folder = path.parent
        fixes = {errnos.ENOSPC: f"free some space in {folder}",
                 errnos.EDQUOT: f"free some space within your quota in {folder}",
                 errnos.EROFS: f"{folder} is on a read-only file system; make it writable"}
        fix = fixes.get(error.errno or 0, f"make {folder} writable")
        previous = (f"the previous checkpoint ({kept[-1]} samples) is kept" if kept
                    else "no checkpoint had been written yet")
        return cls(f"cannot write the checkpoint {path}: {error.strerror or error}; "
                   f"{previous}; {fix}, then continue with `resume` {run_dir}",
                   errno=error.errno)


class WrongCheckpointError(TrainingError):
    """The run's checkpoint was written for another experiment than its experiment.toml."""


class TrainingStopped(TrainingError):
    """Training stopped on a signal (SIGTERM, SIGINT, SIGUSR1) after writing a checkpoint.

    Attributes:
        signal_number: the signal (a command exits with ``128 + signal_number``).
        signal_name: ``"SIGTERM"`` ...
        samples: training samples seen at the checkpoint.
        run_dir: the run folder to resume (``None`` on processes other than rank 0).
    """

    def __init__(self, message: str, signal_number: int, signal_name: str, samples: int,
                 run_dir: Path | None) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.signal_name = signal_name
        self.samples = samples
        self.run_dir = run_dir
