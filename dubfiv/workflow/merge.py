"""Merge rendered Two4Two datasets split by split (``dubfiv_two4two_merge``).

A source is a dataset folder (``docs/datasets.md``); its splits are
the sub-folders holding a ``parameters.jsonl``. An *intervention split* is one
with an ``intervention.json``; its *original* split is named there (``split_args.
split``), else in its ``split_args.json`` (``original_split``), else it is the
longest split name that prefixes ``<original>_<attrs>``.

What the merged dataset holds:

* every split of every source; a split missing from some sources is merged from
  those that have it and reported (:attr:`MergeReport.partial`; ``strict=True``
  makes that an error);
* ``parameters.jsonl``: the sources' lines verbatim, concatenated in the order
  the sources are given; an intervention split follows the order of its merged
  original split (each scene placed at its original's position, by
  ``original_id``), so scenes and their originals stay aligned; where every
  source has the intervention split, its i-th scene is a clone of the i-th
  original; where only some have it, it covers only their originals (in the
  same order) -- pair by ``original_id`` then, not by position;
* the images and masks: hard links when the file system allows (else copies),
  or copies (``mode="copy"``), or absolute symbolic links (``mode="symlink"``);
* ``split_args.json`` per split: the keys all sources agree on, ``split``,
  ``n_samples``, ``complete = true`` and ``merged_from`` (each source's folder,
  split, scene count and own ``split_args``); intervention splits also get an
  ``intervention.json`` (``modified_attributes``, ``split_args`` of the merged
  original, ``dirname``, ``merged_from``); ``merge.json`` at the top records the
  sources, the link mode and the splits.

Checked before anything is written: every scene id is unique over all inputs (a
clash names both files and lines), every intervened scene's original is in the
same source's original split, every image and mask exists, splits are complete
(no ``planned.jsonl``, ``complete`` not false, ``n_samples`` lines), resolutions
agree, and intervention splits of the same name modify the same attributes.

The merge is built in a hidden temporary folder beside the destination and
renamed into place, so the destination is either absent, the old one, or the
complete new one. The temporary folders carry their process in their names
(:func:`two4two.files.make_owned_temp_dir`); a merge into the same destination
removes those of merges that were killed. An existing non-empty destination is refused unless
``force=True`` (then it is replaced). ``archive=True`` also packs
``<destination>.tar.gz`` (files stored by content; atomically).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from dubfiv.errors import ParameterError
from dubfiv.files import atomic_write, umask
from dubfiv.workflow.dataset_dirs import (
    MergeError,
    SourceSplit,
    original_split_name,
    read_split,
    scan_dataset,
)
from two4two.dataset import INTERVENTION, PARAMETERS, SPLIT_ARGS
from two4two.files import make_owned_temp_dir, remove_stale

__all__ = [
    "MergeError",
    "MergeReport",
    "SourceSplit",
    "merge_datasets",
    "original_split_name",
    "read_split",
    "scan_dataset",
]

LinkMode = Literal["hardlink", "copy", "symlink"]
MERGE_INFO = "merge.json"
_PER_SOURCE_KEYS = {"split", "n_samples", "complete", "seed", "interventions", "merged_from",
                    "original_split", "modified_attributes"}


@dataclasses.dataclass
class _Merged:
    name: str
    parts: list[SourceSplit]
    order: list[tuple[int, int]]  # (part, line) in merged order
    original: str | None = None


@dataclasses.dataclass
class MergeReport:
    """What :func:`merge_datasets` did.

    Attributes:
        destination: the merged dataset folder.
        splits: split name -> [(source folder, number of scenes)].
        partial: split name -> the sources that lack it.
        files: how the images were placed: counts of ``hardlinked``, ``copied``,
            ``symlinked`` files.
        archive: the ``.tar.gz`` written, if any.
    """

    destination: Path
    splits: dict[str, list[tuple[Path, int]]]
    partial: dict[str, list[Path]]
    files: dict[str, int]
    archive: Path | None = None


# --------------------------------------------------------------------------- planning


def _check_interventions(dataset: dict[str, SourceSplit]) -> dict[str, str]:
    """Each intervention split's original, after checking its scenes point into it."""
    originals = {}
    for name, split in dataset.items():
        if split.intervention is None:
            continue
        original = original_split_name(split, list(dataset))
        if original is None or original not in dataset:
            raise MergeError(f"{split.directory}: an intervention split whose original split "
                             f"({original or 'unknown'}) is not in {split.root}")
        if dataset[original].intervention is not None:
            raise MergeError(f"{split.directory}: its original {original} is itself an "
                             "intervention split")
        known = set(dataset[original].ids)
        for oid, number in zip(split.original_ids, split.line_numbers, strict=True):
            if oid not in known:
                raise MergeError(f"{split.parameters}: line {number}: original_id {oid} is "
                                 f"not a scene of {dataset[original].parameters}; the "
                                 "intervention split does not belong to that split")
        originals[name] = original
    return originals


