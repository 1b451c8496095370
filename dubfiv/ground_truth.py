"""Ground truth by intervention: which scene attributes move the model's logit?

Two4Two knows the truth: each intervention directory ``<split>_<attrs>`` of a
dataset (``docs/datasets.md``, "Intervention splits") holds clones of the split's scenes
with only ``attrs`` resampled (``original_id`` names the original). For every
such set we pair each intervened image with its original, compute the head's
logit of both (``l``, ``l'``) and measure, with the logit spread ``s`` (the
standard deviation of the logits on the original split, which makes the
numbers independent of the arbitrary scale of the head's weight):

* per set: ``mean_abs_delta_logit`` -- mean ``|l' - l|`` (logits);
  ``relative_effect`` -- the same divided by ``s``; ``flip_share`` -- share of
  pairs whose prediction ``l > 0`` changes;
* per resampled attribute ``a`` (change ``d = a' - a``): ``correlation`` --
  Pearson ``r(d, l' - l)``; ``slope`` -- least-squares logit change per unit of
  ``d``; ``linear_effect`` -- ``|r| * std(l' - l) / s``, the standard deviation
  of the logit change that the attribute change explains linearly, in units of
  the logit spread (``signed_linear_effect``: the same with the sign of ``r``);
  ``mean_abs_delta_attribute``;

each with a seeded percentile-bootstrap 95% interval over the pairs
(:mod:`dubfiv.stats`); the interval of ``linear_effect`` is that of the signed
effect folded at 0 (:func:`fold`: the absolute value's own bootstrap interval
misses the estimate when the effect is near 0).

**Relevance rule.** An attribute is ``relevant`` when the lower end of the
interval of its ``linear_effect`` exceeds ``relative_threshold`` (default
0.1): changing it moves the logit *systematically* -- in the direction of the
change -- by more than a tenth of the logit's spread, with 95% confidence.
``confident`` says whether the whole interval lies on one side of the
threshold. Why not mean |delta logit|: a model is never exactly invariant to a
change of many pixels (a new background colour), so an unused attribute still
jitters the logit, without direction (measured: a model of 76% accuracy moved
its logit by 0.37 s on a background change, with a correlation of 0.13; by
0.45 s with r = 0.75 on an object-colour change). The rule sees effects that
are monotone in the attribute -- in Two4Two the class depends monotonically on
arm position and colour; a model using an attribute non-monotonically would
show a large ``relative_effect`` with a small ``linear_effect``, which the
report keeps visible. An attribute's verdict comes from its single-attribute
set; if it is resampled only jointly with others (independent draws), from the
joint set. A set is relevant if one of its attributes is.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dubfiv import stats
from dubfiv.errors import DubfivError

__all__ = [
    "DEFAULT_RELATIVE_THRESHOLD",
    "GroundTruthError",
    "InterventionSet",
    "PairedLogits",
    "attribute_values",
    "compute_logits",
    "effect_of_set",
    "evaluate_run",
    "find_intervention_sets",
    "pair_indices",
    "plot_report",
    "summarise_attributes",
    "write_report",
]

DEFAULT_RELATIVE_THRESHOLD = 0.1
"""Minimal relevant effect: lower bound of the linear effect (in logit standard deviations)."""

INTERVENTION_FILE = "intervention.json"


class GroundTruthError(DubfivError, RuntimeError):
    """Intervention data is missing or inconsistent (the message names the path and fix)."""


@dataclasses.dataclass(frozen=True)
class InterventionSet:
    """One intervention directory: ``<root>/<split>_<attrs joined by _>``."""

    name: str
    attributes: tuple[str, ...]
    directory: Path


@dataclasses.dataclass
class PairedLogits:
    """Logits and attributes of ``n`` (original, intervened) pairs of one set.

    Attributes:
        original, intervened: logits ``[n]``.
        attributes: per resampled attribute, ``(original [n], intervened [n])``.
    """

    set: InterventionSet
    original: np.ndarray
    intervened: np.ndarray
    attributes: dict[str, tuple[np.ndarray, np.ndarray]]


# --------------------------------------------------------------------------- data


def _render_hint(root: Path, split: str) -> str:
    return (f"list them under the {split!r} split of the dataset TOML, e.g. "
            f"`interventions = [[\"arm_position\"], [\"obj_color\"], [\"bg_color\"]]` "
            f"(see config/dataset_small.toml), and render with `python -m two4two CONFIG`; "
            f"or point `dataset_dir`/`dataset` at a dataset that has them (looked in {root})")


def find_intervention_sets(root: str | os.PathLike, split: str = "test") -> list[InterventionSet]:
    """The intervention directories of ``split`` under the dataset folder ``root``.

    A directory counts if it is named ``<split>_*`` and holds ``intervention.json``
    (whose ``split_args.split``, if given, is ``split``); it must be named after its
    ``modified_attributes``. Sorted by name.

    Raises:
        GroundTruthError: ``root`` or ``root/<split>`` is missing, no intervention
            directory exists (the message says how to render them), or an
            ``intervention.json`` is unreadable.
    """
    root = Path(root)
    if not (root / split / "parameters.jsonl").is_file():
        raise GroundTruthError(
            f"{root / split}: split not found (no parameters.jsonl); give the dataset with "
            "`dataset_dir` DIR and `dataset` NAME (the split is DIR/NAME/test)")
    sets = []
    for directory in sorted(root.glob(f"{split}_*")):
        info_path = directory / INTERVENTION_FILE
        if not directory.is_dir() or not info_path.is_file():
            continue
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
            attrs = tuple(str(a) for a in info["modified_attributes"])
            of_split = (info.get("split_args") or {}).get("split", split)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise GroundTruthError(f"{info_path}: unreadable ({error}); render the "
                                   "intervention set again") from None
        if of_split != split:
            continue  # e.g. test_hard_<attrs> of a split named test_hard
        if not attrs or directory.name != "_".join([split, *attrs]):
            raise GroundTruthError(f"{info_path}: modified_attributes {list(attrs)} do not "
                                   f"match the directory name {directory.name!r}")
        sets.append(InterventionSet(directory.name, attrs, directory))
    if not sets:
        raise GroundTruthError(f"{root}: no intervention directories {split}_<attrs> with "
                               f"{INTERVENTION_FILE}; " + _render_hint(root, split))
    return sets


def pair_indices(original_ids: Sequence[str], intervened: Sequence[Any], where: str) -> np.ndarray:
    """Index into ``original_ids`` of each intervened scene's ``original_id`` (int64 ``[n]``).

    Raises:
        GroundTruthError: a scene has no ``original_id`` or one that is not among
            the originals (the message names the set and the first bad id).
    """
    position = {scene_id: i for i, scene_id in enumerate(original_ids)}
    out = np.empty(len(intervened), dtype=np.int64)
    missing = []
    for i, scene in enumerate(intervened):
        index = position.get(scene.original_id) if scene.original_id else None
        if index is None:
            missing.append(f"{scene.id} (original_id {scene.original_id!r})")
        else:
            out[i] = index
    if missing:
        raise GroundTruthError(
            f"{where}: {len(missing)} of {len(intervened)} scenes have no original in the "
            f"split, e.g. {missing[0]}; the intervention set belongs to another rendering of "
            "the split: render it again (delete the directory and rerun `python -m two4two "
            "CONFIG`)")
    return out


def attribute_values(scenes: Sequence[Any], attr: str) -> np.ndarray:
    """``attr`` of each scene as float64 ``[n]`` (``obj_name``: peaky 0, stretchy 1)."""
    from two4two.scene_parameters import OBJ_NAMES

    values = []
    for scene in scenes:
        value = getattr(scene, attr)
        if attr in ("obj_name", "label"):
            value = OBJ_NAMES.index(value)
        values.append(float(value))
    return np.asarray(values, dtype=np.float64)


@torch.no_grad()
def compute_logits(flow: torch.nn.Module, head: torch.nn.Module, dataset: Any,
                   batch_size: int = 64, progress: bool = True, desc: str = "") -> np.ndarray:
    """The head's logits (float64 ``[n]``) of every image of a Two4Two split.

    ``dataset`` yields ``(image uint8 [3, H, W], labels)``; images become ``k / 255``
    (no dequantisation noise), like the counterfactual inputs.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from dubfiv.data import to_unit
    from dubfiv.explain.counterfactual import encode

    param = next(flow.parameters())
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = []
    for images, _ in tqdm(loader, desc=desc or "logits", disable=not progress, leave=False):
        x = to_unit(images).to(device=param.device, dtype=param.dtype)
        out.append(encode(flow, head, x)[2].double().cpu())
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------- statistics


