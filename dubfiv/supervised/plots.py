"""PNG of the supervised run's validation metrics per attribute (written atomically)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dubfiv.supervised.targets import TargetSpec

__all__ = ["plot_history"]


def plot_history(history: Sequence[Mapping[str, Any]], baseline: Mapping[str, float],
                 spec: TargetSpec, path: str | os.PathLike) -> Path:
    """Losses (left) and validation accuracy / R^2 per attribute (right) against the epoch.

    Dotted lines: the constant predictor's score (``baseline``) where it is above -0.2.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dubfiv.files import atomic_write

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for key, label in (("train_loss", "train"), ("validation_loss", "validation")):
        ax_loss.plot(epochs, [r[key] for r in history], marker=".", label=label)
    ax_loss.set_yscale("log")
    ax_loss.set_title("loss (mean of BCE and standardised MSE)")
    cmap = plt.get_cmap("tab20")
    for j, name in enumerate(spec.names):
        key = f"{name}_accuracy" if spec.binary[j] else f"{name}_r2"
        label = f"{name} ({'accuracy' if spec.binary[j] else 'R²'})"
        line, = ax_metric.plot(epochs, [r.get(key, float("nan")) for r in history],
                               marker=".", label=label, color=cmap(j % 20))
        value = baseline.get(key)
        if value is not None and value > -0.2:
            ax_metric.axhline(value, color=line.get_color(), linestyle=":", linewidth=0.8)
    ax_metric.set_ylim(-0.2, 1.02)
    ax_metric.set_title("validation accuracy / R² per attribute (dotted: constant predictor)")
    ax_metric.legend(fontsize=7, ncol=2, loc="lower right")
    for ax in (ax_loss, ax_metric):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.legend()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