def _check_files(split: SourceSplit) -> None:
    for sid, number in zip(split.ids, split.line_numbers, strict=True):
        for filename in (f"{sid}.png", f"{sid}_mask.png"):
            if not (split.directory / filename).is_file():
                raise MergeError(f"{split.directory / filename}: missing (scene on line "
                                 f"{number} of {split.parameters}); re-render the split")


def _plan(roots: list[Path], datasets: list[dict[str, SourceSplit]], strict: bool,
          ) -> tuple[list[_Merged], dict[str, list[Path]]]:
    originals_per_source = [_check_interventions(d) for d in datasets]
    seen: dict[str, tuple[Path, int]] = {}
    for dataset in datasets:
        for split in dataset.values():
            for sid, number in zip(split.ids, split.line_numbers, strict=True):
                if sid in seen:
                    other, other_number = seen[sid]
                    raise MergeError(
                        f"scene id {sid} is in both {other} (line {other_number}) and "
                        f"{split.parameters} (line {number}); ids must be unique (is one "
                        "dataset a copy of another, or given twice?)")
                seen[sid] = (split.parameters, number)
            _check_files(split)
    names = sorted({name for dataset in datasets for name in dataset})
    partial = {name: [root for root, d in zip(roots, datasets, strict=True) if name not in d]
               for name in names}
    partial = {name: missing for name, missing in partial.items() if missing}
    if strict and partial:
        name, missing = next(iter(partial.items()))
        raise MergeError(f"split {name} is missing from {', '.join(map(str, missing))} (and "
                         "`strict` forbids merging splits that only some datasets have)")
    merged: dict[str, _Merged] = {}
    for name in names:
        having = [k for k, d in enumerate(datasets) if name in d]
        parts = [datasets[k][name] for k in having]
        kinds = {originals_per_source[k].get(name) for k in having}
        if len(kinds) != 1:
            raise MergeError(f"split {name}: the datasets disagree on whether it is an "
                             "intervention split, or of which split "
                             f"({', '.join(str(p.directory) for p in parts)})")
        attrs = {json.dumps(p.modified_attributes) for p in parts}
        if len(attrs) != 1:
            raise MergeError(f"split {name}: the datasets modify different attributes "
                             f"({', '.join(sorted(attrs))}); they cannot be merged")
        resolutions = set().union(*(p.resolutions for p in parts))
        if len(resolutions) > 1:
            raise MergeError(f"split {name}: scenes of different resolutions "
                             f"{sorted(resolutions)}; merge datasets rendered at one size")
        order = [(i, j) for i, part in enumerate(parts) for j in range(len(part.ids))]
        merged[name] = _Merged(name, parts, order, kinds.pop())
    for item in merged.values():
        if item.original is None:
            continue
        original = merged[item.original]
        position = {original.parts[i].ids[j]: k for k, (i, j) in enumerate(original.order)}
        item.order.sort(key=lambda ij: position[item.parts[ij[0]].original_ids[ij[1]]])
    return list(merged.values()), partial


# --------------------------------------------------------------------------- writing


