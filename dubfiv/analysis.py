"""``Analysis``: one object for notebooks -- a trained run, its data and its explanations.

``Analysis.from_checkpoint(run_dir)`` loads a run (ours or the paper's released
one, :func:`dubfiv.runs.load_run`), opens its datasets (from the run's train
config, or ``dataset_dir``) and computes once -- cached in
``<run_dir>/analysis_cache/`` and recomputed when ``models.torch`` changes
(:mod:`dubfiv.explain.cache`) -- the *treatment* data (validation split) and the
*task* data (test split): a deterministic sample of up to ``n_samples`` images
each with labels, head-layer activations and logits. Full latents are
recomputed on demand for the few images a figure needs (:meth:`Analysis.encode`).

The explanations (``docs/explanations.md``): :meth:`Analysis.baseline`,
:meth:`Analysis.interpolation` and :meth:`Analysis.concepts`; each returns a
result with ``figure()``, ``record()`` and ``save()``, and saves PNG + JSON
into :attr:`Analysis.output_dir` unless ``save=False``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dubfiv.data import open_split, to_unit
from dubfiv.errors import DubfivError
from dubfiv.explain import cache as split_cache
from dubfiv.explain.baseline import Baseline, label_name
from dubfiv.explain.bins import BASELINE_PERCENTILES, INTERPOLATION_P_LO, LogitBins, logit_bins
from dubfiv.explain.concept_report import ConceptInputs, ConceptReport, explain_concepts
from dubfiv.explain.concepts import ConceptMethod, collect_activations, concept_layer
from dubfiv.explain.counterfactual import encode
from dubfiv.explain.interpolation import CounterfactualInterpolation, InterpolationGrid, select_rows
from dubfiv.explain.records import scene_record
from dubfiv.flow import SequentialFlow, describe_layers
from dubfiv.heads import LinearHead
from dubfiv.rundir import CHECKPOINT, RunPaths
from dubfiv.runs import Run, find_checkpoint, load_run, resolve_device

__all__ = ["SPLIT_ALIASES", "Analysis", "AnalysisError", "latest_run"]

SPLIT_ALIASES = {"treatment": "validation", "task": "test"}
"""The paper's names of the splits: treatment examples (validation), task examples (test)."""


class AnalysisError(DubfivError, RuntimeError):
    """The run's datasets cannot be found or a request does not fit the data."""


def latest_run(output_base_dir: str | os.PathLike = "models") -> Path:
    """The most recently modified run directory (holding ``models/models.torch``) in a folder.

    Raises:
        AnalysisError: no run directory there (the message names the folder).
    """
    base = Path(output_base_dir)
    runs = [p for p in base.glob("*") if RunPaths(p).checkpoint.is_file()]
    if not runs:
        raise AnalysisError(f"{base}: no run directories (with {CHECKPOINT}); train one "
                            "(dubfiv_train / dubfiv_quickstart) or set DUBFIV_RUN_DIR.")
    return max(runs, key=lambda p: RunPaths(p).checkpoint.stat().st_mtime)


def _find_dataset(run: Run, dataset_dir: str | os.PathLike | None) -> Path:
    """``<dataset_dir>/<dataset>``: the override, else the run's ``train.dataset_dir`` as
    given, relative to the run directory, or relative to its parent."""
    train = run.experiment.train
    if dataset_dir is not None:
        candidates = [Path(dataset_dir)]
    else:
        configured = Path(train.dataset_dir)
        candidates = [configured] if configured.is_absolute() else [
            configured, run.run_dir / configured, run.run_dir.parent / configured]
    for candidate in candidates:
        if (candidate / train.dataset / "validation" / "parameters.jsonl").is_file():
            return candidate / train.dataset
    tried = ", ".join(str(c / train.dataset) for c in candidates)
    raise AnalysisError(
        f"dataset {train.dataset!r} of run {run.run_dir} not found (tried {tried}); set "
        f"`dataset_dir` to the folder that holds {train.dataset}/"
    )