def _flip_share(original: np.ndarray, intervened: np.ndarray) -> np.ndarray:
    return np.mean((original > 0) != (intervened > 0), axis=-1)


def _signed_linear_effect(spread: float) -> stats.Statistic:
    """The vectorised statistic ``r(change, delta) * std(delta) / spread``."""

    def statistic(change: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return stats.pearson(change, delta) * np.std(delta, axis=-1) / spread

    return statistic


def fold(signed: stats.Estimate) -> stats.Estimate:
    """The estimate of ``|x|`` from that of ``x``: ``|value|`` with the interval of the
    absolute values of the signed interval (from 0 if the signed interval contains 0).

    Bootstrapping ``|x|`` directly gives intervals that miss the point estimate when
    ``x`` is near 0 (every replicate's ``|x|`` is above the sample's); the folded interval
    keeps the signed interval's coverage.
    """
    ends = sorted((abs(signed.low), abs(signed.high)))
    low = 0.0 if signed.low <= 0.0 <= signed.high else ends[0]
    return dataclasses.replace(signed, value=abs(signed.value), low=low, high=ends[1])


def effect_of_set(paired: PairedLogits, spread: float, relative_threshold: float,
                  n_bootstrap: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Statistics and verdicts of one intervention set (a JSON-able dict).

    Every interval comes from the same ``seed``, so they resample the same pairs.
    """
    delta = paired.intervened - paired.original
    boot = dict(n_bootstrap=n_bootstrap, seed=seed, level=level)
    mean_abs = stats.bootstrap(stats.mean_abs, [delta], **boot)
    relative = stats.bootstrap(lambda d: stats.mean_abs(d) / spread, [delta], **boot)
    flips = stats.bootstrap(_flip_share, [paired.original, paired.intervened], **boot)
    per_attribute = {}
    for attr, (before, after) in paired.attributes.items():
        change = after - before
        signed = stats.bootstrap(_signed_linear_effect(spread), [change, delta], **boot)
        linear = fold(signed)
        relevant = linear.low > relative_threshold
        per_attribute[attr] = {
            "linear_effect": linear.to_dict(),
            "signed_linear_effect": signed.to_dict(),
            "correlation": stats.bootstrap(stats.pearson, [change, delta], **boot).to_dict(),
            "slope": stats.bootstrap(stats.slope, [change, delta], **boot).to_dict(),
            "mean_abs_delta_attribute": float(np.mean(np.abs(change))),
            "relevant": bool(relevant),
            "confident": bool(relevant or linear.high <= relative_threshold),
        }
    return {
        "name": paired.set.name,
        "attributes": list(paired.set.attributes),
        "n": int(delta.size),
        "mean_abs_delta_logit": mean_abs.to_dict(),
        "relative_effect": relative.to_dict(),
        "flip_share": flips.to_dict(),
        "mean_delta_logit": float(np.mean(delta)),
        "relevant": any(e["relevant"] for e in per_attribute.values()),
        "per_attribute": per_attribute,
    }


def summarise_attributes(sets: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One verdict per attribute (see the module docstring), by descending linear effect.

    Single-attribute sets decide; an attribute resampled only jointly with
    others takes its verdict from the joint set (relevant in any = relevant).
    """
    out: dict[str, dict[str, Any]] = {}
    ordered = sorted(sets, key=lambda s: len(s["attributes"]) > 1)  # single sets first
    for s in ordered:
        for attr in s["attributes"]:
            entry = s["per_attribute"][attr]
            joint = [a for a in s["attributes"] if a != attr]
            previous = out.get(attr)
            if previous is not None and (not previous["jointly_with"] or not joint
                                         or previous["relevant"] or not entry["relevant"]):
                continue
            out[attr] = {
                "relevant": entry["relevant"], "confident": entry["confident"],
                "source": s["name"], "jointly_with": joint,
                "linear_effect": entry["linear_effect"],
                "correlation": entry["correlation"],
                "slope": entry["slope"],
                "relative_effect": s["relative_effect"],
                "mean_abs_delta_logit": s["mean_abs_delta_logit"],
                "flip_share": s["flip_share"],
            }
    order = sorted(out, key=lambda a: -(out[a]["linear_effect"]["value"] or 0.0))
    return {attr: out[attr] for attr in order}


# --------------------------------------------------------------------------- the whole run


def evaluate_run(
    run_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike | None = None,
    dataset: str | None = None,
    split: str = "test",
    head_index: int = 0,
    device: str | torch.device | None = None,
    n_bootstrap: int = 2000,
    seed: int = 0,
    relative_threshold: float = DEFAULT_RELATIVE_THRESHOLD,
    batch_size: int = 64,
    progress: bool = True,
) -> dict[str, Any]:
    """Intervention report of a run on every intervention set of ``split``.

    ``dataset_dir`` / ``dataset`` default to the run's ``train.dataset_dir`` /
    ``train.dataset``. Returns the JSON-able report (see :func:`write_report`).

    Raises:
        GroundTruthError: no intervention sets, unpaired scenes.
        RunError: the run directory cannot be loaded, or it has no head ``head_index``.
    """
    from dubfiv.data import open_split
    from dubfiv.runs import load_run
    from two4two.pytorch import Two4Two, Two4TwoDatasetError

    if n_bootstrap < 1:
        raise GroundTruthError(f"`n_bootstrap` must be >= 1, got {n_bootstrap}")
    run = load_run(run_dir, device=device)
    head = run.head(head_index)
    dataset_dir, dataset = run.dataset_location(dataset_dir, dataset)
    root = dataset_dir / dataset
    sets = find_intervention_sets(root, split)

    def logits_of(name: str) -> tuple[list[Any], np.ndarray]:
        data = open_split(dataset_dir, dataset, name, ["obj_name"])
        if not isinstance(data, Two4Two):  # pragma: no cover - open_split returns Two4Two
            raise GroundTruthError(f"{root / name}: not a Two4Two split")
        return data.params, compute_logits(run.flow, head, data, batch_size, progress, name)

    try:
        originals, original_logits = logits_of(split)
    except Two4TwoDatasetError as error:
        raise GroundTruthError(str(error)) from None
    spread = float(np.std(original_logits))
    if not math.isfinite(spread) or spread <= 0:
        raise GroundTruthError(f"{root / split}: the head's logits do not vary "
                               f"(std {spread}); is the model trained?")
    original_ids = [p.id for p in originals]
    reports = []
    for k, iset in enumerate(sets):
        try:
            scenes, logits = logits_of(iset.name)
        except Two4TwoDatasetError as error:
            raise GroundTruthError(str(error)) from None
        index = pair_indices(original_ids, scenes, str(iset.directory))
        attributes = {
            attr: (attribute_values([originals[i] for i in index], attr),
                   attribute_values(scenes, attr))
            for attr in iset.attributes
        }
        paired = PairedLogits(iset, original_logits[index], logits, attributes)
        reports.append(effect_of_set(paired, spread, relative_threshold, n_bootstrap,
                                     seed + k))
    return {
        "run_dir": str(run_dir),
        "dataset": str(root),
        "split": split,
        "head": head_index,
        "n_original": len(originals),
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "level": 0.95,
        "logit_spread": {
            "std": spread,
            "definition": f"standard deviation of the head's logits on {split}",
        },
        "rule": {
            "relative_threshold": relative_threshold,
            "threshold_logits": relative_threshold * spread,
            "text": (
                "an attribute is relevant when the lower end of the 95% bootstrap interval "
                "of its linear_effect = |corr(attribute change, logit change)| * "
                "std(logit change) / logit std exceeds relative_threshold (verdict from its "
                "single-attribute set, else from the sets that resample it jointly)"
            ),
        },
        "sets": reports,
        "attributes": summarise_attributes(reports),
    }


# --------------------------------------------------------------------------- output


def interval_tuple(estimate: Mapping[str, Any] | None) -> tuple[float, float, float]:
    """``(value, low, high)`` of a report's estimate; NaN for what is missing or not a
    number (strict JSON writes NaN as ``"nan"``)."""
    def num(key: str) -> float:
        try:
            return float((estimate or {}).get(key))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan

    return num("value"), num("low"), num("high")


def plot_report(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Bar plot (PNG), one bar per attribute with its 95% interval: linear effect (with the
    relevance threshold), relative effect and flip share of its set, and the correlation."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dubfiv.files import atomic_write

    attributes = report["attributes"]
    labels = list(attributes)
    colours = ["tab:red" if attributes[a]["relevant"] else "tab:gray" for a in labels]
    panels = [
        ("linear effect\n(|r| std(Δ logit) / logit std)", "linear_effect", None),
        ("relative effect\n(mean |Δ logit| / logit std)", "relative_effect", None),
        ("share of flipped predictions", "flip_share", (0, 1)),
        ("corr(Δ attribute, Δ logit)", "correlation", (-1, 1)),
    ]
    fig, grid = plt.subplots(2, 2, figsize=(2 * (1.5 + 0.6 * len(labels)), 7.5),
                             constrained_layout=True)
    axes = grid.ravel()
    xs = np.arange(len(labels))
    for ax, (title, key, limits) in zip(axes, panels, strict=True):
        values = np.array([interval_tuple(attributes[a][key]) for a in labels]).reshape(-1, 3)
        err = np.abs(np.stack([values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]]))
        ax.bar(xs, values[:, 0], color=colours, yerr=np.nan_to_num(err), capsize=4)
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
        if limits:
            ax.set_ylim(*limits)
    axes[0].axhline(report["rule"]["relative_threshold"], color="tab:red", linestyle="--",
                    linewidth=1, label="relevance threshold")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"interventions on {Path(report['dataset']).name}/{report['split']} "
                 f"(95% bootstrap intervals; red = relevant)", fontsize=10)
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return path


def write_report(report: Mapping[str, Any], output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``ground_truth.json`` and ``ground_truth.png`` into ``output_dir`` (atomically)."""
    from dubfiv.files import atomic_write

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write(output_dir / "ground_truth.json", lambda tmp: tmp.write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"))
    png_path = plot_report(report, output_dir / "ground_truth.png")
    return json_path, png_path
