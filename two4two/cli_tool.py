"""``two4two_render_dataset CONFIG.toml`` / ``python -m two4two CONFIG.toml``: render datasets.

A thin command line over :func:`render_dataset`. :func:`render_dataset_split`
renders one split described by a :class:`RenderSplitArgs` (upstream's per-split
entry point). Every deliberate library
error (a :class:`~two4two.errors.Two4TwoError`: bad config, conflicting
directory, missing bpy, a dead render worker) prints one line
``two4two_render_dataset: error: ...`` to stderr and exits with status 1;
Ctrl-C exits with 130 and leaves a state that the same command resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from two4two import utils
from two4two.bias import Sampler
from two4two.cluster.settings import RENDER_DEVICES, SlurmSettings, parse_minutes
from two4two.dataset import DatasetError, RenderFn, render_dataset_config
from two4two.dataset_config import (
    DatasetConfig,
    DatasetConfigError,
    SplitConfig,
    load_dataset_configs,
)
from two4two.errors import Two4TwoError
from two4two.files import describe_os_error

__all__ = ["EXECUTORS", "PROG", "RenderSplitArgs", "dataset_status", "main", "render_dataset",
           "render_dataset_split"]

PROG = "two4two_render_dataset"


def _check_bpy() -> None:
    if importlib.util.find_spec("bpy") is None:
        raise DatasetError(
            "bpy (Blender as a Python module) is not installed; install it with "
            "pip install 'bpy==4.5.*' (needs Python 3.11)"
        )


EXECUTORS = ("local", "slurm")


def _configs(config_file: str | os.PathLike, render_device: str | None,
             slurm: SlurmSettings | Mapping[str, Any] | None) -> list[DatasetConfig]:
    """The file's datasets with the caller's overrides (``slurm``: a whole
    :class:`SlurmSettings`, or some of its fields)."""
    configs = load_dataset_configs(config_file)
    changed = []
    for config in configs:
        settings = slurm if isinstance(slurm, SlurmSettings) else \
            config.slurm.replace(**dict(slurm or {}))
        device = render_device or config.render_device
        if device not in RENDER_DEVICES:
            raise DatasetConfigError(f"render_device: expected one of "
                                     f"{', '.join(RENDER_DEVICES)}, got {device!r}")
        changed.append(dataclasses.replace(config, slurm=settings, render_device=device))
    return changed


@utils.keyword_aliases(config_path="config_file")
def render_dataset(config_file: str | os.PathLike, render_fn: RenderFn | None = None,
                   progress: bool = True, *, executor: str = "local",
                   slurm: SlurmSettings | Mapping[str, Any] | None = None, wait: bool = False,
                   render_device: str | None = None) -> list[Path]:
    """Render every dataset of a dataset TOML (``config/*.toml``; ``docs/two4two_api.md``
    for upstream's TOML form, which is read too).

    The whole file is validated before anything is sampled or rendered.
    Interrupted runs resume: rerun with the same file.

    Args:
        config_file: the dataset TOML (``config_path=`` works too).
        render_fn: the renderer (default :func:`two4two.blender.render`; local only).
        progress: show progress bars.
        executor: ``"local"`` (worker processes here) or ``"slurm"``: one job array
            task per shard of scenes, submitted through submitit
            (``docs/cluster_render.md``); returns once submitted unless ``wait``.
        slurm: the array's settings, overriding the file's ``[dataset.slurm]``: a
            :class:`~two4two.cluster.settings.SlurmSettings` or some of its fields
            (``{"partition": "gpu", "time": 120, "shard_size": 250}``).
        wait: with ``executor="slurm"``, follow the array with a progress bar until it
            ends, then assemble the dataset.
        render_device: ``"cpu"``, ``"cuda"`` or ``"optix"`` (default: the file's).

    Returns:
        the split and intervention directories that are complete, in render order
        (with ``executor="slurm"`` and no ``wait``: those finished so far).

    Raises:
        DatasetConfigError: the file is invalid (the message names the field).
        DatasetError: a directory conflicts with the config, or bpy is missing.
        two4two.blender.RenderError: a render worker failed.
        two4two.cluster.submit.ShardsFailedError: with ``wait``, shards did not finish.
    """
    if executor not in EXECUTORS:
        raise DatasetConfigError(f"executor: expected one of {', '.join(EXECUTORS)}, "
                                 f"got {executor!r}")
    configs = _configs(config_file, render_device, slurm)
    if executor == "slurm":
        return _render_on_slurm(configs, wait, progress)
    if render_fn is None:
        _check_bpy()
    written: list[Path] = []
    for config in configs:
        written += render_dataset_config(config, render_fn=render_fn, progress=progress)
    return written


def _render_on_slurm(configs: list[DatasetConfig], wait: bool, progress: bool) -> list[Path]:
    from two4two.cluster.submit import submit_dataset, wait_for_dataset

    _check_bpy()  # the tasks import it from the same installation
    complete: list[Path] = []
    for config in configs:
        submission = submit_dataset(config, progress=progress)
        if submission.submitted:
            print(f"{PROG}: submitted array {submission.array_id}: "
                  f"{len(submission.submitted)} task(s) of up to "
                  f"{config.slurm.shard_size} scenes into {config.output_dir}",
                  file=sys.stderr)
        if wait and len(submission.complete) < len(submission.folders):
            # follows this submission and any earlier task still in the queue
            complete += wait_for_dataset(config, submission, progress=progress)
        else:
            complete += submission.complete
    return complete


def dataset_status(config_file: str | os.PathLike, assemble: bool = True,
                   progress: bool = False) -> str:
    """The status table of every dataset of a TOML rendered with ``executor="slurm"``
    (per folder: shards done / running / pending / failed / missing, images/s, ETA).
    With ``assemble``, folders whose shards are all done are assembled first."""
    from two4two.cluster.status import format_status
    from two4two.cluster.submit import dataset_status as status_of

    tables = []
    for config in load_dataset_configs(config_file):
        rows = status_of(config, assemble=assemble, progress=progress)
        tables.append(format_status(config.output_dir, rows))
    return "\n\n".join(tables)


@dataclasses.dataclass(frozen=True)
class RenderSplitArgs:
    """One split to render (upstream's fields, in upstream's order).

    ``output_dir`` is the split's own folder (e.g. ``data/nobias/train``): its
    last part is the split's name, the rest the dataset folder.
    ``resample_attributes`` lists intervention sets, each an attribute name or a
    list of names (as a dataset TOML's ``interventions``); each set gets the folder
    ``<output_dir>_<attrs joined by _>`` with clones of all of the split's scenes.
    ``n_resample`` is how many scenes each set clones: ``None`` (or ``n_samples``)
    for all of them, the only number our writer supports. ``blender_dir`` and
    ``download_blender`` are accepted and ignored (``bpy`` needs no download).
    """

    sampler: Sampler
    n_samples: int
    output_dir: str
    force_overwrite: bool = False
    n_processes: int = 0
    blender_dir: str | None = None
    resample_attributes: Sequence[str | Sequence[str]] = ()
    n_resample: int | None = None
    download_blender: bool = False
    debug: bool = False


def _split_config(args: RenderSplitArgs) -> DatasetConfig:
    """The one-split dataset config of ``args``; errors name the field."""
    def fail(field: str, message: str) -> DatasetConfigError:
        return DatasetConfigError(f"RenderSplitArgs.{field}: {message}")

    if not isinstance(args.sampler, Sampler):
        raise fail("sampler", f"expected a two4two.Sampler, got {args.sampler!r}")
    if isinstance(args.n_samples, bool) or not isinstance(args.n_samples, int) \
            or args.n_samples < 1:
        raise fail("n_samples", f"must be a positive integer, got {args.n_samples!r}")
    if args.n_resample not in (None, args.n_samples):
        raise fail("n_resample", f"{args.n_resample!r}: every scene of the split is cloned "
                   "for each intervention set; leave it None or set it to n_samples")
    folder = Path(args.output_dir)
    if folder.name in ("", ".", ".."):
        raise fail("output_dir", f"{args.output_dir!r} must end in the split's folder name")
    sets = [[attrs] if isinstance(attrs, str) else list(attrs)
            for attrs in args.resample_attributes]
    for attrs in sets:
        try:
            args.sampler.check_attributes(attrs)
        except ValueError as error:
            raise fail("resample_attributes", str(error)) from None
    sampler_cls = type(args.sampler)
    return DatasetConfig(
        output_dir=str(folder.parent), split=[SplitConfig(folder.name, args.n_samples, sets)],
        sampler=f"{sampler_cls.__module__}.{sampler_cls.__qualname__}",
        force_overwrite=args.force_overwrite, n_processes=args.n_processes,
        download_blender=args.download_blender, blender_dir=args.blender_dir,
        debug=args.debug)


def render_dataset_split(args: RenderSplitArgs, *, render_fn: RenderFn | None = None,
                         progress: bool = True) -> list[Path]:
    """Render one split (and its intervention sets) with ``args.sampler``, through the
    dataset writer: resumable, locked, every scene checked before rendering.

    A rerun with the same arguments resumes; the sampler's settings are not part of
    what a rerun compares (only its class), so resume with the same sampler.

    Args:
        args: the split.
        render_fn: the renderer (default: a :class:`two4two.blender.Renderer` pool).
        progress: show progress bars.

    Returns:
        the split's folder, then its intervention folders.

    Raises:
        DatasetConfigError: a field of ``args`` is invalid (the message names it).
        DatasetError: the folder conflicts with ``args`` or bpy is missing.
        two4two.blender.RenderError: a render worker failed.
    """
    config = _split_config(args)
    if render_fn is None:
        _check_bpy()
    return render_dataset_config(config, render_fn=render_fn, progress=progress,
                                 sampler=args.sampler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Render the Two4Two datasets described by a dataset TOML (resumable: "
                    "rerun the same command after an interruption).",
    )
    parser.add_argument("config", help="dataset TOML, e.g. config/dataset_small.toml")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--render-device", choices=RENDER_DEVICES,
                        help="Cycles device (default: the TOML's render_device, else cpu)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: worker processes here (default); slurm: one job-array "
                             "task per shard, submitted through submitit")
    parser.add_argument("--status", action="store_true",
                        help="print per folder the shards done/running/pending/failed/"
                             "missing, images/s and ETA; assemble folders that are done")
    parser.add_argument("--wait", action="store_true",
                        help="with --executor slurm: follow the array until it ends, then "
                             "assemble")
    slurm = parser.add_argument_group("SLURM (override the TOML's [dataset.slurm])")
    slurm.add_argument("--shard-size", type=int, help="scenes per array task (default 500)")
    slurm.add_argument("--slurm-partition")
    slurm.add_argument("--slurm-time", help="minutes, or H:MM:SS, per task (default 60)")
    slurm.add_argument("--slurm-cpus-per-task", type=int,
                       help="render workers per task (default 1)")
    slurm.add_argument("--slurm-gpus-per-task", type=int)
    slurm.add_argument("--slurm-array-parallelism", type=int,
                       help="most tasks running at once (default 256)")
    slurm.add_argument("--slurm-account")
    slurm.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. qos=normal (repeatable)")
    return parser


def _slurm_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--slurm-*``/``--shard-size`` flags as :class:`SlurmSettings` fields."""
    def positive(flag: str, value: int | None, minimum: int = 1) -> int | None:
        if value is not None and value < minimum:
            raise DatasetConfigError(f"--{flag}: must be >= {minimum}, got {value}")
        return value

    extra = {}
    for pair in args.slurm_extra:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DatasetConfigError(f"--slurm-extra: expected KEY=VALUE, got {pair!r}")
        extra[key.strip().lstrip("-")] = value
    try:
        time = parse_minutes(args.slurm_time) if args.slurm_time is not None else None
    except ValueError as error:
        raise DatasetConfigError(f"--slurm-time: {error}") from None
    overrides: dict[str, Any] = {
        "partition": args.slurm_partition, "account": args.slurm_account, "time": time,
        "shard_size": positive("shard-size", args.shard_size),
        "cpus_per_task": positive("slurm-cpus-per-task", args.slurm_cpus_per_task),
        "gpus_per_task": positive("slurm-gpus-per-task", args.slurm_gpus_per_task, 0),
        "array_parallelism": positive("slurm-array-parallelism", args.slurm_array_parallelism),
    }
    if extra:
        overrides["extra"] = extra
    return overrides


def _run(args: argparse.Namespace) -> int:
    if args.status:
        print(dataset_status(args.config, progress=not args.no_progress))
        return 0
    written = render_dataset(args.config, progress=not args.no_progress,
                             executor=args.executor, slurm=_slurm_overrides(args),
                             wait=args.wait, render_device=args.render_device)
    for directory in written:
        print(directory)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``two4two_render_dataset``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except Two4TwoError as error:
        message = " ".join(str(error).split()) or type(error).__name__  # one line
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk, a read-only folder
        print(f"{PROG}: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
