"""Write Two4Two datasets to disk, resumably.

Layout of a split directory ``<output_dir>/<split>/``:

* ``parameters.jsonl`` -- one ``SceneParameters.state_dict()`` per line, in
  render order; a line is appended (and fsync'ed) only after its PNGs exist;
* ``<id>.png`` (RGB) and ``<id>_mask.png`` (uint8 labels 0..8), written by the
  renderer atomically (temporary file + rename);
* ``split_args.json`` -- sampler, sampler_config, split, n_samples, unbiased,
  interventions, resolution, render_samples, seed, render_device and ``complete``
  (a resume must match them all but split, interventions and complete);
* ``planned.jsonl`` -- while the split is being rendered: all its scenes, drawn
  up front and written atomically; removed once the split is complete.

An intervention directory ``<split>_<attrs>`` holds the same files plus
``intervention.json`` (``modified_attributes``, ``split_args``, ``dirname``);
its scenes are clones of the finished split's scenes, in the same order, with
only ``attrs`` resampled (``intervention=True``).

Resuming: a rerun re-reads ``planned.jsonl`` and ``parameters.jsonl`` (dropping
a truncated last line) and renders only the scenes that are not yet recorded
or whose PNGs are missing. A split marked complete is verified instead (every
line a scene, ``n_samples`` of them, every PNG decodes at the scene's size);
what fails to verify is rendered again (``docs/reliability.md``).

Scene ids are drawn from the seeded plan (UUID 4 in form, as upstream's), so a
plan made again from the same config has the same ids; that is how a lost or
cut ``parameters.jsonl`` line is restored.

Each folder's scenes are planned up front by :mod:`two4two.dataset_plan`
(:func:`plan_dataset`); this module renders what a plan still misses.

One process at a time: :func:`render_dataset_config` holds an exclusive lock
on the dataset folder (:class:`two4two.locking.FolderLock`, the file
``.two4two_render.lock``); a second render of the same folder stops at once
with one line naming the first (pid, host, since when).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from two4two.bias import Sampler
from two4two.cluster.shards import SHARDS
from two4two.dataset_config import DatasetConfig
from two4two.dataset_folder import (
    INTERVENTION,
    LOCK,
    PARAMETERS,
    PLANNED,
    SPLIT_ARGS,
    DatasetError,
    DatasetLockedError,
    split_is_complete,
)
from two4two.dataset_plan import DirPlan, finish_split, iter_dataset_dirs, plan_dataset
from two4two.files import append_line
from two4two.locking import FolderLock
from two4two.scene_parameters import SceneParameters, read_jsonl_lenient

__all__ = ["INTERVENTION", "LOCK", "PARAMETERS", "PLANNED", "SPLIT_ARGS", "DatasetError",
           "DatasetLockedError", "DirPlan", "RenderFn", "finish_split", "iter_dataset_dirs",
           "plan_dataset", "pooled_renderer", "render_dataset_config", "render_missing",
           "split_is_complete"]

RenderFn = Callable[..., Iterator[tuple[np.ndarray, np.ndarray, SceneParameters]]]
"""Signature of :func:`two4two.blender.render`."""


def _remove_stale_temp_files(directory: Path) -> None:
    """Delete hidden ``.*.tmp*`` files left by an interrupted atomic write."""
    for path in directory.glob(".*.tmp*"):
        path.unlink(missing_ok=True)


def _load_recorded(directory: Path, planned: Sequence[SceneParameters]) -> list[SceneParameters]:
    """Scenes already in ``parameters.jsonl`` (a truncated last line is cut off the file)."""
    path = directory / PARAMETERS
    if not path.exists():
        return []
    try:
        recorded, valid_bytes, tail = read_jsonl_lenient(path)
    except ValueError as error:
        raise DatasetError(f"{error}; delete {path} to re-render the split's missing images, "
                           "or set force_overwrite = true") from None
    if tail:
        os.truncate(path, valid_bytes)
    planned_ids = [p.id for p in planned[: len(recorded)]]
    if len(recorded) > len(planned) or [p.id for p in recorded] != planned_ids:
        raise DatasetError(
            f"{path} does not match {directory / PLANNED} (scenes in another order or "
            "from another plan); set force_overwrite = true to start the split over"
        )
    return recorded


def _missing_files(directory: Path, scenes: Sequence[SceneParameters]) -> list[SceneParameters]:
    """The scenes whose image or mask PNG is missing from ``directory``."""
    return [p for p in scenes if not (directory / p.filename).is_file()
            or not (directory / p.mask_filename).is_file()]


CRASH_RETRIES = 2
"""How often :func:`render_missing` restarts the workers after a Blender crash."""


def render_missing(directory: Path, planned: list[SceneParameters], config: DatasetConfig,
                   render_fn: RenderFn, progress: bool) -> None:
    """Render the planned scenes that are not recorded (or whose PNGs are gone).

    A worker that crashes by itself (:class:`~two4two.blender.WorkerCrashError`, e.g. a
    segmentation fault inside Blender) costs only its image: the render goes on with
    fresh workers from the files written, up to :data:`CRASH_RETRIES` times, with a
    note on stderr. Images are deterministic per scene, so the result is the same.
    """
    from two4two.blender import WorkerCrashError

    for attempt in range(CRASH_RETRIES + 1):
        try:
            return _render_missing_once(directory, planned, config, render_fn, progress)
        except WorkerCrashError as crash:
            if attempt == CRASH_RETRIES:
                raise
            print(f"two4two: {directory}: {str(crash).splitlines()[0]}; going on with fresh "
                  f"workers (restart {attempt + 1} of {CRASH_RETRIES})", file=sys.stderr,
                  flush=True)


def _render_missing_once(directory: Path, planned: list[SceneParameters],
                         config: DatasetConfig, render_fn: RenderFn, progress: bool) -> None:
    _remove_stale_temp_files(directory)
    recorded = _load_recorded(directory, planned)
    missing_files = _missing_files(directory, recorded)
    todo = missing_files + planned[len(recorded):]
    recorded_ids = {p.id for p in recorded}
    if not todo:
        return
    _check_values(directory, todo)
    params_path = directory / PARAMETERS
    bar = tqdm(total=len(planned), initial=len(planned) - len(todo), desc=directory.name,
               unit="img", disable=not progress)
    results = render_fn(
        todo, n_processes=config.n_processes, chunk_size=config.chunk_size,
        output_dir=directory, samples=config.render_samples,
        download_blender=config.download_blender, blender_dir=config.blender_dir,
        print_output=config.debug, print_cmd=config.debug,
    )
    expected = iter(todo)
    closer = contextlib.closing(results) if hasattr(results, "close") else contextlib.nullcontext()
    with bar, closer:
        for image, mask, params in results:
            want = next(expected, None)
            if want is None or params.id != want.id:
                raise DatasetError(f"{directory}: the renderer returned scene {params.id} out of "
                                   "order; this is a bug in the renderer")
            _check_rendered(directory, image, mask, want)
            if want.id not in recorded_ids:
                append_line(params_path, json.dumps(want.state_dict()))
            bar.update(1)
    if next(expected, None) is not None:
        raise DatasetError(f"{directory}: the renderer stopped early; rerun to finish the split")


def _check_values(directory: Path, scenes: Sequence[SceneParameters]) -> None:
    """Refuse, before anything is rendered, a scene outside ``check_values()``'s ranges
    (the renderer would draw it; a dataset must not hold it)."""
    for scene in scenes:
        try:
            scene.check_values()
        except ValueError as error:
            raise DatasetError(
                f"{directory}: scene {scene.id} is not valid ({error}); a dataset holds only "
                "valid scenes: fix the sampler's distributions, or set force_overwrite = true "
                "if the plan was written by another sampler") from None


def _check_rendered(directory: Path, image: np.ndarray, mask: np.ndarray,
                    params: SceneParameters) -> None:
    height, width = params.resolution
    if image.shape != (height, width, 3) or mask.shape != (height, width):
        raise DatasetError(
            f"{directory}: scene {params.id} rendered as image {image.shape} / mask "
            f"{mask.shape}, expected ({height}, {width}, 3) / ({height}, {width})"
        )
    for name in (params.filename, params.mask_filename):
        if not (directory / name).is_file():
            raise DatasetError(f"{directory / name}: the renderer did not write it")


def render_dataset_config(config: DatasetConfig, render_fn: RenderFn | None = None,
                          progress: bool = True, sampler: Sampler | None = None) -> list[Path]:
    """Render every split of ``config`` and its intervention sets (resumably).

    Args:
        config: a validated dataset config.
        render_fn: a function with the signature of :func:`two4two.blender.render`
            (tests pass a fake). Default: one :class:`two4two.blender.Renderer`
            pool for the whole dataset, so Blender starts once, not per split.
        progress: show tqdm progress bars.
        sampler: draw with this sampler instead of the one that ``config.sampler``
            and ``config.sampler_config`` name.

    Returns:
        the directories written (splits, then their intervention directories).

    Raises:
        DatasetError: an existing directory conflicts with the config, a scene
            fails ``check_values()`` (nothing of that split is rendered), or the
            dataset is being rendered as a SLURM job array (``.shards/`` exists).
        DatasetLockedError: another process is rendering into ``config.output_dir``.
        two4two.blender.RenderError: bpy is missing or a worker died (rerun to resume).
        OSError: the disk is full or read-only (what was written so far resumes).
    """
    with FolderLock(config.output_dir, name=LOCK, purpose="rendering",
                    error=DatasetLockedError):
        shards = Path(config.output_dir) / SHARDS
        if shards.is_dir():
            raise DatasetError(
                f"{config.output_dir} is being rendered as a SLURM job array ({shards} holds "
                "its shards): follow it with --status and finish it with --executor slurm, "
                f"or delete {shards} to render it here")
        if render_fn is not None:
            return _render_all(config, render_fn, progress, sampler)
        return _render_pooled(config, progress, sampler)


@contextlib.contextmanager
def pooled_renderer(config: DatasetConfig, n_processes: int | None = None,
                    threads: int | None = None) -> Iterator[RenderFn]:
    """A render function over one :class:`two4two.blender.Renderer` pool (Blender starts
    once for every folder), on ``config.render_device``; ``n_processes`` overrides
    ``config.n_processes``, ``threads`` the Cycles threads per worker."""
    from two4two.blender import Renderer

    workers = config.n_processes if n_processes is None else n_processes
    with Renderer(workers, samples=config.render_samples, device=config.render_device,
                  print_output=config.debug, print_cmd=config.debug,
                  threads=threads) as renderer:

        def pooled(params: Sequence[SceneParameters], n_processes: int = 0,
                   chunk_size: int = 1, output_dir: str | os.PathLike | None = None,
                   *, samples: int = config.render_samples, **_: Any,
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, SceneParameters]]:
            return renderer.render(params, chunk_size=chunk_size, output_dir=output_dir,
                                   samples=samples)

        yield pooled


def _render_pooled(config: DatasetConfig, progress: bool,
                   sampler: Sampler | None = None) -> list[Path]:
    """:func:`_render_all` with one :class:`two4two.blender.Renderer` pool."""
    with pooled_renderer(config) as pooled:
        return _render_all(config, pooled, progress, sampler)


def _render_all(config: DatasetConfig, render_fn: RenderFn, progress: bool,
                sampler: Sampler | None = None) -> list[Path]:
    """Render every folder of ``config`` with ``sampler`` (default: the config's)."""
    written = []
    for plan in plan_dataset(config, sampler, progress):
        if plan.planned is not None:
            render_missing(plan.directory, plan.planned, config, render_fn, progress)
            finish_split(plan.directory, plan.args, plan.n_samples)
        written.append(plan.directory)
    return written


