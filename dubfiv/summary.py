"""Model summaries without weights: layers, parameters, stage shapes and heads.

Used by ``dubfiv_model_summary`` and ``dubfiv_print_shapes``. The model is built
on PyTorch's ``meta`` device, so even the paper's 268M-parameter network is
summarised in seconds without allocating its weights.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from dubfiv.config import ExperimentConfig, FadeOutAndPool, load_experiment
from dubfiv.flow import FINAL_GROUP, LayerInfo, build_flow, describe_layers
from dubfiv.heads import check_heads
from dubfiv.rundir import RunPaths

__all__ = ["experiment_of", "format_layers", "format_summary", "layer_table", "summarize"]


def experiment_of(config_or_run_dir: str | os.PathLike) -> tuple[ExperimentConfig, str]:
    """The experiment of a TOML file or a run directory, and where it came from.

    A run directory's ``models/experiment.toml`` is used if it parses strictly;
    otherwise (the paper's released run) the run is loaded and the architecture
    inferred from its weights (:func:`dubfiv.runs.load_run`).
    """
    path = Path(config_or_run_dir)
    if path.is_dir():
        from dubfiv.config import ConfigError

        try:
            return load_experiment(RunPaths(path).experiment), str(path)
        except ConfigError:
            from dubfiv.runs import load_run

            return load_run(path, device="cpu").experiment, str(path)
    return load_experiment(path), str(path)


def _with_size(experiment: ExperimentConfig, image_size: int | None) -> ExperimentConfig:
    """``experiment`` at another input size; head widths are then re-inferred."""
    if image_size is None or image_size == experiment.model.image_size:
        return experiment
    return dataclasses.replace(
        experiment, model=dataclasses.replace(experiment.model, image_size=image_size),
        classifiers=[dataclasses.replace(c, in_channels=0) for c in experiment.classifiers])


def _stages(infos: list[LayerInfo], experiment: ExperimentConfig) -> list[dict[str, Any]]:
    """Layers grouped into stages: a stage starts at each ``fade_out_and_pool`` group;
    the final ActNorm and 1x1 conv form the stage ``"final"``."""
    starts = sorted({i for i, group in enumerate(experiment.model.layers)
                     if isinstance(group, FadeOutAndPool)} | {0})
    stages: list[dict[str, Any]] = []
    for info in infos:
        if info.group == FINAL_GROUP:
            name = "final"
        else:
            name = str(sum(1 for start in starts if start <= info.group))
        if not stages or stages[-1]["name"] != name:
            stages.append({"name": name, "first_layer": info.index})
        stages[-1]["last_layer"] = info.index
        stages[-1]["output_shape"] = list(info.output_shape)
    return stages


def summarize(experiment: ExperimentConfig, image_size: int | None = None) -> dict[str, Any]:
    """Counts and shapes of ``experiment`` (at ``image_size`` if given).

    Returns a JSON-serialisable dict with ``n_layers``, ``n_parameters``
    (flow + heads), ``n_parameters_flow``, ``n_parameters_heads``,
    ``input_shape``, ``stages`` (``name``, ``first_layer``, ``last_layer``,
    ``output_shape``) and ``heads`` (``after_layer``, ``in_features``, ``label``,
    ``layer_kind``, ``layer_output_shape``).

    Raises:
        ConfigError: the shapes do not work out, or a head does not fit its layer.
    """
    experiment = _with_size(experiment, image_size)
    model = experiment.model
    infos = describe_layers(model)
    sizes = check_heads(experiment.classifiers, model)
    with torch.device("meta"):
        flow = build_flow(model, random_init=False)
    n_flow = sum(p.numel() for p in flow.parameters())
    n_heads = sum(n + 1 for n in sizes)
    heads = [{"after_layer": c.after_layer, "in_features": n, "label": c.label,
              "layer_kind": infos[c.after_layer].kind,
              "layer_output_shape": list(infos[c.after_layer].output_shape)}
             for c, n in zip(experiment.classifiers, sizes, strict=True)]
    return {
        "n_layers": len(infos),
        "n_parameters": n_flow + n_heads,
        "n_parameters_flow": n_flow,
        "n_parameters_heads": n_heads,
        "input_shape": [model.in_channels, model.image_size, model.image_size],
        "stages": _stages(infos, experiment),
        "heads": heads,
    }


def _shape(shape: list[int] | tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def format_summary(summary: dict[str, Any], source: str = "") -> str:
    """Human-readable text of :func:`summarize`'s result."""
    lines = []
    if source:
        lines.append(f"model: {source} (input {_shape(summary['input_shape'])})")
    lines.append(f"layers: {summary['n_layers']}")
    lines.append(f"parameters: {summary['n_parameters']:,} (flow "
                 f"{summary['n_parameters_flow']:,}, heads {summary['n_parameters_heads']:,})")
    lines.append(f"{'stage':<7}{'layers':<12}output shape")
    for stage in summary["stages"]:
        span = f"{stage['first_layer']}-{stage['last_layer']}"
        lines.append(f"{stage['name']:<7}{span:<12}{_shape(stage['output_shape'])}")
    for i, head in enumerate(summary["heads"]):
        lines.append(f"head {i}: after layer {head['after_layer']} ({head['layer_kind']}, "
                     f"{_shape(head['layer_output_shape'])}) -> {head['in_features']} features, "
                     f"label {head['label']}")
    if not summary["heads"]:
        lines.append("heads: none")
    return "\n".join(lines)


def layer_table(experiment: ExperimentConfig, image_size: int | None = None) -> list[dict]:
    """One ``{index, kind, output_shape}`` dict per layer (``output_shape`` as a list)."""
    infos = describe_layers(_with_size(experiment, image_size).model)
    return [{"index": i.index, "kind": i.kind, "output_shape": list(i.output_shape)}
            for i in infos]


def format_layers(rows: list[dict]) -> str:
    """The layer table as aligned text: index, type, output shape."""
    lines = [f"{'index':>5}  {'type':<15} output shape"]
    lines += [f"{r['index']:>5}  {r['kind']:<15} {_shape(r['output_shape'])}" for r in rows]
    return "\n".join(lines)
