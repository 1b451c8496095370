"""Library entry points: :func:`train` a new run, :func:`resume` an interrupted one.

Both hold the run folder's lock (``.dubfiv_train.lock``, rank 0 only) for the
whole training, so that two trainers never write one run; both remove the
temporary files that killed writers left in ``models/`` and ``images/``; and
both stop cleanly on SIGTERM, SIGINT or SIGUSR1 (:mod:`dubfiv.train.signals`):
a checkpoint is written and :class:`~dubfiv.train.errors.TrainingStopped` raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dubfiv import rundir
from dubfiv.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from dubfiv.config import (
    ConfigError,
    ExperimentConfig,
    from_dict,
    load_experiment,
    save_experiment,
    to_dict,
    validate,
)
from dubfiv.train import distributed as dist_utils
from dubfiv.train import loggers
from dubfiv.train.errors import (
    RunLockedError,
    TrainingError,
    TrainingStopped,
    WrongCheckpointError,
)
from dubfiv.train.trainer import Trainer
from two4two.files import remove_stale
from two4two.locking import FolderLock

__all__ = ["LOCK", "resume", "train"]

LOCK = ".dubfiv_train.lock"
"""The lock file of a run folder being trained (``two4two.locking.FolderLock``)."""

_BOOKKEEPING = {"dataset_dir", "num_workers", "logger", "checkpoint_every_samples",
                "checkpoint_every_minutes"}
"""``train`` keys that may differ between a checkpoint and the run's experiment.toml:
they do not change the weights a resumed run reaches."""


def _announce(message: str, context: dist_utils.DistContext, progress: bool) -> None:
    if context.is_main and progress:
        print(message, file=sys.stderr, flush=True)


def _lock(run_dir: Path) -> FolderLock:
    """Take the run folder's lock (raises :class:`RunLockedError` naming the holder)."""
    lock = FolderLock(run_dir, name=LOCK, purpose="training", error=RunLockedError)
    try:
        lock.acquire()
    except OSError as error:
        if error.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        what = ("is on a read-only file system" if error.errno == errno.EROFS
                else "is not writable for you")
        raise TrainingError(
            f"{run_dir} {what} ({error.strerror}); training writes its checkpoint and log "
            "there: make it writable, or copy the run folder to a writable disk and resume "
            "the copy") from error
    return lock


def _remove_leftovers(run_dir: Path, log: logging.Logger) -> None:
    """Delete the temporary files of writers that died (a killed run) in the run folder."""
    for folder in (rundir.CHECKPOINT.parent, rundir.IMAGES):
        for path in remove_stale(run_dir / folder, ".*.tmp"):
            log.info("removed %s, left behind by a killed process", path)


def _run(
    config: ExperimentConfig,
    context: dist_utils.DistContext,
    make_dir: Callable[[], Path],
    prepare: Callable[[Trainer], None],
    amp: bool,
    stop_after_samples: int | None,
    progress: bool,
) -> Path:
    loggers.check_logger_available(config.train.logger)
    trainer = Trainer(config, context, None, amp=amp, progress=progress)
    run_dir = make_dir() if context.is_main else None
    log = loggers.open_log(run_dir)
    experiment_logger = loggers.make_experiment_logger(config.train.logger, run_dir,
                                                       to_dict(config))
    trainer.run_dir, trainer.log, trainer.experiment_logger = run_dir, log, experiment_logger
    try:
        if run_dir is not None:
            _remove_leftovers(run_dir, log)
        if amp and context.device.type == "cpu":
            log.info("--amp on the CPU: bfloat16 autocast")
        _announce(f"run directory: {run_dir}", context, progress)
        with trainer.signals:
            prepare(trainer)
            trainer.wrap()
            record = trainer.fit(stop_after_samples)
        if record:
            heads = [f"head {i} accuracy {record[f'head_{i}_accuracy']:.3f}"
                     for i in range(len(config.classifiers))]
            _announce(f"validation: {record['bits_per_dim']:.4f} bits/dim"
                      + "".join(f", {h}" for h in heads), context, progress)
    except TrainingStopped:
        raise  # logged by the trainer
    except BaseException as error:
        log.error("%s: %s", type(error).__name__, error)
        raise
    finally:
        experiment_logger.close()
        loggers.close_log(log)
    return run_dir if run_dir is not None else Path()


def train(
    config: ExperimentConfig,
    output_base_dir: str | Path,
    *,
    device: str | None = None,
    amp: bool = False,
    stop_after_samples: int | None = None,
    config_files: Sequence[str | Path] = (),
    progress: bool = True,
) -> Path:
    """Train ``config`` in a new run directory under ``output_base_dir``; return its path.

    Under ``torchrun`` every process calls this; rank 0 writes the files and the
    returned path is empty on the others.

    Args:
        config: the experiment (its values are checked first: :func:`dubfiv.config.validate`).
        output_base_dir: parent of the new ``<marker>_<UTC time tag>`` directory.
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available).
        amp: mixed precision (bfloat16 autocast; float16 with gradient scaling on
            GPUs without bfloat16).
        stop_after_samples: stop (and checkpoint) once this many samples are seen;
            continue later with :func:`resume`.
        config_files: the config file(s) to copy into the run directory.
        progress: print the run directory and show a progress bar.

    Raises:
        TrainingStopped: a SIGTERM, SIGINT or SIGUSR1 stopped the training after a
            checkpoint; continue with :func:`resume`.
    """
    validate(config)
    context = dist_utils.setup(device)
    with contextlib.ExitStack() as stack:

        def make_dir() -> Path:
            run_dir = rundir.make_run_dir(output_base_dir, config.marker,
                                           error=TrainingError)
            stack.enter_context(_lock(run_dir))
            rundir.copy_configs(run_dir, config_files)
            save_experiment(config, run_dir / rundir.EXPERIMENT)
            return run_dir

        try:
            return _run(config, context, make_dir, lambda t: t.initialize(), amp,
                        stop_after_samples, progress)
        finally:
            dist_utils.teardown(context)


