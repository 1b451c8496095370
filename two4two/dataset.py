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

One process at a time: :func:`render_dataset_config` holds an exclusive lock
on the dataset folder (:class:`two4two.locking.FolderLock`, the file
``.two4two_render.lock``); a second render of the same folder stops at once
with one line naming the first (pid, host, since when).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from two4two import utils
from two4two.bias import Sampler
from two4two.cluster.shards import SHARDS
from two4two.dataset_config import (
    DatasetConfig,
    SplitConfig,
    _derive_seed,
    intervention_dirname,
    make_sampler,
)
from two4two.dataset_folder import (
    INTERVENTION,
    LOCK,
    PARAMETERS,
    PLANNED,
    SPLIT_ARGS,
    DatasetError,
    DatasetLockedError,
    foreign_split,
    read_json,
    split_is_complete,
    verify_complete,
    write_json,
)
from two4two.files import append_line
from two4two.locking import FolderLock
from two4two.scene_parameters import (
    SceneParameters,
    load_jsonl,
    new_scene_id,
    read_jsonl_lenient,
    write_jsonl,
)

__all__ = ["INTERVENTION", "LOCK", "PARAMETERS", "PLANNED", "SPLIT_ARGS", "DatasetError",
           "DatasetLockedError", "DirPlan", "RenderFn", "finish_split", "plan_dataset",
           "pooled_renderer", "render_dataset_config", "render_missing", "split_is_complete"]

RenderFn = Callable[..., Iterator[tuple[np.ndarray, np.ndarray, SceneParameters]]]
"""Signature of :func:`two4two.blender.render`."""

# split_args keys that must match for a rerun to continue an existing split
_IDENTITY_KEYS = ("sampler", "sampler_config", "n_samples", "unbiased", "resolution",
                  "render_samples", "seed", "modified_attributes")
# ... and these too, which do not change the plan (nor the ids drawn from it), only the
# images: a split is rendered on one device. A split_args.json written before a key
# existed holds its default.
_RENDER_KEYS = {"render_device": "cpu"}


# --------------------------------------------------------------------------- small file helpers


def _is_dataset_dir(directory: Path) -> bool:
    names = {p.name for p in directory.iterdir()}
    return not names or bool(names & {SPLIT_ARGS, PLANNED, PARAMETERS, INTERVENTION})


def _remove_dir(directory: Path) -> None:
    if not directory.exists():
        return
    if not directory.is_dir() or not _is_dataset_dir(directory):
        raise DatasetError(
            f"{directory}: force_overwrite would delete it, but it does not look like a "
            "Two4Two split (no split_args.json/parameters.jsonl); move it away by hand"
        )
    shutil.rmtree(directory)


def _remove_stale_temp_files(directory: Path) -> None:
    """Delete hidden ``.*.tmp*`` files left by an interrupted atomic write."""
    for path in directory.glob(".*.tmp*"):
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- planning


def _split_args(config: DatasetConfig, split: SplitConfig) -> dict[str, Any]:
    return {
        "sampler": config.sampler,
        "sampler_config": dict(config.sampler_config),
        "split": split.name,
        "n_samples": split.n_samples,
        "unbiased": config.unbiased,
        "interventions": [list(a) for a in split.interventions],
        "resolution": list(config.resolution),
        "render_samples": config.render_samples,
        "seed": config.split_seed(split),
        "render_device": config.render_device,
        "complete": False,
    }