@dataclasses.dataclass
class Analysis:
    """A trained run with its treatment (validation) and task (test) data.

    Attributes:
        run: the loaded run (flow, heads, config).
        head_index: which head is explained.
        dataset: ``<dataset_dir>/<dataset>`` of the run.
        data: :class:`~dubfiv.explain.cache.SplitData` per split (``validation``, ``test``).
        seed: default seed of the explanations' random draws.
        output_dir: where explanations are saved (default ``<run_dir>/analysis``).
        cache_reused: per split, whether the data came from the on-disk cache.
        batch_size: images per forward pass.
        progress: show progress bars.
    """

    run: Run
    head_index: int
    dataset: Path
    data: dict[str, split_cache.SplitData]
    seed: int
    output_dir: Path
    cache_reused: dict[str, bool]
    batch_size: int = 32
    progress: bool = True
    _datasets: dict[str, Dataset] = dataclasses.field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_checkpoint(
        cls,
        run_dir: str | os.PathLike,
        device: str | torch.device | None = None,
        dataset_dir: str | os.PathLike | None = None,
        n_samples: int = 3000,
        seed: int = 0,
        head: int = 0,
        batch_size: int = 32,
        cache: bool = True,
        output_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> Analysis:
        """Load ``run_dir`` and its treatment/task data (cached beside the run).

        Args:
            run_dir: a run directory (ours or the paper's released one).
            device: ``None``: CUDA if available, else CPU.
            dataset_dir: folder holding the run's dataset (default: the run's
                ``train.dataset_dir``, tried as given and relative to the run).
            n_samples: images sampled (deterministically) per split; 0: all.
            seed: seed of the sample and the default seed of the explanations.
            head: index of the head to explain.
            batch_size: images per forward pass.
            cache: use and write ``<run_dir>/analysis_cache/``.
            output_dir: where explanations are saved (default ``<run_dir>/analysis``).
            progress: show progress bars.

        Raises:
            RunError / CheckpointError: the run cannot be loaded.
            AnalysisError / DatasetError: the datasets cannot be found or read.
        """
        return cls.from_run(load_run(run_dir, device=resolve_device(device)), dataset_dir,
                            n_samples, seed, head, batch_size, cache, output_dir, progress)

    @classmethod
    def from_run(
        cls,
        run: Run,
        dataset_dir: str | os.PathLike | None = None,
        n_samples: int = 3000,
        seed: int = 0,
        head: int = 0,
        batch_size: int = 32,
        cache: bool = True,
        output_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> Analysis:
        """:meth:`from_checkpoint` for a run already loaded (:func:`~dubfiv.runs.load_run`),
        on the run's device."""
        run_dir = run.run_dir
        if not 0 <= head < len(run.heads):
            raise AnalysisError(f"{run_dir}: head {head} requested but the run has "
                                f"{len(run.heads)} head(s)")
        dataset = _find_dataset(run, dataset_dir)
        analysis = cls(run=run, head_index=head, dataset=dataset, data={}, seed=seed,
                       output_dir=Path(output_dir) if output_dir else Path(run_dir) / "analysis",
                       cache_reused={}, batch_size=batch_size, progress=progress)
        fingerprint = split_cache.checkpoint_fingerprint(find_checkpoint(run_dir))
        cache_dir = RunPaths(run_dir).analysis_cache if cache else None
        for split in ("validation", "test"):
            data = analysis.open(split)
            parameters = Path(dataset) / split / "parameters.jsonl"
            key = {"split": split, "n_samples": n_samples, "seed": seed, "head": head,
                   "label": analysis.label_attribute, "dataset": str(Path(dataset).resolve()),
                   "dataset_stamp": [parameters.stat().st_size, parameters.stat().st_mtime_ns]}
            indices = split_cache.sample_indices(len(data), n_samples, seed)  # type: ignore[arg-type]

            def compute(split: str = split, data: Dataset = data,
                        indices: np.ndarray = indices) -> split_cache.SplitData:
                return split_cache.compute_split_data(
                    run.flow, analysis.head, data, indices, split, 0, batch_size, progress)

            analysis.data[split], analysis.cache_reused[split] = split_cache.load_or_compute(
                cache_dir, key, fingerprint, compute)
        return analysis

    # ------------------------------------------------------------------ access

    @property
    def flow(self) -> SequentialFlow:
        return self.run.flow

    @property
    def head(self) -> LinearHead:
        return self.run.heads[self.head_index]  # type: ignore[return-value]

    @property
    def label_attribute(self) -> str:
        return self.run.experiment.classifiers[self.head_index].label

    @property
    def device(self) -> torch.device:
        return self.run.device

    @property
    def treatment(self) -> split_cache.SplitData:
        """The validation-split sample (the treatment examples)."""
        return self.data["validation"]

    @property
    def task(self) -> split_cache.SplitData:
        """The test-split sample (the task examples)."""
        return self.data["test"]

    def split_data(self, split: str) -> split_cache.SplitData:
        """The sample of ``split`` (``validation``/``treatment`` or ``test``/``task``)."""
        name = SPLIT_ALIASES.get(split, split)
        if name not in self.data:
            raise AnalysisError(f"no analysis data for split {split!r}; use one of "
                                f"{sorted(self.data) + sorted(SPLIT_ALIASES)}")
        return self.data[name]

    def open(self, split: str) -> Dataset:
        """The dataset of ``split`` (items: uint8 image, label of the head's attribute)."""
        name = SPLIT_ALIASES.get(split, split)
        if name not in self._datasets:
            self._datasets[name] = open_split(self.dataset.parent, self.dataset.name, name,
                                              [self.label_attribute])
        return self._datasets[name]

    def images(self, split: str, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Images ``[M, 3, H, W]`` float32 in [0, 1] (CPU) of dataset ``indices`` of ``split``."""
        data = self.open(split)
        return torch.stack([to_unit(data[int(i)][0][None])[0] for i in np.asarray(indices)])

    def _batches(self, split: str, indices: np.ndarray) -> Iterator[torch.Tensor]:
        starts = range(0, len(indices), self.batch_size)
        for start in tqdm(starts, desc=f"activations {split}", disable=not self.progress,
                          leave=False):
            yield self.images(split, indices[start:start + self.batch_size])

    @torch.no_grad()
    def encode(
        self, split: str, positions: Sequence[int] | np.ndarray
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor], torch.Tensor]:
        """Full latents of sampled images (recomputed, not cached).

        Args:
            positions: positions into :meth:`split_data` ``(split)``.

        Returns:
            ``(h [M, ...] at the head's layer, zs {layer: latent}, logits [M])`` on the device.
        """
        indices = self.split_data(split).indices[np.asarray(positions)]
        x = self.images(split, indices).to(self.device, next(self.flow.parameters()).dtype)
        return encode(self.flow, self.head, x)

    # ------------------------------------------------------------------ records

    def image_record(self, split: str, index: int, image_id: str, logit: float, label: float,
                     bins: LogitBins | None = None) -> dict[str, Any]:
        """The finished, JSON-ready record of one real image of ``split``.

        Keys: ``split``, ``index`` (dataset index), ``image_id``, ``logit`` (raw
        logit of the head), ``label`` (0/1 of the head's attribute) and its
        ``label_name``, ``model_prediction`` (the class of ``logit > 0``),
        ``scene`` (the scene parameters, ``None`` if the dataset has none) and,
        with ``bins``, the logit's bin (:meth:`LogitBins.describe`).
        """
        name = SPLIT_ALIASES.get(split, split)
        params = getattr(self.open(name), "params", None)
        scene = scene_record(params[int(index)]) if params is not None else None
        record = {"split": name, "index": int(index), "image_id": str(image_id),
                  "logit": float(logit), "label": float(label),
                  "label_name": label_name(label, self.label_attribute),
                  "model_prediction": label_name(float(logit > 0), self.label_attribute),
                  "scene": scene}
        if bins is not None:
            record.update(bins.describe(float(logit)))
        return record

    def sample_record(self, split: str, position: int, bins: LogitBins | None = None
                      ) -> dict[str, Any]:
        """:meth:`image_record` of the image at ``position`` of the split's sample
        (:meth:`split_data`: its cached logit and label), with ``position`` added."""
        data = self.split_data(split)
        position = int(position)
        record = self.image_record(split, int(data.indices[position]),
                                   data.image_ids[position], float(data.logits[position]),
                                   float(data.labels[position]), bins)
        return {**record, "position": position}

    # ------------------------------------------------------------------ bins

    def bins(self, split: str = "validation", p_lo: float = BASELINE_PERCENTILES[0],
             p_hi: float = BASELINE_PERCENTILES[1]) -> LogitBins:
        """Logit bins from the percentiles of |logit| on the sample of ``split``."""
        return logit_bins(self.split_data(split).logits, p_lo, p_hi)

    # ------------------------------------------------------------------ explanations

    def _save(self, result: Any, save: bool, name: str | None) -> None:
        if save:
            result.save(self.output_dir, name) if name else result.save(self.output_dir)

    def baseline(
        self, n_rows: int = 6, split: str = "validation", seed: int | None = None,
        p_lo: float = BASELINE_PERCENTILES[0], p_hi: float = BASELINE_PERCENTILES[1],
        save: bool = True, name: str | None = None,
    ) -> Baseline:
        """The logit-binned grid of real images (``n_rows`` x 5), saved as PNG + JSON.

        Raises:
            BinTooSmallError: a bin holds fewer than ``n_rows`` sampled images.
        """
        data = self.split_data(split)
        result = Baseline.draw(data.logits, data.labels, self.bins(split, p_lo, p_hi), n_rows,
                               self.seed if seed is None else seed, data.indices, data.image_ids,
                               SPLIT_ALIASES.get(split, split), self.label_attribute)
        flat = self.images(split, result.indices.reshape(-1))
        result.images = flat.reshape(*result.shape, *flat.shape[1:])
        self._save(result, save, name)
        return result

    def interpolation(
        self, n_rows: int = 6, p_hi: float = 90.0, p_lo: float = INTERPOLATION_P_LO,
        split: str = "validation", seed: int | None = None,
        positions: Sequence[int] | None = None, bins_split: str | None = None,
        save: bool = True, name: str | None = None,
    ) -> InterpolationGrid:
        """Counterfactual interpolations of ``n_rows`` real images to the 5 bin values.

        The targets are the bins of ``p_lo``/``p_hi`` (``docs/explanations.md``: 50 and one of
        80/90/95/99) on ``bins_split`` (default ``split``). Rows are the images at
        ``positions`` of the split sample, or drawn so that their own logits cover
        the baseline bins evenly (:func:`~dubfiv.explain.interpolation.select_rows`).
        """
        data = self.split_data(split)
        seed = self.seed if seed is None else seed
        if positions is None:
            chosen = select_rows(data.logits, self.bins(split), n_rows, seed)
        else:
            chosen = np.asarray(positions, dtype=np.int64)
        bins = self.bins(bins_split or split, p_lo, p_hi)
        images = self.images(split, data.indices[chosen])
        result = CounterfactualInterpolation(self.flow, self.head, bins, self.batch_size)(
            images, data.indices[chosen], [data.image_ids[p] for p in chosen],
            data.labels[chosen], SPLIT_ALIASES.get(split, split), self.label_attribute)
        self._save(result, save, name)
        return result

    def concept_inputs(
        self, split: str, indices: np.ndarray, layer: int, logits: np.ndarray | None = None
    ) -> ConceptInputs:
        """Activations at ``layer`` of dataset ``indices`` of ``split``, with logits and labels.

        ``logits`` (if known, e.g. from the cached split data) saves running the
        network beyond ``layer``.
        """
        data = self.open(split)
        acts, computed = collect_activations(self.flow, self.head, layer,
                                             self._batches(split, indices), logits is None)
        labels = np.array([float(data[int(i)][1][0]) for i in indices])
        return ConceptInputs(acts, computed if logits is None else np.asarray(logits, float),
                             labels, np.asarray(indices, dtype=np.int64),
                             split_cache.image_ids_of(data, indices))

    def concepts(
        self, method: ConceptMethod = "nmf", n_concepts: int = 8, layer: int | None = None,
        resolution: int = 8, n_fit_images: int = 1000, n_eval_images: int = 1000,
        render_split: str = "validation", n_per_sign: int = 2, n_images: int = 6,
        seed: int | None = None, save: bool = True, name: str | None = None,
    ) -> ConceptReport:
        """Concepts of a 1x1 convolution's output (:mod:`dubfiv.explain.concepts`).

        Args:
            method: ``"nmf"`` (on the signed parts) or ``"pca"``.
            n_concepts: number of concepts (6-10 recommended).
            layer: the layer index (default: the last ``InvConv1x1`` at
                ``resolution`` x ``resolution`` before the head's layer).
            n_fit_images: train images (a seeded sample) the concepts and the
                probe are fitted on.
            n_eval_images: validation/test images (the first of each split
                sample) used for the importance ranking and the probe.
            render_split: split whose images are ranked and shown.
            n_per_sign, n_images: concepts shown per sign, images per concept.
        """
        seed = self.seed if seed is None else seed
        if layer is None:
            layer = concept_layer(describe_layers(self.run.experiment.model),
                                  self.head.after_layer, resolution)
        train = self.open("train")
        fit = self.concept_inputs(
            "train", split_cache.sample_indices(len(train), n_fit_images, seed), layer)  # type: ignore[arg-type]
        evaluate = {split: self.concept_inputs(split, self.data[split].indices[:n_eval_images],
                                               layer, self.data[split].logits[:n_eval_images])
                    for split in ("validation", "test")}
        render = SPLIT_ALIASES.get(render_split, render_split)
        result = explain_concepts(
            self.flow, self.head, layer, fit, evaluate, render,
            lambda idx: self.images(render, idx), method=method, n_concepts=n_concepts,
            n_per_sign=n_per_sign, n_images=n_images, seed=seed, batch_size=self.batch_size,
            progress=self.progress)
        self._save(result, save, name)
        return result

    # ------------------------------------------------------------------ summary

    def summary(self, print_summary: bool = True) -> dict[str, Any]:
        """Layers, parameters, head layer and features, accuracy per split, bin values.

        Returns the summary as a dict and prints it unless ``print_summary=False``.
        """
        infos = describe_layers(self.run.experiment.model)
        head_info = infos[self.head.after_layer]
        kinds: dict[str, int] = {}
        for info in infos:
            kinds[info.kind] = kinds.get(info.kind, 0) + 1
        result = {
            "run_dir": str(self.run.run_dir),
            "config_source": self.run.config_source,
            "device": str(self.device),
            "dataset": str(self.dataset),
            "input_shape": list(self.run.input_shape),
            "n_layers": len(infos),
            "layer_kinds": kinds,
            "n_parameters_flow": sum(p.numel() for p in self.flow.parameters()),
            "n_parameters_head": sum(p.numel() for p in self.head.parameters()),
            "head": {"index": self.head_index, "after_layer": self.head.after_layer,
                     "layer_kind": head_info.kind, "layer_shape": list(head_info.output_shape),
                     "in_features": self.head.in_features, "label": self.label_attribute},
            "splits": {split: {"n_images": len(d), "accuracy": d.accuracy,
                               "from_cache": self.cache_reused.get(split, False)}
                       for split, d in self.data.items()},
            "bins": {"baseline": self.bins().to_dict(),
                     **{f"interpolation_p{p:g}": self.bins(p_lo=INTERPOLATION_P_LO,
                                                          p_hi=p).to_dict()
                        for p in (80.0, 90.0, 95.0, 99.0)}},
        }
        if print_summary:
            print(format_summary(result))
        return result


def format_summary(summary: dict[str, Any]) -> str:
    """The text :meth:`Analysis.summary` prints."""
    head = summary["head"]
    lines = [
        f"run:        {summary['run_dir']}  (config: {summary['config_source'].split(' (')[0]})",
        f"dataset:    {summary['dataset']}",
        f"device:     {summary['device']}; input {tuple(summary['input_shape'])}",
        f"layers:     {summary['n_layers']}  ("
        + ", ".join(f"{k} x{v}" for k, v in summary["layer_kinds"].items()) + ")",
        f"parameters: {summary['n_parameters_flow']:,} flow + {summary['n_parameters_head']:,} "
        "head",
        f"head {head['index']}:     after layer {head['after_layer']} ({head['layer_kind']}, "
        f"{tuple(head['layer_shape'])} = {head['in_features']} features), label "
        f"{head['label']!r}",
    ]
    for split, info in summary["splits"].items():
        role = {"validation": "treatment", "test": "task"}.get(split, split)
        lines.append(f"{split:<11} {info['n_images']} images ({role}), accuracy "
                     f"{info['accuracy']:.3f}" + ("  [cached]" if info["from_cache"] else ""))
    for name, bins in summary["bins"].items():
        values = ", ".join(f"{v:+.3f}" for v in bins["values"])
        lines.append(f"bins {name} (P{bins['p_lo']:g}/P{bins['p_hi']:g} of |logit|, "
                     f"validation): [{values}]")
    return "\n".join(lines)
