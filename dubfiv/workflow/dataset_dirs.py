"""Reading the split folders of a rendered Two4Two dataset, lines kept verbatim.

A dataset folder (``docs/datasets.md``) holds one sub-folder per
split with a ``parameters.jsonl``; an *intervention split* also holds an
``intervention.json``. Used by :mod:`dubfiv.workflow.merge`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dubfiv.workflow.errors import WorkflowError
from two4two.dataset import INTERVENTION, PARAMETERS, PLANNED, SPLIT_ARGS
from two4two.scene_parameters import is_scene_id

__all__ = ["MergeError", "SourceSplit", "original_split_name", "read_split", "scan_dataset"]


class MergeError(WorkflowError):
    """The datasets cannot be merged; the message names the file and the fix."""


@dataclasses.dataclass
class SourceSplit:
    """One split folder of a source dataset.

    Attributes:
        root: the source dataset folder.
        name: the split's folder name.
        lines: ``parameters.jsonl`` lines (without newlines), in file order.
        ids, original_ids: each line's ``id`` and ``original_id``.
        resolutions: the distinct ``resolution`` values of the scenes.
        split_args, intervention: ``split_args.json`` / ``intervention.json`` (or None).
    """

    root: Path
    name: str
    lines: list[str]
    ids: list[str]
    original_ids: list[str | None]
    line_numbers: list[int]
    resolutions: set[tuple[int, ...]]
    split_args: dict[str, Any] | None
    intervention: dict[str, Any] | None

    @property
    def directory(self) -> Path:
        return self.root / self.name

    @property
    def parameters(self) -> Path:
        return self.directory / PARAMETERS

    @property
    def modified_attributes(self) -> list[str] | None:
        for table in (self.intervention or {}, self.split_args or {}):
            if isinstance(table.get("modified_attributes"), list):
                return list(table["modified_attributes"])
        return None



def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MergeError(f"{path}: cannot read ({error}); repair or delete it") from None
    if not isinstance(data, dict):
        raise MergeError(f"{path}: expected a JSON object")
    return data


def read_split(root: Path, name: str) -> SourceSplit:
    """Read one split folder of ``root`` (its lines are kept verbatim).

    Raises:
        MergeError: the split is unfinished, or a line is not a scene with an ``id`` and
            ``original_id`` of the form the renderer writes (a UUID: ids become file names).
    """
    directory = root / name
    split_args = _read_json(directory / SPLIT_ARGS)
    unfinished = (directory / PLANNED).exists() or (split_args or {}).get("complete") is False
    if unfinished:
        raise MergeError(f"{directory}: the split is not completely rendered (planned.jsonl "
                         "present or complete = false); finish rendering it first (rerun "
                         "python -m two4two CONFIG) or leave this dataset out")
    path = directory / PARAMETERS
    lines, ids, original_ids, numbers = [], [], [], []
    resolutions: set[tuple[int, ...]] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            state = json.loads(line)
        except ValueError as error:
            raise MergeError(f"{path}: line {number} is not valid JSON ({error}); the file "
                             "is damaged: re-render the split") from None
        if not isinstance(state, dict) or not isinstance(state.get("id"), str):
            raise MergeError(f"{path}: line {number} is not a scene (no 'id')")
        original = state.get("original_id")
        for key, value in (("id", state["id"]), ("original_id", original)):
            if value is not None and not is_scene_id(value):
                raise MergeError(f"{path}: line {number}: {key} {value!r} is not a scene id "
                                 "(a UUID; ids name the image files); the file is damaged or "
                                 "not from a Two4Two render: re-render the split")
        lines.append(line)
        ids.append(state["id"])
        original_ids.append(original)
        numbers.append(number)
        if isinstance(state.get("resolution"), list):
            resolutions.add(tuple(state["resolution"]))
    expected = (split_args or {}).get("n_samples")
    if (split_args or {}).get("complete") is True and isinstance(expected, int) \
            and expected != len(lines):
        raise MergeError(f"{path}: holds {len(lines)} scenes but {SPLIT_ARGS} says n_samples "
                         f"= {expected}; re-render the split")
    return SourceSplit(root, name, lines, ids, original_ids, numbers, resolutions, split_args,
                       _read_json(directory / INTERVENTION))


def scan_dataset(root: str | os.PathLike) -> dict[str, SourceSplit]:
    """The splits of a dataset folder (sub-folders with a ``parameters.jsonl``), by name.

    Raises:
        MergeError: the folder is missing, is a split itself, or has no splits.
    """
    root = Path(root)
    if not root.is_dir():
        raise MergeError(f"`sources` {root}: no such dataset folder")
    if (root / PARAMETERS).is_file():
        raise MergeError(f"`sources` {root}: this is a split folder; pass the dataset folder "
                         f"that holds it ({root.parent})")
    names = sorted(child.name for child in root.iterdir()
                   if child.is_dir() and (child / PARAMETERS).is_file())
    if not names:
        raise MergeError(f"`sources` {root}: no splits (sub-folders with {PARAMETERS}); is "
                         "it a rendered Two4Two dataset?")
    return {name: read_split(root, name) for name in names}


def original_split_name(split: SourceSplit, names: Sequence[str]) -> str | None:
    """The original split of an intervention split (None for an original split)."""
    if split.intervention is None:
        return None
    candidates = [((split.intervention.get("split_args") or {}).get("split")),
                  (split.split_args or {}).get("original_split")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate != split.name:
            return candidate
    prefixes = [n for n in names if split.name.startswith(n + "_")]
    return max(prefixes, key=len) if prefixes else None


