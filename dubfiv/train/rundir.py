"""The run directory: its layout, the log file, and optional experiment loggers.

Layout (``DESIGN.md`` "Runs on disk")::

    <output_base_dir>/<marker>_<UTC time tag>/
        <the config file(s) as given>      copied verbatim
        train.log                          the log
        images/                            training images, samples, loss curves (PNG)
        models/models.torch                the checkpoint (see dubfiv.train.trainer)
        models/experiment.toml             the effective experiment config
"""

from __future__ import annotations

import datetime
import importlib.util
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dubfiv.train.errors import TrainingError

__all__ = [
    "CHECKPOINT",
    "EXPERIMENT",
    "LOG",
    "ExperimentLogger",
    "check_logger_available",
    "copy_configs",
    "make_experiment_logger",
    "make_run_dir",
    "open_log",
]

CHECKPOINT = Path("models") / "models.torch"
EXPERIMENT = Path("models") / "experiment.toml"
LOG = Path("train.log")
IMAGES = Path("images")


def time_tag(now: datetime.datetime | None = None) -> str:
    """UTC time tag of a run directory, e.g. ``2024-05-01_12-30-45``."""
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%d_%H-%M-%S")


def make_run_dir(output_base_dir: str | Path, marker: str) -> Path:
    """Create ``<output_base_dir>/<marker>_<UTC time tag>`` (``_2``, ``_3``... if taken)."""
    base = Path(output_base_dir)
    base.mkdir(parents=True, exist_ok=True)
    stem = f"{marker}_{time_tag()}"
    for n in range(1, 1000):
        run_dir = base / (stem if n == 1 else f"{stem}_{n}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        (run_dir / IMAGES).mkdir()
        (run_dir / "models").mkdir()
        return run_dir
    raise TrainingError(f"{base}: cannot create a new run directory {stem}_N.")


def copy_configs(run_dir: Path, sources: Sequence[str | Path]) -> list[Path]:
    """Copy the given config files into ``run_dir`` verbatim (names kept, made unique)."""
    copied = []
    for source in sources:
        source = Path(source)
        target = run_dir / source.name
        n = 2
        while target.exists():
            target = run_dir / f"{source.stem}_{n}{source.suffix}"
            n += 1
        shutil.copyfile(source, target)
        copied.append(target)
    return copied


def open_log(run_dir: Path | None, name: str = "dubfiv.train") -> logging.Logger:
    """A logger that appends to ``run_dir/train.log`` (no file if ``run_dir`` is None)."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if run_dir is not None:
        handler = logging.FileHandler(run_dir / LOG, encoding="utf-8")
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
