"""Library entry points: :func:`train` a new run, :func:`resume` an interrupted one."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dubfiv.checkpoint import load_checkpoint
from dubfiv.config import ConfigError, ExperimentConfig, load_experiment, save_experiment, to_dict
from dubfiv.train import distributed as dist_utils
from dubfiv.train import rundir
from dubfiv.train.errors import TrainingError
from dubfiv.train.trainer import CHECKPOINT_FORMAT, Trainer

__all__ = ["resume", "train"]


def _announce(message: str, context: dist_utils.DistContext, progress: bool) -> None:
    if context.is_main and progress:
        print(message, file=sys.stderr, flush=True)


def _run(
    config: ExperimentConfig,
    context: dist_utils.DistContext,
    make_dir: Callable[[], Path],
    prepare: Callable[[Trainer], None],
    amp: bool,
    stop_after_samples: int | None,
    progress: bool,
) -> Path:
    rundir.check_logger_available(config.train.logger)
    trainer = Trainer(config, context, None, amp=amp, progress=progress)
    run_dir = make_dir() if context.is_main else None
    log = rundir.open_log(run_dir)
    experiment_logger = rundir.make_experiment_logger(config.train.logger, run_dir,
                                                      to_dict(config))
    trainer.run_dir, trainer.log, trainer.experiment_logger = run_dir, log, experiment_logger
    try:
        if amp and context.device.type == "cpu":
            log.info("--amp on the CPU: bfloat16 autocast")
        _announce(f"run directory: {run_dir}", context, progress)
        prepare(trainer)
        trainer.wrap()
        record = trainer.fit(stop_after_samples)
        if record:
            heads = [f"head {i} accuracy {record[f'head_{i}_accuracy']:.3f}"
                     for i in range(len(config.classifiers))]
            _announce(f"validation: {record['bits_per_dim']:.4f} bits/dim"
                      + "".join(f", {h}" for h in heads), context, progress)
    except BaseException as error:
        log.error("%s: %s", type(error).__name__, error)
        raise
    finally:
        experiment_logger.close()
        rundir.close_log(log)
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
        config: the experiment.
        output_base_dir: parent of the new ``<marker>_<UTC time tag>`` directory.
        device: ``"cuda"``, ``"cpu"`` or ``None`` (CUDA when available).
        amp: mixed precision (bfloat16 autocast; float16 with gradient scaling on
            GPUs without bfloat16).
        stop_after_samples: stop (and checkpoint) once this many samples are seen;
            continue later with :func:`resume`.
        config_files: the config file(s) to copy into the run directory.
        progress: print the run directory and show a progress bar.
    """
    context = dist_utils.setup(device)

    def make_dir() -> Path:
        run_dir = rundir.make_run_dir(output_base_dir, config.marker)
        rundir.copy_configs(run_dir, config_files)
        save_experiment(config, run_dir / rundir.EXPERIMENT)
        return run_dir

    try:
        return _run(config, context, make_dir, lambda t: t.initialize(), amp,
                    stop_after_samples, progress)
    finally:
        dist_utils.teardown(context)


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

    Args:
        run_dir: a run directory written by :func:`train`.
        dataset_dir: where the dataset lives now (if it moved); nothing else can change.
        device, amp, stop_after_samples, progress: as for :func:`train`.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: run directory not found.")
    config_path = run_dir / rundir.EXPERIMENT
    try:
        config = load_experiment(config_path)
    except ConfigError as error:
        raise TrainingError(f"cannot resume: {error}") from error
    if dataset_dir is not None:
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, dataset_dir=dataset_dir))
    state = load_checkpoint(run_dir / rundir.CHECKPOINT)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(
            f"{run_dir / rundir.CHECKPOINT}: not a checkpoint of dubfiv_train (the paper's "
            "released model, say); it loads for analysis (dubfiv.runs.load_run) but cannot "
            "be resumed."
        )
    context = dist_utils.setup(device)

    def prepare(trainer: Trainer) -> None:
        trainer.load_state_dict(state)
        trainer.log.info("resumed from %s at %d samples", run_dir / rundir.CHECKPOINT,
                         state["samples_seen"])
        n = min(8, len(trainer.train_data))  # type: ignore[arg-type]
        images, _ = trainer._load_images(trainer.train_data, list(range(n)))
        from dubfiv.data import to_unit

        trainer.check_inverse(to_unit(images).to(context.device))

    try:
        return _run(config, context, lambda: run_dir, prepare, amp, stop_after_samples,
                    progress)
    finally:
        dist_utils.teardown(context)


logging.getLogger("dubfiv.train").addHandler(logging.NullHandler())