def _check_identity(directory: Path, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key in (*_IDENTITY_KEYS, *_RENDER_KEYS):
        before = stored.get(key, _RENDER_KEYS.get(key))
        if before != wanted.get(key):
            raise DatasetError(
                f"{directory} was started with {key} = {before!r}, but the config "
                f"now says {wanted.get(key)!r}; restore the config or set "
                "force_overwrite = true to start the split over"
            )


def _assign_ids(scenes: Sequence[SceneParameters], args: dict[str, Any]) -> None:
    """Give ``scenes`` ids drawn from a generator seeded by the plan's identity (the
    split's name and the ``split_args`` that must match for a resume): the same plan
    gets the same ids, another plan (another seed, sampler or split) other ones. The
    scenes' attributes are drawn from numpy's global state, untouched by this."""
    identity = json.dumps({k: args.get(k) for k in ("split", *_IDENTITY_KEYS)},
                          sort_keys=True)
    seed = int.from_bytes(hashlib.sha256(identity.encode("utf-8")).digest()[:16], "big")
    rng = np.random.default_rng(seed)
    for scene in scenes:
        scene.id = new_scene_id(rng.bytes(16))


def _plan_split(sampler: Sampler, config: DatasetConfig, split: SplitConfig,
                progress: bool) -> list[SceneParameters]:
    draw = sampler.sample_unbiased if config.unbiased else sampler.sample
    scenes = []
    with utils.seeded(config.split_seed(split)):
        for _ in tqdm(range(split.n_samples), desc=f"plan {split.name}", unit="scene",
                      disable=not progress, leave=False):
            scene = draw()
            scene.resolution = tuple(config.resolution)  # type: ignore[assignment]
            scenes.append(scene)
    _assign_ids(scenes, _split_args(config, split))
    return scenes


def _plan_interventions(sampler: Sampler, originals: Sequence[SceneParameters],
                        attrs: list[str], args: dict[str, Any]) -> list[SceneParameters]:
    with utils.seeded(args["seed"]):
        scenes = sampler.make_interventions(originals, attrs)
    _assign_ids(scenes, args)
    return scenes


# --------------------------------------------------------------------------- rendering


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


def _prepare_dir(directory: Path, wanted_args: dict[str, Any],
                 plan: Callable[[], list[SceneParameters]],
                 progress: bool = False, verify: bool = True) -> list[SceneParameters] | None:
    """Load or create the plan of ``directory``; ``None`` if it is complete (and verified,
    with ``verify``)."""
    args_path, planned_path = directory / SPLIT_ARGS, directory / PLANNED
    if args_path.is_file():
        stored = read_json(args_path)
        if "complete" not in stored and not planned_path.exists():
            return foreign_split(directory, stored, wanted_args)
        _check_identity(directory, stored, wanted_args)
        if stored.get("complete") and not verify:
            return None
        if stored.get("complete"):
            repair = verify_complete(directory, wanted_args["n_samples"], plan, progress)
            if repair is None:
                if stored != {**wanted_args, "complete": True}:
                    write_json(args_path, {**wanted_args, "complete": True})
                return None
            write_jsonl(planned_path, repair)  # re-render what failed to verify
    if planned_path.is_file():
        try:
            planned = load_jsonl(planned_path)
        except ValueError as error:
            raise DatasetError(f"{error}; set force_overwrite = true to start over") from None
        if len(planned) != wanted_args["n_samples"]:
            raise DatasetError(f"{planned_path} holds {len(planned)} scenes, expected "
                               f"{wanted_args['n_samples']}; set force_overwrite = true")
    else:
        if directory.exists() and any(directory.iterdir()):
            raise DatasetError(
                f"{directory} exists and is not an unfinished Two4Two split (no {PLANNED}); "
                "move it away or set force_overwrite = true"
            )
        directory.mkdir(parents=True, exist_ok=True)
        planned = plan()
        write_jsonl(planned_path, planned)
    write_json(args_path, {**wanted_args, "complete": False})
    return planned


def finish_split(directory: Path, args: dict[str, Any], n_samples: int) -> None:
    """Mark ``directory`` complete once its ``parameters.jsonl`` holds ``n_samples`` scenes
    (``split_args.json`` gets ``complete = true``; ``planned.jsonl`` is removed)."""
    recorded = load_jsonl(directory / PARAMETERS) if (directory / PARAMETERS).exists() else []
    if len(recorded) != n_samples:
        raise DatasetError(f"{directory}: {len(recorded)} of {n_samples} scenes recorded "
                           "after rendering; rerun to finish the split")
    write_json(directory / SPLIT_ARGS, {**args, "complete": True})
    (directory / PLANNED).unlink(missing_ok=True)


@dataclasses.dataclass
class DirPlan:
    """One folder of a dataset (a split or an intervention set) with its plan.

    ``planned`` is every scene of the folder in plan order, or ``None`` when the
    folder is complete and verified (nothing to render).
    """

    directory: Path
    args: dict[str, Any]
    """Its ``split_args.json`` (without ``complete``'s final value)."""
    planned: list[SceneParameters] | None

    @property
    def n_samples(self) -> int:
        return int(self.args["n_samples"])


def _plan_split_dir(config: DatasetConfig, split: SplitConfig, sampler: Sampler,
                    progress: bool, verify: bool) -> DirPlan:
    output_dir = Path(config.output_dir)
    directory = output_dir / split.name
    args = _split_args(config, split)
    if config.force_overwrite:
        _remove_dir(directory)
        for attrs in split.interventions:
            _remove_dir(output_dir / intervention_dirname(split.name, attrs))
    planned = _prepare_dir(directory, args,
                           lambda: _plan_split(sampler, config, split, progress), progress,
                           verify)
    return DirPlan(directory, args, planned)


def _originals(split_dir: Path) -> list[SceneParameters]:
    """The scenes of a split in plan order: its plan while it is unfinished, else its
    ``parameters.jsonl`` (the same lines once it is rendered)."""
    planned = split_dir / PLANNED
    return load_jsonl(planned if planned.is_file() else split_dir / PARAMETERS)


def _plan_intervention_dir(config: DatasetConfig, split: SplitConfig, split_plan: DirPlan,
                           attrs: list[str], sampler: Sampler, progress: bool,
                           verify: bool) -> DirPlan:
    split_args = split_plan.args
    dirname = intervention_dirname(split.name, attrs)
    directory = Path(config.output_dir) / dirname
    seed = _derive_seed(f"{split_args['seed']}/{dirname}")
    args = {**split_args, "split": dirname, "original_split": split.name,
            "modified_attributes": list(attrs), "interventions": [], "seed": seed}
    originals = _originals(split_plan.directory)

    def plan() -> list[SceneParameters]:
        return _plan_interventions(sampler, originals, attrs, args)

    planned = _prepare_dir(directory, args, plan, progress, verify)
    if planned is not None:
        if [p.original_id for p in planned] != [p.id for p in originals]:
            raise DatasetError(f"{directory}: its scenes are not clones of {split.name}'s "
                               "scenes in order; set force_overwrite = true to start over")
        write_json(directory / INTERVENTION, {"modified_attributes": list(attrs),
                                               "split_args": {**split_args, "complete": True},
                                               "dirname": dirname})
    return DirPlan(directory, args, planned)


def plan_dataset(config: DatasetConfig, sampler: Sampler | None = None,
                 progress: bool = False, verify: bool = True) -> Iterator[DirPlan]:
    """Plan (or load the plan of) every folder of ``config``, in render order: each
    split, then its intervention sets. Each folder gets its ``planned.jsonl`` and
    ``split_args.json`` as it is reached; a folder marked complete is verified (and what
    fails is planned again). Intervention sets are cloned from their split's plan, so
    they can be planned before the split is rendered. ``verify=False`` trusts folders
    marked complete (a status report). Hold the dataset's lock."""
    sampler = sampler if sampler is not None else make_sampler(config)
    for split in config.split:
        split_plan = _plan_split_dir(config, split, sampler, progress, verify)
        yield split_plan
        for attrs in split.interventions:
            yield _plan_intervention_dir(config, split, split_plan, attrs, sampler, progress,
                                         verify)


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


def iter_dataset_dirs(configs: Iterable[DatasetConfig]) -> Iterator[Path]:
    """All directories the configs write (splits and intervention dirs), in render order."""
    for config in configs:
        for split in config.split:
            yield Path(config.output_dir) / split.name
            for attrs in split.interventions:
                yield Path(config.output_dir) / intervention_dirname(split.name, attrs)
