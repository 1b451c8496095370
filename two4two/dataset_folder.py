"""What a dataset folder holds, and the checks of a split marked complete.

The file names of a split folder, the dataset's errors, and
:func:`verify_complete`: a split marked complete is checked line by line and
image by image before it is trusted (``docs/reliability.md``). Kept apart from
:mod:`two4two.dataset_plan` (which plans) and :mod:`two4two.dataset` (which
renders) so that the planner, the writer and the cluster code share one
definition of a folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from two4two import utils
from two4two.errors import Two4TwoError
from two4two.locking import FolderLockedError
from two4two.scene_parameters import SceneParameters, load_jsonl, write_jsonl
from two4two.verify import bad_images

__all__ = ["INTERVENTION", "LOCK", "PARAMETERS", "PLANNED", "SPLIT_ARGS", "DatasetError",
           "DatasetLockedError", "foreign_split", "read_json", "read_json_or_none",
           "split_is_complete", "verify_complete", "write_json"]

PARAMETERS = "parameters.jsonl"
PLANNED = "planned.jsonl"
SPLIT_ARGS = "split_args.json"
INTERVENTION = "intervention.json"
LOCK = ".two4two_render.lock"
"""The lock file in a dataset folder while a render writes it."""


class DatasetError(Two4TwoError, RuntimeError):
    """A dataset directory cannot be written or resumed; the message names it and the fix."""


class DatasetLockedError(DatasetError, FolderLockedError):
    """Another process is rendering into the dataset folder (``holder`` says which)."""


def write_json(path: Path, data: Any) -> None:
    utils.atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read ({error}); delete it or set "
                           "force_overwrite = true") from None


def read_json_or_none(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def split_is_complete(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` holds a split marked complete in its ``split_args.json``."""
    args = read_json_or_none(Path(directory) / SPLIT_ARGS)
    return isinstance(args, dict) and bool(args.get("complete", False))


def read_intact_lines(path: Path) -> tuple[list[SceneParameters], str | None]:
    """The scenes of ``path`` up to its first damaged line, and what the damage is
    (``None``: every line is a scene; blank lines are skipped)."""
    if not path.is_file():
        return [], f"{path} is missing"
    lines = path.read_bytes().split(b"\n")
    scenes: list[SceneParameters] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            scenes.append(SceneParameters.load(json.loads(raw)))
        except ValueError as error:
            cut = number == len(lines)  # no newline after it: an interrupted append
            what = "is cut off" if cut else f"is not a scene ({error})"
            return scenes, f"{path}: line {number} {what}"
    return scenes, None


def same_scenes(a: Sequence[SceneParameters], b: Sequence[SceneParameters]) -> bool:
    return [json.dumps(p.state_dict(), sort_keys=True) for p in a] == \
        [json.dumps(p.state_dict(), sort_keys=True) for p in b]


def verify_complete(directory: Path, n_samples: int,
                     plan: Callable[[], list[SceneParameters]], progress: bool,
                     ) -> list[SceneParameters] | None:
    """Check a split marked complete; ``None`` if it is intact, else the plan that
    re-renders what failed (after removing the bad files and cutting
    ``parameters.jsonl`` back to its intact lines).

    Lines are checked first: a damaged or missing line is restored from the seeded plan,
    made again (possible when it reproduces the intact lines, ids included). Then every
    image and mask is opened (:func:`two4two.verify.bad_images`).
    """
    params_path = directory / PARAMETERS
    recorded, damage = read_intact_lines(params_path)
    if damage is None and len(recorded) != n_samples:
        damage = f"{params_path} holds {len(recorded)} scenes, expected {n_samples}"
    planned = recorded
    if damage is not None:
        planned = plan()
        if len(planned) != n_samples or not same_scenes(recorded, planned[: len(recorded)]):
            raise DatasetError(
                f"{damage}, and making the plan again does not give the intact lines back "
                "(a split rendered by an older version, or another sampler); set "
                "force_overwrite = true to render the split again"
            )
        _say(progress, f"{damage}; restoring it from the seeded plan and rendering the "
                       f"{n_samples - len(recorded)} scene(s) from there on again")
    bad = bad_images(directory, recorded, progress)
    if damage is None and not bad:
        return None
    if bad:
        name, (_, problem) = next(iter(bad.items()))
        _say(progress, f"{directory}: {len(bad)} image file(s) fail to verify (e.g. {name}: "
                       f"{problem}); rendering them again")
        for name in bad:
            (directory / name).unlink(missing_ok=True)
    if damage is not None:
        write_jsonl(params_path, recorded)
    return planned


def _say(progress: bool, message: str) -> None:
    if progress:
        tqdm.write(f"two4two: {message}")


def foreign_split(directory: Path, stored: dict[str, Any],
                   wanted: dict[str, Any]) -> list[SceneParameters] | None:
    """A split written by another tool (e.g. the released datasets): accept it if complete."""
    path = directory / PARAMETERS
    n_lines = len(load_jsonl(path)) if path.is_file() else 0
    if n_lines >= wanted["n_samples"]:
        return None
    raise DatasetError(
        f"{directory} was not written by this tool and holds {n_lines} of "
        f"{wanted['n_samples']} scenes; set force_overwrite = true to re-render it"
    )
