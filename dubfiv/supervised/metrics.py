"""Per-attribute metrics of the supervised model: accuracy (obj_name) and R^2 (continuous).

``R^2 = 1 - sum (y - y_hat)^2 / sum (y - mean(y))^2`` on the evaluated split
(the convention of ``sklearn.metrics.r2_score``): 1 is perfect, 0 is as good as
predicting the split's own mean, and a constant prediction (e.g. the training
mean) scores <= 0. Accuracy thresholds the predicted probability at 0.5.
"""

from __future__ import annotations

import math

import numpy as np

from dubfiv.supervised.targets import TargetSpec

__all__ = ["accuracy", "attribute_metrics", "constant_baseline", "r2_score"]


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination of ``y_pred`` for ``y_true`` (both ``[n]``); NaN if
    ``y_true`` is constant."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    if total <= 0:
        return math.nan
    return 1.0 - float(np.sum((y_true - y_pred) ** 2)) / total


def accuracy(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Share of ``(probability > 0.5) == y_true`` (labels 0/1, ``[n]``)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    return float(np.mean((np.asarray(probability) > 0.5) == (y_true > 0.5)))


def attribute_metrics(spec: TargetSpec, true: np.ndarray, predicted: np.ndarray
                      ) -> dict[str, float]:
    """``{"<attr>_accuracy" | "<attr>_r2": value}`` for attribute values ``[n, spec.n]``.

    ``predicted`` is :meth:`TargetSpec.decode` output (probabilities / attribute units).
    """
    out = {}
    for j, name in enumerate(spec.names):
        if spec.binary[j]:
            out[f"{name}_accuracy"] = accuracy(true[:, j], predicted[:, j])
        else:
            out[f"{name}_r2"] = r2_score(true[:, j], predicted[:, j])
    return out


def constant_baseline(spec: TargetSpec, true: np.ndarray) -> dict[str, float]:
    """Metrics of the constant predictor fitted on the training split, on ``true`` ``[n, k]``:
    the training majority class for binary targets and the training mean otherwise."""
    constant = np.empty_like(np.asarray(true, dtype=np.float64))
    for j in range(spec.n):
        if spec.binary[j]:
            constant[:, j] = 1.0 if spec.mean[j] > 0.5 else 0.0
        else:
            constant[:, j] = spec.mean[j]
    return attribute_metrics(spec, true, constant)
