"""``dubfiv_train``: train the invertible network and its heads (or resume a run).

Examples::

    dubfiv_train --experiment config/model.toml --output_base_dir models --device cuda
    dubfiv_train --model M.toml --train T.toml --classifiers C.toml --output_base_dir models
    dubfiv_train --resume models/dubfiv_2024-05-01_12-30-45
    kill -TERM <pid>       # stops after the current step with a checkpoint (exit 143)
    torchrun --nproc_per_node=4 -m dubfiv.cli.train --experiment config/model.toml \\
        --output_base_dir models        # DistributedDataParallel, one process per GPU
    srun --ntasks-per-node=4 --gpus-per-task=1 dubfiv_train --experiment config/model.toml \\
        --output_base_dir models        # the same under SLURM, across nodes (examples/slurm/)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from dubfiv.cli import _args
from dubfiv.cli._oneline import OneLineParser, guarded

PROG = "dubfiv_train"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Train the invertible network with its linear heads on a Two4Two dataset, "
        "writing a run directory <output_base_dir>/<marker>_<UTC time>/ (configs, train.log, "
        "images/, models/models.torch, models/experiment.toml). Under `torchrun "
        "--nproc_per_node=N`, or as the tasks of a SLURM `srun --ntasks=N` step "
        "(examples/slurm/train.sbatch), the same command trains with "
        "DistributedDataParallel. SIGTERM, "
        "SIGINT (Ctrl-C; twice: at once) and SIGUSR1 stop after the current step with a "
        "checkpoint (exit status 128 + the signal number).",
    )
    config = parser.add_argument_group("experiment (one file, or the three-file form)")
    config.add_argument("--experiment", metavar="CONFIG",
                        help="experiment TOML with [model], [train] and [[classifiers]]")
    config.add_argument("--model", metavar="TOML", help="model TOML (three-file form)")
    config.add_argument("--train", metavar="TOML", help="train TOML (three-file form)")
    config.add_argument("--classifiers", metavar="TOML",
                        help="classifiers TOML (three-file form; optional)")
    parser.add_argument("--output_base_dir", metavar="DIR",
                        help="parent folder of the new run directory (required unless --resume)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its checkpoint, to the same "
                        "result an uninterrupted run reaches (a run killed before its first "
                        "checkpoint starts over); one trainer per run folder at a time")
    _args.add_device(parser)
    parser.add_argument("--dataset", metavar="NAME", help="override train.dataset")
    parser.add_argument("--dataset_dir", metavar="DIR", help="override train.dataset_dir")
    parser.add_argument("--n_train_samples", metavar="N", type=int,
                        help="override train.n_train_samples (training budget in samples)")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision: bfloat16 autocast (float16 with gradient scaling "
                        "on GPUs without bfloat16; on the CPU bfloat16 autocast, often slower)")
    parser.add_argument("--stop_after_samples", metavar="N", type=int,
                        help="stop and checkpoint after N samples (e.g. for a time-limited "
                        "job); continue later with --resume")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _check(args: argparse.Namespace, parser: OneLineParser) -> None:
    """Flag combinations argparse cannot express (exit 2 with one line)."""
    if args.resume:
        given = [("--experiment", args.experiment), ("--model", args.model),
                 ("--train", args.train), ("--classifiers", args.classifiers),
                 ("--dataset", args.dataset), ("--n_train_samples", args.n_train_samples),
                 ("--output_base_dir", args.output_base_dir)]
        clash = [flag for flag, value in given if value is not None]
        if clash:
            parser.error(f"--resume takes the config from the run directory; drop {clash[0]}")
        return
    if args.experiment and any([args.model, args.train, args.classifiers]):
        parser.error("give either --experiment or --model/--train/--classifiers, not both")
    if not args.experiment and not (args.model and args.train):
        parser.error("give --experiment CONFIG, or --model and --train (and --classifiers)")
    if not args.output_base_dir:
        parser.error("--output_base_dir is required for a new run")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_train``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    return guarded(PROG, parser, lambda: _run(args), run_dir="--resume", interrupted=(
        "interrupted; continue from the last checkpoint with --resume RUN_DIR"))


def _run(args: argparse.Namespace) -> int:
    from dubfiv.train import TrainingStopped

    try:
        run_dir = _train_or_resume(args)
    except TrainingStopped as stopped:
        if stopped.run_dir is not None:
            print(f"{PROG}: stopped by {stopped.signal_name} at {stopped.samples} samples; "
                  f"checkpoint written; continue with {PROG} --resume {stopped.run_dir}",
                  file=sys.stderr, flush=True)
        return 128 + stopped.signal_number
    if str(run_dir) not in ("", "."):
        print(run_dir)
    return 0


def _train_or_resume(args: argparse.Namespace) -> Path:
    from dubfiv import config as cfg
    from dubfiv.train import resume, train

    if args.resume:
        run_dir = resume(args.resume, device=args.device, amp=args.amp,
                         dataset_dir=args.dataset_dir, stop_after_samples=args.stop_after_samples,
                         progress=not args.quiet)
    else:
        if args.experiment:
            experiment = cfg.load_experiment(args.experiment)
            files = [args.experiment]
        else:
            experiment = cfg.load_experiment_parts(args.model, args.train, args.classifiers)
            files = [f for f in (args.model, args.train, args.classifiers) if f]
        given = {key: getattr(args, key) for key in ("dataset", "dataset_dir", "n_train_samples")}
        overrides = {key: value for key, value in given.items() if value is not None}
        if overrides:
            experiment = dataclasses.replace(
                experiment, train=dataclasses.replace(experiment.train, **overrides))
            flags = ", ".join(f"--{key}" for key in overrides)
            cfg.validate(experiment, f"{' + '.join(files)} with {flags}")
        run_dir = train(experiment, args.output_base_dir, device=args.device, amp=args.amp,
                        stop_after_samples=args.stop_after_samples, config_files=files,
                        progress=not args.quiet)
    return run_dir


if __name__ == "__main__":
    sys.exit(main())
