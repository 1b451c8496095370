"""Training's logs: the run folder's ``train.log`` and the optional experiment loggers
(``train.logger``: none, tensorboard or wandb).

The run folder's layout is :mod:`dubfiv.rundir` (``docs/runs.md``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dubfiv.rundir import LOG
from dubfiv.train.errors import TrainingError

__all__ = [
    "ExperimentLogger",
    "QuietFileHandler",
    "check_logger_available",
    "close_log",
    "make_experiment_logger",
    "open_log",
]


class QuietFileHandler(logging.FileHandler):
    """A ``FileHandler`` that drops a record it cannot write (a full or read-only disk)
    instead of printing Python's ``--- Logging error ---`` traceback to stderr; the
    failed writes are counted in :attr:`failures`. The failure that matters (the next
    checkpoint) is reported by the trainer as one line."""

    failures = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.failures += 1

    def flush(self) -> None:
        try:
            super().flush()
        except OSError:
            self.failures += 1

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self.failures += 1


def open_log(run_dir: Path | None, name: str = "dubfiv.train") -> logging.Logger:
    """A logger that appends to ``run_dir/train.log`` (no file if ``run_dir`` is None); a
    write that fails is dropped quietly (:class:`QuietFileHandler`)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if run_dir is not None:
        handler = QuietFileHandler(run_dir / LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


def close_log(logger: logging.Logger) -> None:
    """Flush and detach the log file."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


# --------------------------------------------------------------------------- experiment loggers


_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_logger_available(kind: str) -> None:
    """Raise :class:`TrainingError` if ``train.logger`` asks for a package that is missing."""
    if kind == "none":
        return
    package = _PACKAGES.get(kind)
    if package is None:
        raise TrainingError(f"train.logger = {kind!r}: unknown; use none, tensorboard or wandb.")
    if importlib.util.find_spec(package) is None:
        raise TrainingError(
            f"train.logger = {kind!r} needs the {package!r} package, which is not installed. "
            f"Install it (pip install {package}) or set logger = \"none\"."
        )


class ExperimentLogger:
    """Scalar logging to nothing (the default); subclasses write TensorBoard or wandb."""

    def log(self, scalars: Mapping[str, float], samples: int) -> None:
        """Record ``scalars`` at ``samples`` training samples seen."""

    def close(self) -> None:
        """Flush and close."""


class _TensorBoard(ExperimentLogger):
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, scalars: Mapping[str, float], samples: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, global_step=samples)

    def close(self) -> None:
        self.writer.close()


class _Wandb(ExperimentLogger):
    def __init__(self, run_dir: Path, config: Mapping[str, Any]) -> None:
        import wandb

        self.run = wandb.init(project="dubfiv", dir=str(run_dir), name=run_dir.name,
                              config=dict(config), resume="allow", id=run_dir.name)

    def log(self, scalars: Mapping[str, float], samples: int) -> None:
        self.run.log({**scalars, "samples": samples})

    def close(self) -> None:
        self.run.finish()


def make_experiment_logger(
    kind: str, run_dir: Path | None, config: Mapping[str, Any]
) -> ExperimentLogger:
    """The logger ``train.logger`` asks for (a no-op one when ``run_dir`` is None)."""
    check_logger_available(kind)
    if run_dir is None or kind == "none":
        return ExperimentLogger()
    if kind == "tensorboard":
        return _TensorBoard(run_dir)
    return _Wandb(run_dir, config)
