"""Which attributes do the counterfactuals change? Read them with the supervised model.

For ``N`` test images and ``T`` target logits spanning ``[-P_hi, P_hi]``
(``P_hi`` = a percentile of |logit| on the validation split,
:func:`dubfiv.explain.bins.logit_bins`), the INN's counterfactuals
(:func:`dubfiv.explain.counterfactual.counterfactuals`) move each image along
the head's weight. The supervised model reads every attribute ``a`` of the
real image and of each counterfactual; per attribute we regress

    delta a = a(counterfactual) - a(real image)   on   delta l = l(counterfactual) - l(real image)

(``l``: the INN's logit measured by re-encoding the counterfactual) over all
``N * T`` pairs: slope (attribute units per logit), intercept, R^2, Pearson
correlation, mean |delta a| and ``n``, plus a 95% bootstrap interval of the
slope that resamples whole images (the ``T`` points of an image are not
independent). ``slope_per_std`` divides the slope by the attribute's standard
deviation in the supervised model's training data, so attributes compare.
``obj_name`` is read as P(stretchy).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dubfiv import stats
from dubfiv.supervised.inference import SupervisedModel

IMAGES_PER_CHUNK = 512
"""Counterfactual images held in memory at a time (images x targets)."""

__all__ = ["CounterfactualReadout", "analyse_counterfactuals", "plot_analysis", "readout_points",
           "regress_attributes", "run_analysis", "write_analysis"]


@dataclasses.dataclass
class CounterfactualReadout:
    """Attributes of real images and their counterfactuals, as read by the supervised model.

    Attributes:
        names: attribute names (``[k]``).
        delta_logit: ``[N, T]`` measured counterfactual logit minus the real image's.
        delta_attributes: ``[N, T, k]`` attribute of the counterfactual minus the real image's.
        targets: ``[T]`` target logits.
        original_logits: ``[N]``.
        counterfactual_summary: logit deviation and clipping (``Counterfactuals.summary``).
    """

    names: list[str]
    delta_logit: np.ndarray
    delta_attributes: np.ndarray
    targets: np.ndarray
    original_logits: np.ndarray
    counterfactual_summary: dict[str, float]


@torch.no_grad()
def analyse_counterfactuals(
    flow: torch.nn.Module, head: torch.nn.Module, supervised: SupervisedModel,
    images: torch.Tensor, targets: np.ndarray | torch.Tensor, batch_size: int = 32,
    progress: bool = True,
) -> CounterfactualReadout:
    """Counterfactuals of ``images`` ``[N, C, H, W]`` (in [0, 1]) at ``targets`` ``[T]``,
    read by ``supervised`` (images resized to its input size)."""
    from tqdm import tqdm

    from dubfiv.explain.counterfactual import counterfactuals

    n = images.shape[0]
    targets_t = torch.as_tensor(np.asarray(targets, dtype=np.float64))
    chunk = max(1, IMAGES_PER_CHUNK // max(1, len(targets_t)))  # bounds memory: chunk * T images
    real = supervised.predict(images)  # [N, k]
    deltas, delta_logit, originals, summaries = [], [], [], []
    for start in tqdm(range(0, n, chunk), desc="counterfactuals", disable=not progress,
                      leave=False):
        stop = min(n, start + chunk)
        cf = counterfactuals(flow, head, images[start:stop], targets_t, batch_size=batch_size)
        m, t = cf.images.shape[:2]
        read = supervised.predict(cf.images.reshape(m * t, *cf.images.shape[2:]))
        deltas.append(read.reshape(m, t, -1) - real[start:stop, None, :])
        delta_logit.append((cf.logits - cf.original_logits[:, None]).double().numpy())
        originals.append(cf.original_logits.double().numpy())
        summaries.append((m, cf.summary()))
    weights = np.array([m for m, _ in summaries], dtype=np.float64)
    summary = {
        key: (float(np.max([s[key] for _, s in summaries])) if key.startswith("max")
              else float(np.average([s[key] for _, s in summaries], weights=weights)))
        for key in summaries[0][1]
    }
    return CounterfactualReadout(
        names=list(supervised.spec.names), delta_logit=np.concatenate(delta_logit),
        delta_attributes=np.concatenate(deltas), targets=targets_t.numpy(),
        original_logits=np.concatenate(originals), counterfactual_summary=summary)


def regress_attributes(readout: CounterfactualReadout, attribute_std: dict[str, float],
                       n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per attribute: the linear fit of delta attribute on delta logit (see the module doc)."""
    x = readout.delta_logit
    out = {}
    for j, name in enumerate(readout.names):
        y = readout.delta_attributes[..., j]
        fit = stats.linear_fit(x.reshape(-1), y.reshape(-1))
        slope_ci = stats.bootstrap(stats.slope, [x, y], n_bootstrap=n_bootstrap, seed=seed)
        std = attribute_std.get(name, math.nan)
        out[name] = {
            **fit.to_dict(),
            "slope_interval": slope_ci.to_dict(),
            "slope_per_std": fit.slope / std if std and math.isfinite(std) else None,
            "mean_abs_change": float(np.mean(np.abs(y))),
            "n_images": int(x.shape[0]),
        }
    return out


