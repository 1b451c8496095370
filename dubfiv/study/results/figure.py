"""Figures of :mod:`dubfiv.study.results.analysis`: relevance shares and attribute accuracy.

:func:`relevance_figure` and :func:`accuracy_figure` draw (in memory);
:func:`save_png` writes a figure to a path as is (for
:func:`two4two.files.atomic_write_many`, which renders to temporary paths), and
:func:`write_figure` and :func:`write_accuracy_figure` each write one file atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dubfiv.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["accuracy_figure", "relevance_figure", "save_png", "write_accuracy_figure",
           "write_figure"]


def save_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` to ``path`` as PNG (150 dpi), not atomically: see :func:`write_figure`."""
    fig.savefig(path, format="png", dpi=150)


def write_figure(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`relevance_figure` to ``path`` atomically; return the path."""
    fig = relevance_figure(results)
    return atomic_write(path, lambda tmp: save_png(fig, tmp))


def write_accuracy_figure(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write :func:`accuracy_figure` to ``path`` atomically; return the path."""
    fig = accuracy_figure(results)
    return atomic_write(path, lambda tmp: save_png(fig, tmp))


def relevance_figure(results: dict[str, Any]) -> Figure:
    """One panel per condition: share judged relevant (bars, 95% CI), ground truth marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conds = results["conditions"]
    fig = Figure(figsize=(4.2 * max(len(conds), 1), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(conds), 1), sharey=True, squeeze=False)[0]
    for ax, (key, cond) in zip(axes, conds.items(), strict=False):
        attrs = list(cond["attributes"].values())
        xs = range(len(attrs))
        shares = [a["share"] if a["share"] is not None else 0.0 for a in attrs]
        # clipped at 0: at k = 0 or k = n the interval's end can round past the share
        err = [[max(0.0, a["share"] - a["ci95"][0]) if a["ci95"] else 0 for a in attrs],
               [max(0.0, a["ci95"][1] - a["share"]) if a["ci95"] else 0 for a in attrs]]
        ax.bar(xs, shares, yerr=err, capsize=3, color="#7a9cc6", label="judged relevant")
        known = [(i, a["ground_truth"]) for i, a in enumerate(attrs)
                 if a["ground_truth"] is not None]
        if known:
            ax.scatter([i for i, _ in known], [1.0 if t else 0.0 for _, t in known],
                       marker="D", color="black", zorder=3,
                       label="ground truth (? unknown)")
        for i, a in enumerate(attrs):
            if a["ground_truth"] is None:
                ax.text(i, 1.02, "?", ha="center", color="grey")
        ax.set_xticks(list(xs), [a["label"] for a in attrs], rotation=45, ha="right")
        ax.set_ylim(-0.05, 1.1)
        ax.set_title(f"{key} (n={cond['n_participants']})")
    axes[0].set_ylabel("share judging the attribute relevant")
    axes[0].legend(loc="upper right", fontsize="small")
    return fig


def accuracy_figure(results: dict[str, Any]) -> Figure:
    """Per condition: each participant's attribute accuracy (dots, jittered), the mean
    with its bootstrap 95% interval (black), and the odds ratio vs the reference.

    Without attributes of known truth the figure says so instead.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    acc = results["accuracy"]
    keys = list(acc["conditions"])
    fig = Figure(figsize=(1.8 * max(len(keys), 2) + 1.5, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    by_cond: dict[str, list[float]] = {k: [] for k in keys}
    for p in acc["participants"]:
        if p["accuracy"] is not None and p["condition"] in by_cond:
            by_cond[p["condition"]].append(p["accuracy"])
    for x, key in enumerate(keys):
        values = np.asarray(by_cond[key])
        ax.scatter(x + rng.uniform(-0.18, 0.18, values.size),
                   values + rng.uniform(-0.012, 0.012, values.size),
                   s=12, alpha=0.45, color="#7a9cc6", edgecolors="none")
        s = acc["conditions"][key]
        if s["mean_accuracy"] is not None:
            lo, hi = s["ci95"]
            ax.errorbar([x + 0.3], [s["mean_accuracy"]],
                        yerr=[[max(0.0, s["mean_accuracy"] - lo)],
                              [max(0.0, hi - s["mean_accuracy"])]],
                        fmt="o", color="black", capsize=4)
        c = acc["primary"]["contrasts"].get(key)
        label = "reference" if key == acc["reference"] else (
            "OR -" if c is None else
            f"OR {c['odds_ratio']:.2f}\n[{c['odds_ratio_ci95'][0]:.2f}, "
            f"{c['odds_ratio_ci95'][1]:.2f}]\np={c['p_value']:.3g}")
        ax.text(x, 1.06, label, ha="center", va="bottom", fontsize="small")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(range(len(keys)),
                  [f"{k}\n(n={acc['conditions'][k]['n_participants']})" for k in keys])
    ax.set_xlim(-0.6, len(keys) - 0.4)
    ax.set_ylim(-0.05, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("attribute accuracy per participant")
    ax.set_title("dots: participants; black: mean with bootstrap 95% CI; OR [95% CI], p: "
                 "vs the reference,\nlogistic regression with errors clustered by participant",
                 fontsize="small")
    if not acc["attributes_with_truth"]:
        ax.text((len(keys) - 1) / 2, 0.5, "no attribute with known ground truth",
                ha="center", color="grey")
    return fig