class _Placer:
    """Puts image files into the merged folder (hard link / copy / symlink) and counts."""

    def __init__(self, mode: LinkMode) -> None:
        self.mode = mode
        self.link_ok = True
        self.counts = {"hardlinked": 0, "copied": 0, "symlinked": 0}

    def place(self, source: Path, target: Path) -> None:
        if self.mode == "symlink":
            os.symlink(source.resolve(), target)
            self.counts["symlinked"] += 1
            return
        if self.mode == "hardlink" and self.link_ok:
            try:
                os.link(source, target)
                self.counts["hardlinked"] += 1
                return
            except OSError:
                self.link_ok = False  # another file system, or no hard links: copy
        shutil.copy2(source, target)
        self.counts["copied"] += 1


def _source_entry(part: SourceSplit) -> dict[str, Any]:
    entry = {"dataset": str(part.root.resolve()), "split": part.name,
             "n_samples": len(part.ids), "split_args": part.split_args}
    if part.intervention is not None:
        entry["intervention"] = part.intervention
    return entry


def _attrs_of(item: _Merged) -> list[str]:
    """The modified attributes of an intervention split (else the name's suffix)."""
    attrs = item.parts[0].modified_attributes
    return attrs if attrs is not None else [item.name.removeprefix(f"{item.original}_")]


def _merged_args(item: _Merged, extra: dict[str, Any]) -> dict[str, Any]:
    present = [p.split_args for p in item.parts if p.split_args]
    common = {key: value for key, value in (present[0] if present else {}).items()
              if key not in _PER_SOURCE_KEYS and all(a.get(key) == value for a in present)}
    return {**common, "split": item.name, "n_samples": len(item.order), **extra,
            "complete": True, "merged_from": [_source_entry(p) for p in item.parts]}


def _write_split(base: Path, item: _Merged, args: dict[str, Any], placer: _Placer,
                 bar: tqdm) -> None:
    directory = base / item.name
    directory.mkdir()
    lines = []
    for i, j in item.order:
        part = item.parts[i]
        sid = part.ids[j]
        for filename in (f"{sid}.png", f"{sid}_mask.png"):
            placer.place(part.directory / filename, directory / filename)
        lines.append(part.lines[j])
        bar.update(1)
    (directory / PARAMETERS).write_text("".join(f"{line}\n" for line in lines),
                                        encoding="utf-8")
    (directory / SPLIT_ARGS).write_text(json.dumps(args, indent=2) + "\n", encoding="utf-8")