def plot_analysis(readout: CounterfactualReadout, results: dict[str, dict[str, Any]],
                  path: str | os.PathLike) -> Path:
    """One panel per attribute: scatter of (delta logit, delta attribute) and the fit."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dubfiv.files import atomic_write

    k = len(readout.names)
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows),
                             constrained_layout=True, squeeze=False)
    x = readout.delta_logit.reshape(-1)
    grid = np.linspace(float(x.min()), float(x.max()), 2)
    for j, name in enumerate(readout.names):
        ax = axes[j // cols][j % cols]
        y = readout.delta_attributes[..., j].reshape(-1)
        r = results[name]
        ax.scatter(x, y, s=4, alpha=0.35)
        if r["slope"] is not None:
            ax.plot(grid, r["intercept"] + r["slope"] * grid, color="tab:red", linewidth=1.2)
        r2 = "nan" if r["r2"] is None else f"{r['r2']:.2f}"
        ax.set_title(f"{name}\nslope {r['slope'] or math.nan:.3g}/logit, R² {r2}", fontsize=9)
        ax.set_xlabel("Δ logit", fontsize=8)
        ax.set_ylabel("Δ " + ("P(stretchy)" if name == "obj_name" else name), fontsize=8)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.grid(alpha=0.3)
    for j in range(k, rows * cols):
        axes[j // cols][j % cols].axis("off")
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path


def write_analysis(report: dict[str, Any], readout: CounterfactualReadout,
                   output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``supervised_analysis.json`` and ``supervised_analysis.png`` in ``output_dir``."""
    from dubfiv.files import atomic_write

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write(output_dir / "supervised_analysis.json", lambda tmp: tmp.write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"))
    png_path = plot_analysis(readout, report["attributes"], output_dir / "supervised_analysis.png")
    return json_path, png_path


def run_analysis(
    supervised_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    dataset: str | None = None,
    split: str = "test",
    n_images: int = 50,
    n_steps: int = 9,
    p_hi: float = 95.0,
    head_index: int = 0,
    device: str | torch.device | None = None,
    seed: int = 0,
    batch_size: int = 32,
    n_bootstrap: int = 1000,
    progress: bool = True,
) -> tuple[dict[str, Any], CounterfactualReadout]:
    """The whole analysis: load both models, pick ``n_images`` images of ``split`` (a seeded
    random subset), move them to ``n_steps`` logits in ``[-P_hi, P_hi]`` (``P_hi``: the
    ``p_hi`` percentile of |logit| on the validation split, or on ``split`` if there is
    none), read and regress.

    Returns:
        ``(report, readout)``: the JSON-able report and the raw readout.

    Raises:
        SupervisedError: bad counts. RunError: no such head. CheckpointError / RunError /
            DatasetError: missing models or data (the message names the path).
    """
    from dubfiv.data import open_split, to_unit
    from dubfiv.explain.bins import INTERPOLATION_P_LO, logit_bins
    from dubfiv.ground_truth import compute_logits
    from dubfiv.runs import load_run
    from dubfiv.supervised.inference import load_supervised
    from dubfiv.supervised.model import SupervisedError

    if n_images < 2 or n_steps < 2:
        raise SupervisedError(f"`n_images` and `n_steps` must be >= 2 (got {n_images}, "
                              f"{n_steps})")
    if not INTERPOLATION_P_LO < p_hi <= 100:
        raise SupervisedError(f"`p_hi` must be in ({INTERPOLATION_P_LO:g}, 100], got {p_hi}")
    supervised = load_supervised(supervised_dir, device=device)
    run = load_run(run_dir, device=supervised.device)
    head = run.head(head_index)
    dataset_dir, dataset = run.dataset_location(dataset_dir, dataset)
    data = open_split(dataset_dir, dataset, split, ["obj_name"])
    has_validation = (dataset_dir / dataset / "validation" / "parameters.jsonl").is_file()
    reference = open_split(dataset_dir, dataset, "validation", ["obj_name"]) \
        if has_validation else data
    bins = logit_bins(compute_logits(run.flow, head, reference, progress=progress,
                                     desc="reference logits"), INTERPOLATION_P_LO, p_hi)
    targets = np.linspace(-bins.values[-1], bins.values[-1], n_steps)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.permutation(len(data))[:n_images])  # type: ignore[arg-type]
    images = to_unit(torch.stack([data[int(i)][0] for i in chosen]))
    readout = analyse_counterfactuals(run.flow, head, supervised, images, targets,
                                      batch_size=batch_size, progress=progress)
    std = {name: (s if not b else math.nan)
           for name, b, s in zip(supervised.spec.names, supervised.spec.binary,
                                 supervised.spec.std, strict=True)}
    results = regress_attributes(readout, std, n_bootstrap=n_bootstrap, seed=seed)
    ranking = sorted(results, key=lambda a: -abs(results[a]["r"] or 0.0))
    report = {
        "supervised_dir": str(supervised_dir),
        "run_dir": str(run_dir),
        "dataset": str(dataset_dir / dataset),
        "split": split,
        "head": head_index,
        "n_images": len(chosen),
        "n_steps": n_steps,
        "image_indices": [int(i) for i in chosen],
        "target_logits": [float(t) for t in targets],
        "logit_bins": bins.to_dict(),
        "reference_split": "validation" if has_validation else split,
        "resized": list(images.shape[-2:]) != list(supervised.image_shape[1:]),
        "counterfactuals": readout.counterfactual_summary,
        "definition": ("per attribute: least squares of delta attribute (counterfactual minus "
                       "real image, as read by the supervised model; obj_name as P(stretchy)) "
                       "on delta logit (re-encoded counterfactual minus real image); "
                       "slope_interval: 95% bootstrap over images"),
        "ranking_by_abs_correlation": ranking,
        "attributes": results,
        "points": readout_points(readout),
    }
    return report, readout


def readout_points(readout: CounterfactualReadout, decimals: int = 5) -> dict[str, Any]:
    """The regression's data as JSON lists (rounded): ``delta_logit`` ``[N][T]`` and, per
    attribute, ``delta_attributes[name]`` ``[N][T]`` (for figures drawn later from the JSON)."""
    def rounded(array: np.ndarray) -> list[Any]:
        return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()

    return {"delta_logit": rounded(readout.delta_logit),
            "delta_attributes": {name: rounded(readout.delta_attributes[..., j])
                                 for j, name in enumerate(readout.names)}}
