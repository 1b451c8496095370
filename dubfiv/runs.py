"""Load a run directory -- ours or the paper's released one -- into flow + heads + config.

A run directory holds ``models/models.torch`` (a dict with at least
``model_state`` and ``classifiers``) and ``models/experiment.toml``
(``docs/runs.md``; the layout is :mod:`dubfiv.rundir`, the released run
``docs/released_model.md``).

The model is rebuilt from ``experiment.toml`` when it parses strictly -- the
released TOML's extra keys (:attr:`~dubfiv.released.ReleasedModel.extra_toml_keys`,
e.g. ``output_dir``) are accepted with a warning naming them -- and its model
matches the weights. Otherwise (a TOML of the original code in another form)
the architecture is inferred from the state dict
(:func:`dubfiv.flow.model_config_from_state_dict`), trying the released input
size first, and each head's ``after_layer`` is read from the raw TOML, its width
from ``fc.weight``; a lone head of the released width gets the released position
(:data:`~dubfiv.released.RELEASED_MODEL`). A checkpoint of ``dubfiv_train``
(``format`` :data:`~dubfiv.checkpoint.CHECKPOINT_FORMAT`) is never inferred:
if its ``experiment.toml`` parses but does not fit the weights, the two files
belong to different runs and :func:`load_run` says so. Loading imports nothing
of the trainer.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dubfiv import rundir
from dubfiv.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_checkpoint
from dubfiv.config import (
    ClassifierConfig,
    ConfigError,
    ExperimentConfig,
    from_dict,
    load_experiment,
)
from dubfiv.devices import resolve_device as _resolve_device
from dubfiv.flow import SequentialFlow, build_flow, flow_from_state_dict, strip_module_prefix
from dubfiv.flow import model_config_from_state_dict as infer_model_config
from dubfiv.heads import LinearHead, build_heads, check_heads
from dubfiv.released import RELEASED_MODEL
from two4two.files import read_toml

__all__ = ["ReleasedKeysWarning", "Run", "RunError", "find_checkpoint", "load_run",
           "resolve_device"]


class RunError(CheckpointError):
    """A run directory is missing or its files do not describe a model."""


class ReleasedKeysWarning(UserWarning):
    """A run's ``experiment.toml`` has keys of the released run that are ignored."""


@dataclasses.dataclass
class Run:
    """A trained model and what it was trained with.

    Attributes:
        flow: the invertible network (in eval mode, on the requested device).
        heads: the linear heads, in config order (``heads[i].after_layer``).
        experiment: the experiment config (for the released run: the inferred
            model, the heads from the raw TOML, and default training settings).
        history: the training history (ours: ``train`` / ``validation`` records).
        run_dir: the run directory.
        config_source: ``"experiment.toml"``, ``"checkpoint"`` or ``"state_dict"``
            (architecture inferred from the weights), with the reason appended.
        raw_experiment: the run's ``experiment.toml`` as parsed TOML (``{}`` if absent).
        checkpoint_info: the checkpoint's other entries (``samples_seen``, ...)
            without the weights and optimiser states.
    """

    flow: SequentialFlow
    heads: nn.ModuleList
    experiment: ExperimentConfig
    history: Any
    run_dir: Path
    config_source: str = "experiment.toml"
    raw_experiment: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint_info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.flow.parameters()).device

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-image input ``(C, H, W)``."""
        model = self.experiment.model
        return (model.in_channels, model.image_size, model.image_size)

    def head(self, index: int) -> LinearHead:
        """Head ``index``.

        Raises:
            RunError: the run has no such head.
        """
        if not 0 <= index < len(self.heads):
            raise RunError(f"{self.run_dir}: head {index} does not exist (the run has "
                           f"{len(self.heads)} heads)")
        return self.heads[index]  # type: ignore[return-value]

    def dataset_location(self, dataset_dir: str | os.PathLike | None = None,
                         dataset: str | None = None) -> tuple[Path, str]:
        """``(dataset_dir, dataset)``: the given ones, else the run's training dataset."""
        return (Path(dataset_dir if dataset_dir is not None else self.experiment.train.dataset_dir),
                dataset or self.experiment.train.dataset)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA if available, else CPU (:func:`dubfiv.devices.resolve_device`).

    Raises:
        RunError: CUDA was asked for but is not available.
    """
    return _resolve_device(device, error=RunError)


def find_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The run's checkpoint (:func:`dubfiv.rundir.find_checkpoint`).

    Raises:
        RunError: the directory or the checkpoint is missing (the message names the path).
    """
    return rundir.find_checkpoint(run_dir, error=RunError)


