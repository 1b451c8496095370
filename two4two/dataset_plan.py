"""Plan a Two4Two dataset: each folder's scenes drawn up front, resumably.

A dataset's folders are its splits and, after each split, its intervention sets
(``<split>_<attrs>``). :func:`plan_dataset` walks them in that order and gives
each a :class:`DirPlan`: the folder, its ``split_args.json`` and every scene it
will hold, in plan order. A folder's plan is drawn once and written to
``planned.jsonl``; a rerun reads it back, refuses one whose ``split_args`` no
longer match the config, and verifies a folder already marked complete (what
fails is planned again). Scene ids are drawn from a generator seeded by the
plan's identity, so a plan drawn again has the same ids. :func:`finish_split`
marks a rendered folder complete.

The local writer (:mod:`two4two.dataset`) and the SLURM job arrays
(:mod:`two4two.cluster`) render from these plans; the file layout is in
:mod:`two4two.dataset` and ``docs/datasets.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from two4two import utils
from two4two.bias import Sampler
from two4two.dataset_config import (
    DatasetConfig,
    SplitConfig,
    _derive_seed,
    intervention_dirname,
    make_sampler,
)
from two4two.dataset_folder import (
    INTERVENTION,
    PARAMETERS,
    PLANNED,
    SPLIT_ARGS,
    DatasetError,
    foreign_split,
    read_json,
    verify_complete,
    write_json,
)
from two4two.scene_parameters import SceneParameters, load_jsonl, new_scene_id, write_jsonl

__all__ = ["DirPlan", "finish_split", "iter_dataset_dirs", "plan_dataset"]

# split_args keys that must match for a rerun to continue an existing split
_IDENTITY_KEYS = ("sampler", "sampler_config", "n_samples", "unbiased", "resolution",
                  "render_samples", "seed", "modified_attributes")
# ... and these too, which do not change the plan (nor the ids drawn from it), only the
# images: a split is rendered on one device. A split_args.json written before a key
# existed holds its default.
_RENDER_KEYS = {"render_device": "cpu"}


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


def iter_dataset_dirs(configs: Iterable[DatasetConfig]) -> Iterator[Path]:
    """All directories the configs write (splits and intervention dirs), in render order."""
    for config in configs:
        for split in config.split:
            yield Path(config.output_dir) / split.name
            for attrs in split.interventions:
                yield Path(config.output_dir) / intervention_dirname(split.name, attrs)
