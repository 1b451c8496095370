"""The task material of a user study: attribute questions and prediction tasks.

* **Attribute questions.** For each study attribute (:func:`default_attributes`)
  participants answer whether the model uses it. The answer comes from the
  run's intervention report, ``<run_dir>/ground_truth/ground_truth.json``
  (``dubfiv_ground_truth``), whose ``attributes.<scene parameter>.relevant``
  is a bool. A study attribute standing for several scene parameters (rotation:
  roll, pitch, yaw) is relevant if any of them is, irrelevant if all of them
  are known and irrelevant, and open (``None``) otherwise; a missing or
  unreadable report leaves every answer open.
* **Prediction tasks.** A seeded sample of test images (the paper's "task"
  examples), balanced across the model's predictions (half predicted as each
  class, as far as the sample allows) and including images the model gets
  wrong when there are any, about in proportion to its error rate per
  predicted class but at least one per class. Each task records the head's
  logit and the true label.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dubfiv.rundir import GROUND_TRUTH_REPORT
from dubfiv.study.build.material import (
    MaterialError,
    RenderSettings,
    cell_path,
    save_cell,
)
from dubfiv.study.content import Attribute, PredictionTask, StudyImage

if TYPE_CHECKING:
    from dubfiv.analysis import Analysis
    from dubfiv.study.build.names import ImageNamer

__all__ = [
    "answer_attributes",
    "prediction_tasks",
    "read_ground_truth",
    "select_prediction_tasks",
]


def read_ground_truth(run_dir: str | os.PathLike[str]) -> tuple[dict[str, bool], dict[str, Any]]:
    """Relevance verdicts ``{scene parameter: relevant}`` of a run, and where they came from.

    Never raises for a bad report: a missing file, invalid JSON or entries
    without a bool ``relevant`` just give fewer (or no) verdicts; the second
    return value says what was found (``status``: ``read``, ``missing``,
    ``unreadable``, ``no attributes``).
    """
    path = Path(run_dir) / GROUND_TRUTH_REPORT
    info: dict[str, Any] = {"path": str(path.absolute())}
    if not path.is_file():
        return {}, {**info, "status": "missing"}
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, {**info, "status": "unreadable", "error": str(exc)}
    info["sha256"] = hashlib.sha256(raw).hexdigest()
    attributes = data.get("attributes") if isinstance(data, dict) else None
    if not isinstance(attributes, dict):
        return {}, {**info, "status": "no attributes"}
    verdicts = {str(name): entry["relevant"] for name, entry in attributes.items()
                if isinstance(entry, dict) and isinstance(entry.get("relevant"), bool)}
    return verdicts, {**info, "status": "read", "attributes": sorted(verdicts)}


def answer_attributes(attributes: Sequence[Attribute], verdicts: dict[str, bool]
                      ) -> tuple[list[Attribute], list[dict[str, Any]]]:
    """Copies of ``attributes`` with ``relevant`` set from ``verdicts``; and per attribute
    which verdicts decided it (see the module docstring)."""
    answered, sources = [], []
    for attr in attributes:
        if attr.key in verdicts:
            used = {attr.key: verdicts[attr.key]}
            relevant: bool | None = verdicts[attr.key]
        else:
            used = {p: verdicts[p] for p in attr.parameters if p in verdicts}
            if any(used.values()):
                relevant = True
            elif attr.parameters and len(used) == len(attr.parameters):
                relevant = False
            else:
                relevant = None
        answered.append(Attribute(attr.key, attr.label, list(attr.parameters), relevant))
        sources.append({"key": attr.key, "label": attr.label, "parameters": attr.parameters,
                        "relevant": relevant, "verdicts_used": used,
                        "missing": [p for p in attr.parameters if p not in verdicts]
                        if attr.key not in verdicts else []})
    return answered, sources


def _take(rng: np.random.Generator, pool: np.ndarray, n: int) -> list[int]:
    return [int(i) for i in rng.choice(pool, size=n, replace=False)] if n > 0 else []


def select_prediction_tasks(logits: np.ndarray, labels: np.ndarray, n: int, seed: int
                            ) -> np.ndarray:
    """Positions of ``n`` images for the prediction task, in a seeded random order.

    Args:
        logits: ``[N]`` head logits (``> 0`` predicts class 1).
        labels: ``[N]`` true labels (0/1).
        n: number of tasks (``1 <= n <= N``).
        seed: seed of the draw.

    Each predicted class gets ``n // 2`` or ``n - n // 2`` tasks (the larger
    share drawn at random); a class with too few images leaves the rest to the
    other. Within a class's quota ``q``, ``round(q * error rate)`` images (at
    least one, and at most ``q - 1`` unless there are no correct ones) are
    ones the model gets wrong.

    Raises:
        ValueError: ``n`` out of range or shapes that do not match.
    """
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if logits.shape != labels.shape:
        raise ValueError(f"{logits.shape[0]} logits but {labels.shape[0]} labels")
    if not 1 <= n <= len(logits):
        raise ValueError(f"need between 1 and {len(logits)} prediction tasks, got {n}")
    rng = np.random.default_rng(seed)
    predicted = (logits > 0).astype(int)
    truth = (labels > 0.5).astype(int)
    available = [int(np.sum(predicted == c)) for c in (0, 1)]
    big = int(rng.integers(2))
    quota = [n // 2, n // 2]
    quota[big] += n % 2
    for c in (0, 1):
        spill = quota[c] - available[c]
        if spill > 0:
            quota[c] -= spill
            quota[1 - c] += spill
    chosen: list[int] = []
    for c in (0, 1):
        wrong = np.flatnonzero((predicted == c) & (truth != c))
        right = np.flatnonzero((predicted == c) & (truth == c))
        q = quota[c]
        if q == 0:
            continue
        n_wrong = 0
        if len(wrong):
            n_wrong = round(q * len(wrong) / (len(wrong) + len(right)))
            n_wrong = max(1, min(n_wrong, q - 1 if len(right) else q))
        n_wrong = max(n_wrong, q - len(right))  # not enough correct ones
        chosen += _take(rng, wrong, min(n_wrong, len(wrong)))
        chosen += _take(rng, right, q - min(n_wrong, len(wrong)))
    return rng.permutation(np.asarray(chosen, dtype=np.int64))


def prediction_tasks(analysis: Analysis, folder: Path, n_tasks: int, seed: int,
                     settings: RenderSettings, namer: ImageNamer | None = None
                     ) -> tuple[list[PredictionTask], dict[str, Any]]:
    """Select, write and describe the prediction tasks (test split).

    Images get neutral names from ``namer`` (key ``tasks/taskNN``), else go to
    ``images/tasks/taskNN.png`` (named by number only: the file name is visible
    to participants). Returns the tasks and a JSON-ready record.
    """
    data = analysis.task
    if not 1 <= n_tasks <= len(data):
        raise MaterialError(f"n_tasks {n_tasks}: the test sample has {len(data)} images; "
                            f"choose 1 to {len(data)} tasks", parameter="n_tasks")
    positions = select_prediction_tasks(data.logits, data.labels, n_tasks, seed)
    images = analysis.images(data.split, data.indices[positions])
    tasks, records = [], []
    width_digits = max(2, len(str(len(positions))))
    for i, position in enumerate(positions):
        key = f"task{i + 1:0{width_digits}d}"
        rel = cell_path(namer, f"tasks/{key}")
        width, height = save_cell(images[i], folder / rel, settings)
        image = analysis.sample_record(data.split, position)
        logit = image["logit"]
        true_label = settings.class_names[int(image["label"] > 0.5)]
        task = PredictionTask(key, StudyImage(rel, alt=f"Image {i + 1}", width=width,
                                              height=height), logit, true_label)
        tasks.append(task)
        prediction = settings.class_names[int(logit > 0)]
        records.append({"key": key, "path": rel, "image_key": f"tasks/{key}",
                        **{k: image[k] for k in ("split", "index", "image_id", "position",
                                                 "logit", "label")},
                        "true_label": true_label, "model_prediction": prediction,
                        "model_correct": prediction == true_label, "scene": image["scene"]})
    predicted = [r["model_prediction"] for r in records]
    record = {
        "split": data.split, "n_tasks": len(tasks), "seed": seed,
        "n_images_available": len(data), "split_accuracy": data.accuracy,
        "per_prediction": {c: predicted.count(c) for c in settings.class_names},
        "n_model_wrong": sum(not r["model_correct"] for r in records),
        "tasks": records,
    }
    return tasks, record
