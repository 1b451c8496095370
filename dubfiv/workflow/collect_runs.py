"""One table of many training runs (``dubfiv_collect_runs``), read from their folders.

For each run directory (``docs/runs.md``) one row:

* ``run``, ``status`` (``ok`` / ``failed``), ``error`` (why a run could not be read);
* the config keys that differ between the runs, as flattened dotted keys
  (``train.optimizer.lr``, ``model.layers.1.n_blocks``, ``classifiers.0.loss_weight``),
  from ``models/experiment.toml`` (strictly parsed), else the checkpoint's
  ``experiment`` dict, else the raw TOML;
* ``samples_seen`` (checkpoint), ``finished`` (samples seen >= ``train.n_train_samples``);
* ``train_seconds``: the history's ``train_seconds`` (time inside training sessions,
  summed over resumes); for runs without it, the sum over the sessions in
  ``train.log`` (from a ``training steps`` / ``resumed from`` line to the session's
  last line) -- ``train_time_source`` says which;
* ``val_bpd_final`` / ``val_bpd_best`` (+ ``val_bpd_best_samples``): validation
  bits/dim from the history's ``validation`` records;
* ``validation_accuracy:head_<i>``: the last validation record's head accuracy;
  ``<split>_accuracy:head_<i>`` (+ ``<split>_n:head_<i>``) for other splits where
  the analysis cache (``<run>/analysis_cache/*.npz``, :mod:`dubfiv.explain.cache`)
  holds logits for the current checkpoint (the largest sample per split and head);
* from ``<run>/ground_truth/ground_truth.json`` (:mod:`dubfiv.ground_truth`) per
  attribute: ``relevant:<attr>``, ``mean_abs_delta_logit:<attr>``,
  ``relative_effect:<attr>`` (the point estimates) and ``gt_relevant`` (the relevant
  attributes, comma-separated).

Checkpoints are memory-mapped where possible, so a table over multi-GB runs reads
little more than their histories.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dubfiv.rundir import EXPERIMENT, GROUND_TRUTH_REPORT, is_run_dir
from dubfiv.workflow.errors import WorkflowError
from dubfiv.workflow.run_metrics import (
    cache_accuracies,
    format_duration,
    ground_truth_columns,
    history_columns,
    log_train_seconds,
)
from two4two.files import read_toml

__all__ = [
    "RunRecord",
    "collect",
    "differing_keys",
    "evaluate_splits",
    "find_run_dirs",
    "flatten",
    "format_summary",
    "ground_truth_columns",
    "is_run_dir",
    "log_train_seconds",
    "read_run",
    "run_setting",
    "table_rows",
    "write_csv",
]

SEARCH_DEPTH = 3
"""How deep below a parent folder run directories are looked for."""


@dataclasses.dataclass
class RunRecord:
    """What was read from one run directory.

    Attributes:
        path: the run directory.
        error: why it could not be read (``None``: it could).
        config: the flattened experiment config (dotted keys).
        config_source: ``experiment.toml``, ``checkpoint`` or ``raw experiment.toml``.
        metrics: the metric columns (see the module docstring), in column order.
        notes: what could not be read without failing the run (stale caches, ...).
    """

    path: Path
    error: str | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_source: str = ""
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------- finding runs


def _search(folder: Path, depth: int) -> Iterator[Path]:
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return
    for child in children:
        if is_run_dir(child):
            yield child
        elif depth > 1:
            yield from _search(child, depth - 1)


def find_run_dirs(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[RunRecord]]:
    """Run directories given directly or found below parent folders (``SEARCH_DEPTH`` deep).

    Returns:
        ``(run_dirs, failures)``: failures are paths that are no run and hold none.
    """
    runs: list[Path] = []
    failures: list[RunRecord] = []
    for given in paths:
        path = Path(given)
        if is_run_dir(path):
            runs.append(path)
        elif not path.is_dir():
            failures.append(RunRecord(path, error="no such folder"))
        else:
            found = list(_search(path, SEARCH_DEPTH))
            if not found:
                failures.append(RunRecord(path, error="not a run directory (no models/"
                                          f"models.torch) and none below it ({SEARCH_DEPTH} "
                                          "levels searched)"))
            runs += found
    unique: dict[Path, Path] = {}
    for run in runs:
        unique.setdefault(run.resolve(), run)
    return list(unique.values()), failures


# --------------------------------------------------------------------------- reading one run


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts (and lists of dicts) -> ``{"a.b.0.c": value}``; other lists stay values."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: list(value) if isinstance(value, tuple) else value}


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict, memory-mapped when the file allows (weights are not read)."""
    import torch

    from dubfiv.checkpoint import load_checkpoint

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, OSError, EOFError):
        state = load_checkpoint(path, map_location="cpu")  # legacy pickles; clear errors
    if not isinstance(state, dict):
        raise WorkflowError(f"{path}: expected a dict, got {type(state).__name__}")
    return state


