"""Metrics of a run directory read from its files: the training log, the history,
the analysis cache and the ground-truth report (used by :mod:`dubfiv.workflow.collect_runs`).

Every reader is defensive: an unknown layout gives no columns (and a note),
never an exception.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "cache_accuracies",
    "format_duration",
    "ground_truth_columns",
    "history_columns",
    "log_train_seconds",
]


_LOG_LINE = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ")
_SESSION_START = ("training steps", "resumed from")


def log_train_seconds(text: str) -> float | None:
    """Seconds inside training sessions of a ``train.log`` (None: no timestamps).

    A session starts at the first timestamped line or a line containing
    ``training steps`` or ``resumed from`` and ends at the last line before the
    next start; gaps between sessions (a run paused and resumed) do not count.
    """
    sessions: list[list[datetime.datetime]] = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        time = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S") + datetime.timedelta(
            milliseconds=int(match[2]))
        if not sessions or any(marker in line for marker in _SESSION_START):
            sessions.append([time, time])
        else:
            sessions[-1][1] = time
    if not sessions:
        return None
    return sum((end - start).total_seconds() for start, end in sessions)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _number(value: Any) -> float | None:
    """A point estimate: a number, or ``value``/``mean``/``estimate`` of a dict."""
    if isinstance(value, Mapping):
        for key in ("value", "mean", "estimate", "point"):
            if key in value:
                return _number(value[key])
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def ground_truth_columns(report: Mapping[str, Any]) -> dict[str, Any]:
    """Per-attribute columns of a ``ground_truth.json`` (read defensively).

    Reads ``attributes`` (a mapping attribute -> entry, or a list of entries with
    ``attribute``/``name``), else ``sets`` (entries with ``name``); from each entry
    ``relevant`` (bool), ``mean_abs_delta_logit`` and ``relative_effect`` (numbers or
    dicts with ``value``). Unknown layouts give no columns.
    """
    entries = report.get("attributes")
    if entries is None:
        entries = report.get("sets")
    if isinstance(entries, list):
        entries = {str(e.get("attribute", e.get("name"))): e for e in entries
                   if isinstance(e, Mapping) and (e.get("attribute") or e.get("name"))}
    if not isinstance(entries, Mapping):
        return {}
    columns: dict[str, Any] = {}
    relevant = []
    for attr, entry in entries.items():
        if not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("relevant"), bool):
            columns[f"relevant:{attr}"] = entry["relevant"]
            if entry["relevant"]:
                relevant.append(str(attr))
        for key in ("mean_abs_delta_logit", "relative_effect"):
            value = _number(entry.get(key))
            if value is not None:
                columns[f"{key}:{attr}"] = value
    if any(key.startswith("relevant:") for key in columns):
        columns["gt_relevant"] = ", ".join(relevant) or "none"
    return columns


def cache_accuracies(run_dir: Path, checkpoint: Path, notes: list[str],
                     include_validation: bool = False) -> dict[str, Any]:
    """``<split>_accuracy:head_<i>`` from the analysis cache, for the current checkpoint
    (the validation split only with ``include_validation``: the history usually has it)."""
    try:
        from dubfiv.explain.cache import checkpoint_fingerprint
        from dubfiv.rundir import RunPaths
    except ImportError:
        return {}
    files = sorted(RunPaths(run_dir).analysis_cache.glob("*.npz"))
    if not files:
        return {}
    fingerprint = checkpoint_fingerprint(checkpoint)
    best: dict[tuple[str, int], tuple[int, float]] = {}
    stale = 0
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                logits, labels = archive["logits"], archive["labels"]
        except (OSError, ValueError, KeyError) as error:
            notes.append(f"{path.name}: unreadable ({error})")
            continue
        if meta.get("fingerprint") != fingerprint:
            stale += 1
            continue
        split, head = str(meta.get("split")), int(meta.get("head", 0))
        if (split == "validation" and not include_validation) or len(logits) == 0:
            continue
        accuracy = float(np.mean((logits > 0) == (labels > 0.5)))
        if len(logits) > best.get((split, head), (-1, 0.0))[0]:
            best[(split, head)] = (len(logits), accuracy)
    if stale:
        notes.append(f"{stale} analysis cache file(s) of an older checkpoint ignored")
    columns: dict[str, Any] = {}
    for (split, head), (n, accuracy) in sorted(best.items()):
        columns[f"{split}_accuracy:head_{head}"] = accuracy
        columns[f"{split}_n:head_{head}"] = n
    return columns


def history_columns(history: Any, notes: list[str]) -> dict[str, Any]:
    if not isinstance(history, Mapping) or not isinstance(history.get("validation"), list):
        notes.append("history format not recognised: no bits/dim or accuracy")
        return {}
    records = [r for r in history["validation"] if isinstance(r, Mapping)
               and isinstance(r.get("bits_per_dim"), int | float)]
    if not records:
        notes.append("no validation record in the history")
        return {}
    best = min(records, key=lambda r: r["bits_per_dim"])
    last = records[-1]
    columns = {"val_bpd_final": float(last["bits_per_dim"]),
               "val_bpd_best": float(best["bits_per_dim"]),
               "val_bpd_best_samples": best.get("samples")}
    for key in sorted(k for k in last if re.fullmatch(r"head_\d+_accuracy", str(k))):
        columns[f"validation_accuracy:head_{key.split('_')[1]}"] = float(last[key])
    return columns