def _check_run_folder(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: run directory not found; check the path, or start a "
                            "new run (`experiment` CONFIG)")
    if not (run_dir / rundir.EXPERIMENT).is_file():
        raise TrainingError(
            f"{run_dir}: not a run directory of dubfiv_train (it has no "
            f"{rundir.EXPERIMENT}); check the path, or start a new run (`experiment` CONFIG)")


def _comparable(experiment: Mapping[str, Any]) -> dict[str, Any]:
    train = {k: v for k, v in dict(experiment.get("train", {})).items()
             if k not in _BOOKKEEPING}
    return {**experiment, "train": train}


def _first_difference(a: Any, b: Any, key: str = "") -> tuple[str, Any, Any] | None:
    """The first dotted key where the plain configs ``a`` and ``b`` differ (or ``None``)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for name in list(a) + [k for k in b if k not in a]:
            found = _first_difference(a.get(name), b.get(name), f"{key}.{name}".lstrip("."))
            if found is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{key}[{i}]")
            if found is not None:
                return found
        return None
    return None if a == b else (key, a, b)


def _wrong_checkpoint(run_dir: Path, reason: str) -> WrongCheckpointError:
    return WrongCheckpointError(
        f"{run_dir / rundir.CHECKPOINT} does not belong to {run_dir / rundir.EXPERIMENT} "
        f"({reason}); was it copied from another run? Put back this run's own checkpoint, "
        "or start a new run (`experiment` CONFIG)")


def _check_same_experiment(run_dir: Path, state: Mapping[str, Any],
                           config: ExperimentConfig) -> None:
    """Raise :class:`WrongCheckpointError` if the checkpoint's stored experiment is not the
    run's (ignoring the bookkeeping keys); a stored experiment that does not parse is left
    to the weights' check."""
    stored = state.get("experiment")
    if not isinstance(stored, Mapping):
        return
    try:
        theirs = to_dict(from_dict(ExperimentConfig, stored, "checkpoint"))
    except ConfigError:
        return
    found = _first_difference(_comparable(theirs), _comparable(to_dict(config)))
    if found is not None:
        key, a, b = found
        raise _wrong_checkpoint(run_dir, f"{key} is {a!r} in the checkpoint but {b!r} in "
                                "the experiment")


def _load_state(trainer: Trainer, state: dict[str, Any], run_dir: Path) -> None:
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise _wrong_checkpoint(run_dir, f"the weights do not fit: {first}") from error


def _resume_config(run_dir: Path, dataset_dir: str | None) -> ExperimentConfig:
    try:
        config = load_experiment(run_dir / rundir.EXPERIMENT)
    except ConfigError as error:
        raise TrainingError(f"cannot resume: {error}") from error
    if dataset_dir is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, dataset_dir=dataset_dir))
    return config


def resume(
    run_dir: str | Path,
    *,
    device: str | None = None,
    amp: bool = False,
    dataset_dir: str | None = None,
    stop_after_samples: int | None = None,
    progress: bool = True,
) -> Path:
    """Continue the run in ``run_dir`` from its checkpoint, to the result an uninterrupted
    run would have reached (same data order, noise and optimiser state).

    A run folder without a checkpoint (killed during the initialisation) starts over
    with its experiment.toml (the same seed, so the same run).

    Args:
        run_dir: a run directory written by :func:`train`.
        dataset_dir: where the dataset lives now (if it moved); nothing else can change.
        device, amp, stop_after_samples, progress: as for :func:`train`.

    Raises:
        RunLockedError: another process trains in ``run_dir`` (the message names it).
        WrongCheckpointError: the checkpoint belongs to another experiment.
        TrainingStopped: as for :func:`train`.
    """
    run_dir = Path(run_dir)
    _check_run_folder(run_dir)
    context = dist_utils.setup(device)
    try:
        with contextlib.ExitStack() as stack:
            if context.is_main:
                stack.enter_context(_lock(run_dir))
            config = _resume_config(run_dir, dataset_dir)
            prepare = _prepare_resume(run_dir, config, context)
            return _run(config, context, lambda: run_dir, prepare, amp, stop_after_samples,
                        progress)
    finally:
        dist_utils.teardown(context)


def _prepare_resume(run_dir: Path, config: ExperimentConfig,
                    context: dist_utils.DistContext) -> Callable[[Trainer], None]:
    """What to do once the trainer is built: load the checkpoint (checked against the
    experiment), or start over where there is none."""
    path = run_dir / rundir.CHECKPOINT
    if not path.is_file():
        def start_over(trainer: Trainer) -> None:
            trainer.log.info("no checkpoint in %s (stopped during the initialisation?); "
                             "starting the run over from its experiment.toml", run_dir)
            trainer.initialize()

        return start_over
    state = load_checkpoint(path)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(
            f"{path}: not a checkpoint of dubfiv_train (the paper's released model, say); "
            "it loads for analysis (dubfiv.runs.load_run) but cannot be resumed."
        )
    _check_same_experiment(run_dir, state, config)

    def prepare(trainer: Trainer) -> None:
        _load_state(trainer, state, run_dir)
        trainer.log.info("resumed from %s at %d samples", path, state["samples_seen"])
        n = min(8, len(trainer.train_data))  # type: ignore[arg-type]
        images, _ = trainer._load_images(trainer.train_data, list(range(n)))
        from dubfiv.data import to_unit

        trainer.check_inverse(to_unit(images).to(context.device))

    return prepare


logging.getLogger("dubfiv.train").addHandler(logging.NullHandler())