def _write_all(base: Path, merged: list[_Merged], placer: _Placer, info: dict[str, Any],
               progress: bool) -> None:
    args_of: dict[str, dict[str, Any]] = {}
    total = sum(len(item.order) for item in merged)
    with tqdm(total=total, desc="merge", unit="scene", disable=not progress) as bar:
        for item in sorted(merged, key=lambda m: m.original is not None):
            if item.original is None:
                present = [_attrs_of(m) for m in merged if m.original == item.name]
                listed = [a for p in item.parts for a in (p.split_args or {}).get(
                    "interventions", []) if a in present]  # the sources' order first
                interventions = [a for i, a in enumerate(listed + present)
                                 if a not in (listed + present)[:i]]
                args = _merged_args(item, {"interventions": interventions})
                _write_split(base, item, args, placer, bar)
                args_of[item.name] = args
                continue
            args = _merged_args(item, {"interventions": [], "original_split": item.original,
                                       "modified_attributes": _attrs_of(item)})
            _write_split(base, item, args, placer, bar)
            original_args = {k: v for k, v in args_of[item.original].items()
                             if k != "merged_from"}
            intervention = {"modified_attributes": _attrs_of(item), "split_args": original_args,
                            "dirname": item.name,
                            "merged_from": [_source_entry(p) for p in item.parts]}
            (base / item.name / INTERVENTION).write_text(
                json.dumps(intervention, indent=2) + "\n", encoding="utf-8")
    (base / MERGE_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _swap_into_place(tmp: Path, destination: Path) -> None:
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700
    if not destination.exists():
        os.rename(tmp, destination)
        return
    trash = make_owned_temp_dir(destination.parent, f".{destination.name}.old-")
    os.rename(destination, trash / "old")
    try:
        os.rename(tmp, destination)
    except BaseException:
        os.rename(trash / "old", destination)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def _walk(directory: Path) -> Iterator[Path]:
    for child in sorted(directory.iterdir()):
        yield child
        if child.is_dir() and not child.is_symlink():
            yield from _walk(child)


def pack_archive(directory: Path, archive: Path, progress: bool = True) -> Path:
    """Write ``archive`` (.tar.gz of ``directory`` as its top folder) atomically.

    Symbolic links are stored as the files they point to.
    """
    paths = list(_walk(directory))

    def pack(tmp: Path) -> None:
        # PNGs do not compress: a low level keeps packing fast
        with tarfile.open(tmp, "w:gz", compresslevel=1, dereference=True) as tar:
            tar.add(directory, arcname=directory.name, recursive=False)
            for path in tqdm(paths, desc="pack", unit="file", disable=not progress):
                tar.add(path, arcname=str(Path(directory.name) / path.relative_to(directory)),
                        recursive=False)

    atomic_write(archive, pack)
    return archive


def _check_paths(destination: Path, sources: Sequence[Path], force: bool,
                 archive: Path | None) -> None:
    resolved = [s.resolve() for s in sources]
    for i, source in enumerate(resolved):
        if source in resolved[:i]:
            raise MergeError(f"`sources`: {sources[i]} is given twice")
    dest = destination.resolve()
    for source, given in zip(resolved, sources, strict=True):
        if dest == source or dest.is_relative_to(source) or source.is_relative_to(dest):
            raise MergeError(f"`destination` {destination} overlaps the input {given}; "
                             "choose a folder outside every input")
    if destination.exists() or destination.is_symlink():
        if not destination.is_dir() or destination.is_symlink():
            raise MergeError(f"`destination` {destination} exists and is not a folder")
        if any(destination.iterdir()) and not force:
            raise MergeError(f"`destination` {destination} exists and is not empty; choose "
                             "another folder, or pass `force` to replace it")
    if archive is not None and archive.exists() and not force:
        raise MergeError(f"{archive} exists; pass `force` to replace it")


def merge_datasets(
    destination: str | os.PathLike,
    sources: Sequence[str | os.PathLike],
    mode: LinkMode = "hardlink",
    force: bool = False,
    archive: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> MergeReport:
    """Merge the datasets ``sources`` (in this order) into ``destination``.

    See the module docstring for what is merged and checked.

    Args:
        destination: the merged dataset folder (created; its parent too).
        sources: two or more dataset folders.
        mode: ``hardlink`` (copy where impossible), ``copy`` or ``symlink``.
        force: replace an existing non-empty destination (and archive).
        archive: also write ``<destination>.tar.gz``.
        strict: refuse splits that only some sources have.
        progress: tqdm bars.

    Raises:
        MergeError: any check fails; nothing is written then.
    """
    destination = Path(destination)
    paths = [Path(s) for s in sources]
    if len(paths) < 2:
        raise MergeError("`sources`: give at least two dataset folders to merge")
    if mode not in ("hardlink", "copy", "symlink"):
        raise ParameterError(f"`mode` must be hardlink, copy or symlink, got {mode!r}")
    archive_path = destination.with_name(destination.name + ".tar.gz") if archive else None
    _check_paths(destination, paths, force, archive_path)
    datasets = [scan_dataset(p) for p in paths]
    merged, partial = _plan(paths, datasets, strict)
    info = {
        "sources": [str(p.resolve()) for p in paths], "mode": mode,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "splits": {m.name: [{"dataset": str(p.root.resolve()), "n_samples": len(p.ids)}
                            for p in m.parts] for m in merged},
        "partial": {name: [str(r.resolve()) for r in roots] for name, roots in partial.items()},
    }
    destination.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("merging", "old"):
        remove_stale(destination.parent, f".{destination.name}.{kind}-*")
    tmp = make_owned_temp_dir(destination.parent, f".{destination.name}.merging-")
    placer = _Placer(mode)
    try:
        _write_all(tmp, merged, placer, info, progress)
        _swap_into_place(tmp, destination)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = MergeReport(
        destination=destination,
        splits={m.name: [(p.root, len(p.ids)) for p in m.parts] for m in merged},
        partial=partial, files=placer.counts)
    if archive_path is not None:
        report.archive = pack_archive(destination, archive_path, progress)
    return report
