"""Concept explanations end to end: fit, rank, probe and render (see :mod:`.concepts`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from dubfiv.explain.concepts import (
    ConceptBasis,
    ConceptMethod,
    concept_derivatives,
    concept_probe,
    explained_variance,
    fit_concepts,
    random_basis_explained_variance,
    rank_concepts,
    to_samples,
)
from dubfiv.explain.figures import image_grid
from dubfiv.explain.records import save_png, write_json
from dubfiv.flow import SequentialFlow
from dubfiv.heads import LinearHead

__all__ = ["ConceptInputs", "ConceptReport", "explain_concepts", "outline_masks"]


@dataclasses.dataclass
class ConceptInputs:
    """Activations of ``N`` images of one split at the concept layer.

    Attributes:
        acts: ``[N, C, h, w]`` float32 (CPU).
        logits: ``[N]`` head logits; ``labels``: ``[N]`` (0/1).
        indices: ``[N]`` dataset indices; ``image_ids``: ``N`` scene ids.
    """

    acts: torch.Tensor
    logits: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    image_ids: list[str]


def outline_masks(maps: np.ndarray, size: tuple[int, int], threshold: float) -> np.ndarray:
    """Upsample maps ``[M, h, w]`` bilinearly to ``size`` and threshold: bool ``[M, H, W]``."""
    up = F.interpolate(torch.as_tensor(maps, dtype=torch.float32)[:, None], size=size,
                       mode="bilinear", align_corners=False)[:, 0]
    return (up >= threshold).numpy()


@dataclasses.dataclass
class ConceptReport:
    """Concepts of one layer, their importance, predictive power and top images.

    Attributes:
        method, layer, layer_shape: the factorisation and the layer ``(C, h, w)``.
        basis: the fitted :class:`ConceptBasis` (``directions`` ``[K, C]``).
        fit_explained_variance / random_explained_variance: fraction of the
            variance of the fitted positions the concepts (resp. a random basis
            of the same rank) reconstruct.
        mean_derivative: ``[K]`` mean directional derivative of the logit (per
            unit of the direction) over the render split.
        correlation: ``[K]`` corr(contribution, logit) over the render split.
        ranking: concept indices by decreasing ``|correlation|``.
        shown: per rendered concept: ``concept``, ``sign`` (+1 raises the logit with
            its expression), ``correlation``, ``positions``, ``indices``,
            ``image_ids``, ``scores`` of its top images.
        probe: per split, how well the pooled concept scores predict label/logit.
        render_split: the split the importance and the images come from.
        images: ``[rows, n_images, 3, H, W]`` top images; ``outlines``: bool
            ``[rows, n_images, H, W]`` regions where the concept is active.
        threshold: ``[K]`` activity threshold of each concept map (its
            90th percentile over all positions of the render split).
    """

    method: str
    layer: int
    layer_shape: tuple[int, int, int]
    basis: ConceptBasis
    fit_explained_variance: float
    random_explained_variance: float
    mean_derivative: np.ndarray
    correlation: np.ndarray
    ranking: np.ndarray
    shown: list[dict[str, Any]]
    probe: dict[str, dict[str, float]]
    render_split: str
    images: torch.Tensor | None
    outlines: np.ndarray | None
    threshold: np.ndarray

    def figure(self, title: str | None = None) -> Figure:
        """One row per shown concept: its top images, active region outlined."""
        if self.images is None or self.outlines is None:
            raise ValueError("ConceptReport has no images to draw")
        rows = [f"concept {s['concept']}\n{'raises' if s['sign'] > 0 else 'lowers'} logit\n"
                f"r = {s['correlation']:+.2f}" for s in self.shown]
        cells = [[f"{v:.2f}" for v in s["scores"]] for s in self.shown]
        return image_grid(self.images, row_labels=rows, cell_labels=cells,
                          outlines=self.outlines,
                          title=title or (f"{self.method.upper()} concepts of layer {self.layer} "
                                          f"{tuple(self.layer_shape)} ({self.render_split})"))

    def record(self) -> dict[str, Any]:
        """JSON-ready: directions, importance, ranking, probe accuracies, shown images."""
        return {
            "kind": "concepts",
            "method": self.method,
            "layer": self.layer,
            "layer_shape": list(self.layer_shape),
            "n_concepts": self.basis.n_concepts,
            "render_split": self.render_split,
            "directions": self.basis.directions,
            "fit_info": self.basis.info,
            "fit_explained_variance": self.fit_explained_variance,
            "random_basis_explained_variance": self.random_explained_variance,
            "mean_derivative": self.mean_derivative,
            "correlation": self.correlation,
            "ranking": self.ranking,
            "threshold": self.threshold,
            "probe": self.probe,
            "shown": self.shown,
        }

    def save(self, directory: str | os.PathLike, name: str | None = None) -> dict[str, Path]:
        """Write ``<name>.png`` and ``<name>.json`` (default name ``concepts_<method>``)."""
        directory = Path(directory)
        name = name or f"concepts_{self.method}"
        paths = {"json": write_json(directory / f"{name}.json", self.record())}
        if self.images is not None:
            paths["png"] = save_png(self.figure(), directory / f"{name}.png")
        return paths


def _pooled(basis: ConceptBasis, inputs: ConceptInputs) -> np.ndarray:
    return basis.maps(inputs.acts).mean(axis=(2, 3))


def _choose_shown(correlation: np.ndarray, n_per_sign: int) -> list[tuple[int, int]]:
    """Up to ``n_per_sign`` concepts with the largest positive and negative correlation."""
    order = np.argsort(-np.abs(correlation), kind="stable")
    positive = [int(k) for k in order if correlation[k] > 0][:n_per_sign]
    negative = [int(k) for k in order if correlation[k] < 0][:n_per_sign]
    chosen = [(k, 1) for k in positive] + [(k, -1) for k in negative]
    return sorted(chosen, key=lambda item: -abs(correlation[item[0]]))


def explain_concepts(
    flow: SequentialFlow,
    head: LinearHead,
    layer: int,
    fit: ConceptInputs,
    evaluate: Mapping[str, ConceptInputs],
    render_split: str,
    load_images: Callable[[np.ndarray], torch.Tensor] | None,
    method: ConceptMethod = "nmf",
    n_concepts: int = 8,
    n_per_sign: int = 2,
    n_images: int = 6,
    seed: int = 0,
    batch_size: int = 16,
    max_positions: int = 40_000,
    progress: bool = False,
) -> ConceptReport:
    """Fit concepts on ``fit`` (train), rank them on ``evaluate[render_split]``, probe, render.

    Args:
        flow, head: the model (eval mode).
        layer: the concept layer (an ``InvConv1x1`` before the head's layer).
        fit: train-split activations: the factorisation and the probe are fitted on them.
        evaluate: activations per split (``validation``, ``test``) for the probe.
        render_split: the key of ``evaluate`` whose images are ranked and shown.
        load_images: dataset indices ``[M]`` -> images ``[M, 3, H, W]`` in [0, 1]
            (``None``: no images, no figure).
        method, n_concepts, seed, max_positions: see :func:`fit_concepts`.
        n_per_sign: concepts shown per sign of their correlation with the logit.
        n_images: images shown per concept (those with the highest pooled score).
        batch_size: images per JVP (each with all ``K`` directions).
        progress: show a progress bar for the JVPs.
    """
    basis = fit_concepts(fit.acts, method, n_concepts, seed, max_positions)
    samples = to_samples(fit.acts)
    if len(samples) > max_positions:
        rng = np.random.default_rng(seed + 1)
        samples = samples[rng.choice(len(samples), size=max_positions, replace=False)]
    fit_ev = explained_variance(samples, basis.reconstruct(samples))
    random_ev = random_basis_explained_variance(samples, n_concepts, seed)

    render = evaluate[render_split]
    maps = basis.maps(render.acts)  # [N, K, h, w]
    pooled = maps.mean(axis=(2, 3))
    _, derivs = concept_derivatives(flow, head, layer, render.acts, basis.directions, batch_size,
                                    progress)
    _, correlation = rank_concepts(pooled, derivs, render.logits)
    ranking = np.argsort(-np.abs(correlation), kind="stable")
    threshold = np.quantile(maps.transpose(1, 0, 2, 3).reshape(maps.shape[1], -1), 0.9, axis=1)

    probe = concept_probe(
        (_pooled(basis, fit), fit.labels, fit.logits),
        {split: (_pooled(basis, inputs), inputs.labels, inputs.logits)
         for split, inputs in evaluate.items()}, seed)

    shown = []
    for k, sign in _choose_shown(correlation, n_per_sign):
        top = np.argsort(-pooled[:, k], kind="stable")[:n_images]
        shown.append({"concept": k, "sign": sign, "correlation": float(correlation[k]),
                      "mean_derivative": float(derivs[:, k].mean()),
                      "positions": top, "indices": render.indices[top],
                      "image_ids": [render.image_ids[p] for p in top],
                      "scores": pooled[top, k]})
    images = outlines = None
    if load_images is not None and shown:
        flat = np.concatenate([s["indices"] for s in shown])
        loaded = load_images(flat).float().cpu()
        size = tuple(loaded.shape[-2:])
        images = loaded.reshape(len(shown), -1, *loaded.shape[1:])
        outlines = np.stack([
            outline_masks(maps[s["positions"], s["concept"]], size, threshold[s["concept"]])
            for s in shown])
    c, h, w = render.acts.shape[1:]
    return ConceptReport(
        method=basis.method, layer=layer, layer_shape=(c, h, w), basis=basis,
        fit_explained_variance=fit_ev, random_explained_variance=random_ev,
        mean_derivative=derivs.mean(0), correlation=correlation, ranking=ranking,
        shown=shown, probe=probe, render_split=render_split, images=images,
        outlines=outlines, threshold=threshold)