def _walk_dicts(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        yield value
        for item in value.values():
            yield from _walk_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_dicts(item)


def _find_int(raw: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    for table in _walk_dicts(raw):
        for name in names:
            value = table.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def _heads_from_raw(
    raw: Mapping[str, Any], head_states: list[Mapping[str, torch.Tensor]], where: Path
) -> list[ClassifierConfig]:
    tables = [t for t in _walk_dicts(raw) if isinstance(t.get("after_layer"), int)]
    if not tables and len(head_states) == 1 and "fc.weight" in head_states[0] \
            and int(head_states[0]["fc.weight"].shape[1]) == RELEASED_MODEL.head_in_features:
        # the released run's one head; check_heads verifies the layer's width
        tables = [{"after_layer": RELEASED_MODEL.head_after_layer,
                   "label": RELEASED_MODEL.head_label}]
    if len(tables) != len(head_states):
        raise RunError(
            f"{where}: found {len(tables)} tables with 'after_layer' but the checkpoint has "
            f"{len(head_states)} heads; cannot tell which layer each head reads."
        )
    heads = []
    for table, state in zip(tables, head_states, strict=True):
        label = table.get("label")
        heads.append(ClassifierConfig(
            after_layer=table["after_layer"],
            in_channels=int(state["fc.weight"].shape[1]),
            label=label if isinstance(label, str) else "obj_name",
        ))
    return heads


def _read_raw(path: Path) -> dict[str, Any]:
    """The parsed TOML ``path``; ``{}`` if it is missing or unreadable."""
    try:
        return read_toml(path, RunError)
    except RunError:
        return {}


CANDIDATE_SIZES = tuple(dict.fromkeys((RELEASED_MODEL.image_size, 64, 128, 256, 32, 16, 512, 8)))
"""Input sizes tried, in order, when a TOML of the original code does not state
``image_size``: the released model's first."""


def _infer_experiment(
    model_state: Mapping[str, torch.Tensor],
    head_states: list[Mapping[str, torch.Tensor]],
    raw: Mapping[str, Any],
    toml_path: Path,
    path: Path,
    reasons: list[str],
) -> tuple[ExperimentConfig, SequentialFlow]:
    """Architecture from the weights, heads from the raw TOML; the input size from the
    TOML (``image_size``) or else the first candidate size at which every head's layer
    has as many features as its ``fc.weight``."""
    in_channels = RELEASED_MODEL.in_channels  # the raw TOML's `in_channels` is a head's width
    stated = _find_int(raw, ("image_size", "img_size"))
    classifiers = _heads_from_raw(raw, head_states, toml_path)
    if not any(isinstance(t.get("after_layer"), int) for t in _walk_dicts(raw)):
        reasons = [*reasons, f"after_layer {RELEASED_MODEL.head_after_layer} assumed (the "
                   "released model's head), as the TOML names none"]
    errors = []
    for size in (stated,) if stated else CANDIDATE_SIZES:
        try:
            model = infer_model_config(model_state, in_channels=in_channels, image_size=size)
            experiment = ExperimentConfig(model=model, classifiers=classifiers)
            check_heads(classifiers, model)
        except ConfigError as error:
            errors.append(f"at {size}x{size}: {error}")
            continue
        flow = flow_from_state_dict(model_state, in_channels=in_channels, image_size=size)
        return experiment, flow
    raise RunError(f"{path}: cannot rebuild the model from its weights ("
                   + "; ".join(errors + reasons) + ")")


def _load_toml(toml_path: Path, raw: Mapping[str, Any]) -> tuple[ExperimentConfig, list[str]]:
    """The experiment of ``toml_path``, strictly parsed except for the released run's extra
    top-level keys (returned; a :class:`ReleasedKeysWarning` names them).

    Raises:
        ConfigError: the TOML is missing or invalid, or has any other unknown key.
    """
    ignored = sorted(key for key in raw if key in RELEASED_MODEL.extra_toml_keys)
    if not ignored:
        return load_experiment(toml_path), []
    experiment = from_dict(ExperimentConfig, {k: v for k, v in raw.items() if k not in ignored},
                           source=str(toml_path))
    warnings.warn(f"{toml_path}: ignoring the released run's key(s) {', '.join(ignored)} "
                  "(not part of our experiment config)", ReleasedKeysWarning, stacklevel=3)
    return experiment, ignored


def _mismatch(path: Path, toml_path: Path, reason: str) -> RunError:
    return RunError(
        f"{path} does not fit {toml_path} ({reason}): the checkpoint of dubfiv_train was "
        "written for another experiment (copied from another run?); put back the run's own "
        f"{path.name}, or the experiment.toml it was trained with (its copy is the "
        "checkpoint's 'experiment' entry)")


def load_run(run_dir: str | os.PathLike, device: str | torch.device | None = None) -> Run:
    """Load a run directory (ours or the paper's released layout) onto ``device``.

    Raises:
        RunError / CheckpointError: missing directory or checkpoint, weights that
            match neither the config nor a known architecture, or a checkpoint of
            ``dubfiv_train`` that does not fit the run's experiment.toml (the message
            names the paths).
    """
    run_dir = Path(run_dir)
    path = find_checkpoint(run_dir)
    state = load_checkpoint(path, map_location="cpu")
    if not isinstance(state.get("model_state"), Mapping):
        raise RunError(f"{path}: no 'model_state' in the checkpoint (keys: {sorted(state)}).")
    model_state = strip_module_prefix(state["model_state"])
    head_states = [strip_module_prefix(h) for h in state.get("classifiers") or []]
    toml_path = rundir.experiment_beside(path)
    raw = _read_raw(toml_path)

    experiment: ExperimentConfig | None = None
    source = "experiment.toml"
    reasons = []
    try:
        experiment, ignored = _load_toml(toml_path, raw)
        if ignored:
            source = f"experiment.toml (released keys ignored: {', '.join(ignored)})"
    except ConfigError as error:
        reasons.append(str(error))
        if isinstance(state.get("experiment"), Mapping):
            try:
                experiment = from_dict(ExperimentConfig, state["experiment"], f"{path}:experiment")
                source = "checkpoint"
            except ConfigError as inner:
                reasons.append(str(inner))
    flow: SequentialFlow | None = None
    if experiment is not None:
        try:
            flow = build_flow(experiment.model, random_init=False)
            flow.load_state_dict(model_state, strict=True)
            if len(experiment.classifiers) != len(head_states):
                raise RunError(f"{len(experiment.classifiers)} classifier configs but "
                               f"{len(head_states)} head states")
        except (RuntimeError, ConfigError) as error:
            first = str(error).splitlines()[0]
            if state.get("format") == CHECKPOINT_FORMAT and source == "experiment.toml":
                raise _mismatch(path, toml_path, first) from error
            reasons.append(f"{source} does not match the weights: {first}")
            experiment, flow = None, None
    if experiment is None or flow is None:
        experiment, flow = _infer_experiment(model_state, head_states, raw, toml_path, path,
                                             reasons)
        source = "state_dict (" + "; ".join(reasons) + ")"

    heads = build_heads(experiment.classifiers, experiment.model)
    for i, (head, head_state) in enumerate(zip(heads, head_states, strict=True)):
        try:
            head.load_state_dict(head_state, strict=True)
        except RuntimeError as error:
            raise RunError(f"{path}: head {i} does not fit its config: {error}") from error
    target = resolve_device(device)
    flow.to(target).eval()
    heads.to(target).eval()
    skip = {"model_state", "classifiers", "optimizer", "classifier_optimizers", "grad_scaler",
            "history"}
    info = {key: value for key, value in state.items() if key not in skip}
    return Run(flow=flow, heads=heads, experiment=experiment, history=state.get("history"),
               run_dir=run_dir, config_source=source, raw_experiment=raw,
               checkpoint_info=info)