def _read_config(checkpoint_dir: Path, state: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    from dubfiv.config import ConfigError, ExperimentConfig, from_dict, load_experiment, to_dict

    toml_path = checkpoint_dir / EXPERIMENT.name
    try:
        return flatten(to_dict(load_experiment(toml_path))), "experiment.toml"
    except ConfigError:
        pass
    if isinstance(state.get("experiment"), Mapping):
        try:
            experiment = from_dict(ExperimentConfig, state["experiment"], "checkpoint")
            return flatten(to_dict(experiment)), "checkpoint"
        except ConfigError:
            pass
    try:
        return flatten(read_toml(toml_path, WorkflowError)), "raw experiment.toml"
    except WorkflowError:
        return {}, "none"


def read_run(run_dir: str | os.PathLike, verify: bool = False) -> RunRecord:
    """Read one run's config and metrics; problems become ``error`` (never raised).

    Args:
        run_dir: the run directory.
        verify: also rebuild the model with :func:`dubfiv.runs.load_run` (slow for big
            models; catches weights that do not fit the config).
    """
    from dubfiv.checkpoint import CheckpointError
    from dubfiv.runs import find_checkpoint, load_run

    record = RunRecord(Path(run_dir))
    try:
        checkpoint = find_checkpoint(record.path)
        state = _read_checkpoint(checkpoint)
        if verify:
            load_run(record.path, device="cpu")
    except (CheckpointError, WorkflowError, OSError) as error:
        record.error = " ".join(str(error).split())
        return record
    except Exception as error:  # a broken run must not stop the table
        record.error = f"{type(error).__name__}: {' '.join(str(error).split())}"
        return record
    record.config, record.config_source = _read_config(checkpoint.parent, state)
    history = state.get("history")
    metrics = record.metrics
    samples = state.get("samples_seen")
    if not isinstance(samples, int) and isinstance(history, Mapping) and history.get("train"):
        samples = history["train"][-1].get("samples")
    metrics["samples_seen"] = samples
    target = record.config.get("train.n_train_samples")
    metrics["finished"] = (bool(samples >= target) if isinstance(samples, int)
                           and isinstance(target, int) else None)
    seconds = history.get("train_seconds") if isinstance(history, Mapping) else None
    source = "history"
    if not isinstance(seconds, int | float):
        log = record.path / "train.log"
        seconds = log_train_seconds(log.read_text(encoding="utf-8", errors="replace")) \
            if log.is_file() else None
        source = "train.log" if seconds is not None else ""
    metrics["train_seconds"] = float(seconds) if seconds is not None else None
    metrics["train_time"] = format_duration(metrics["train_seconds"])
    metrics["train_time_source"] = source
    metrics.update(history_columns(history, record.notes))
    metrics.update(cache_accuracies(  # validation too if the history has none (released run)
        record.path, checkpoint, record.notes,
        include_validation=not any(k.startswith("validation_accuracy:") for k in metrics)))
    gt_path = record.path / GROUND_TRUTH_REPORT
    if gt_path.is_file():
        try:
            report = json.loads(gt_path.read_text(encoding="utf-8"))
            columns = ground_truth_columns(report) if isinstance(report, Mapping) else {}
            if not columns:
                record.notes.append(f"{GROUND_TRUTH_REPORT}: no per-attribute results found")
            metrics.update(columns)
        except (OSError, ValueError) as error:
            record.notes.append(f"{GROUND_TRUTH_REPORT}: unreadable ({error})")
    return record


def evaluate_splits(run_dir: Path, dataset_dir: str | os.PathLike | None = None,
                    device: str | None = None, progress: bool = True) -> str | None:
    """Compute the head's logits on (a sample of up to 3,000 images of) the validation and
    test splits into the run's analysis cache, where :func:`read_run` finds them; return
    why that failed (``None``: it did not). Splits cached for the checkpoint are reused."""
    from dubfiv.analysis import Analysis
    from dubfiv.errors import DubfivError
    from two4two.errors import Two4TwoError

    try:
        Analysis.from_checkpoint(run_dir, device=device, dataset_dir=dataset_dir,
                                 progress=progress)
    except (DubfivError, Two4TwoError) as error:
        return f"`evaluate`: {' '.join(str(error).split())}"
    return None


def collect(paths: Iterable[str | os.PathLike], verify: bool = False, evaluate: bool = False,
            dataset_dir: str | os.PathLike | None = None, device: str | None = None,
            progress: bool = True) -> list[RunRecord]:
    """Records of every run found in ``paths`` (failures included, in order).

    With ``evaluate``, each run's head is first evaluated on the validation and test
    splits (:func:`evaluate_splits`), so the table has their accuracies.
    """
    run_dirs, failures = find_run_dirs(paths)
    records = []
    for run in run_dirs:
        problem = evaluate_splits(run, dataset_dir, device, progress) if evaluate else None
        record = read_run(run, verify=verify)
        if problem and record.ok:
            record.notes.append(problem)
        records.append(record)
    return records + failures


# --------------------------------------------------------------------------- the table


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys whose value (or presence) is not the same in every config, in order."""
    keys: dict[str, None] = {}
    for config in configs:
        keys.update(dict.fromkeys(config))
    return [key for key in keys
            if len({_key(config[key]) if key in config else "<missing>"
                    for config in configs}) > 1]


def table_rows(records: Sequence[RunRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(columns, rows)`` of the table: run, status, differing config keys, metrics,
    notes, path and error."""
    ok = [r for r in records if r.ok]
    config_keys = differing_keys([r.config for r in ok])
    metric_keys: dict[str, None] = {}
    for record in ok:
        metric_keys.update(dict.fromkeys(record.metrics))
    columns = ["run", "status", *config_keys, *metric_keys, "config_source", "notes", "path",
               "error"]
    rows = []
    for record in records:
        row: dict[str, Any] = {"run": record.path.name, "status": "ok" if record.ok else "failed"}
        for key in config_keys:
            value = record.config.get(key)
            row[key] = _key(value) if isinstance(value, list | dict) else value
        row.update(record.metrics)
        row.update(config_source=record.config_source, notes="; ".join(record.notes),
                   path=str(record.path), error=record.error or "")
        rows.append(row)
    return columns, rows


def write_csv(records: Sequence[RunRecord], path: str | os.PathLike) -> Path:
    """Write the whole table as CSV (atomically)."""
    import csv
    import io

    from two4two.utils import atomic_write_text

    columns, rows = table_rows(records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return atomic_write_text(path, buffer.getvalue())


_SUMMARY = re.compile(r"samples_seen|train_time|val_bpd_final|val_bpd_best|"
                      r"[a-z]+_accuracy:head_\d+|gt_relevant")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_summary(records: Sequence[RunRecord]) -> str:
    """A fixed-width table of the successful runs (differing config keys and main
    metrics), followed by one line per failed run."""
    columns, rows = table_rows(records)
    ok_rows = [row for row in rows if row["status"] == "ok"]
    config_keys = differing_keys([r.config for r in records if r.ok])
    shown = ["run", *config_keys, *[c for c in columns if _SUMMARY.fullmatch(c)]]
    lines = []
    if ok_rows:
        cells = [[_cell(row.get(c)) for c in shown] for row in ok_rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(shown)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
        for r in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    else:
        lines.append("no run could be read")
    failed = [row for row in rows if row["status"] != "ok"]
    if failed:
        lines.append("")
        lines.append(f"{len(failed)} failed:")
        lines += [f"  {row['path']}: {row['error']}" for row in failed]
    return "\n".join(lines)


# --------------------------------------------------------------------------- settings


def run_setting(record: RunRecord, name: str) -> str | None:
    """The run's ``train.<name>`` (a string), else the first ``<...>.<name>`` string of a
    raw TOML of another layout (``None`` if there is none)."""
    value = record.config.get(f"train.{name}")
    if isinstance(value, str):
        return value
    for key, value in record.config.items():  # raw TOMLs of other layouts
        if key.split(".")[-1] == name and isinstance(value, str):
            return value
    return None
