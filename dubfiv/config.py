"""Experiment configuration: TOML files <-> dataclasses.

An experiment is three parts, kept either in one TOML file (``[model]``,
``[train]``, ``[[classifiers]]``) or in three files (the original code's
``--model/--train/--classifiers`` form):

* :class:`ModelConfig` -- the invertible network, a list of layer groups
  (:class:`FadeOutAndPool`, :class:`FlowBlocks`), indexed as in ``docs/flow.md``;
* :class:`TrainConfig` -- data, optimiser, schedule, budget in samples;
* :class:`ClassifierConfig` -- the linear heads, each reading the output of
  one flow layer (``after_layer``).

Parsing is strict: an unknown key, a missing required key, a value of the
wrong type or out of its range is a :class:`ConfigError` that names the key and
the file. Every field carries a ``help`` text in its metadata, and every
numeric field its allowed :class:`Range` (checked by :func:`validate` when a
file is parsed, and again by the trainer for configs built in Python);
``scripts/config_reference.py`` turns both into the README's configuration
reference.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import toml

from dubfiv.config_ranges import AT_LEAST_1, BETA, NON_NEGATIVE, POSITIVE, PROBABILITY, Range
from dubfiv.errors import DubfivError
from two4two.files import read_toml

__all__ = [
    "ClassifierConfig",
    "ConfigError",
    "ExperimentConfig",
    "FadeOutAndPool",
    "FlowBlocks",
    "LayerConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Range",
    "ScheduleConfig",
    "TrainConfig",
    "dumps",
    "from_dict",
    "load_experiment",
    "load_experiment_parts",
    "save_experiment",
    "to_dict",
    "validate",
]

T = TypeVar("T")


class ConfigError(DubfivError, ValueError):
    """A configuration file or dictionary does not match the dataclasses."""


def _help(text: str, check: Range | None = None, length: int | None = None,
          **kwargs: Any) -> Any:
    """A dataclass field with a ``help`` text for the configuration reference, and for a
    numeric field its allowed :class:`Range` (``check``; for a list: of each entry, and
    ``length`` entries)."""
    metadata: dict[str, Any] = {"help": text}
    if check is not None:
        metadata["range"] = check
    if length is not None:
        metadata["length"] = length
    return dataclasses.field(metadata=metadata, **kwargs)


# --------------------------------------------------------------------------- schedules


@dataclasses.dataclass
class ScheduleConfig:
    """Learning-rate schedule as a function of samples seen ``s`` out of ``N``."""

    name: Literal["constant", "cosine", "fade_in_cosine", "hill"] = _help(
        "constant: lr; cosine: lr*(cos(pi*s/N)+1)/2; fade_in_cosine: cosine * "
        "min(1, s/fade_in_steps); hill: lr*(cos(2*pi*s/N - pi)+1)/2.",
        default="constant",
    )
    fade_in_steps: int = _help(
        "Samples (not batches) of the linear warm-up of `fade_in_cosine`.", NON_NEGATIVE,
        default=0,
    )


@dataclasses.dataclass
class OptimizerConfig:
    """A torch optimiser and its learning-rate schedule."""

    name: Literal["adam", "sgd"] = _help("Optimiser: `adam` or `sgd`.", default="adam")
    lr: float = _help("Peak learning rate.", POSITIVE, default=1e-3)
    weight_decay: float = _help("L2 weight decay.", NON_NEGATIVE, default=0.0)
    momentum: float = _help("SGD momentum (ignored by Adam).", BETA, default=0.0)
    betas: list[float] = _help(
        "Adam's (beta1, beta2) (ignored by SGD).", BETA, length=2,
        default_factory=lambda: [0.9, 0.999],
    )
    schedule: ScheduleConfig = _help(
        "Learning-rate schedule over the training samples.", default_factory=ScheduleConfig
    )


# --------------------------------------------------------------------------- model


@dataclasses.dataclass
class FadeOutAndPool:
    """Optional channel split (fade-out of a latent ``z``) then optional space-to-depth.

    Adds 0 or 1 ``Split`` layer (``channels_to_keep``) and 0 or 1 space-to-depth
    layer (``pool == 2``).
    """

    name: Literal["fade_out_and_pool"] = _help(
        "Layer group kind; selects this table.", default="fade_out_and_pool"
    )
    channels_to_keep: Literal["half", "no_fade_out"] | int = _help(
        '"half" fades out the second half of the channels as a latent; "no_fade_out" '
        "adds no split layer; an integer keeps that many channels.",
        AT_LEAST_1, default="half",
    )
    pool: int = _help(
        "2: one space-to-depth layer (2x2 pixels -> 4x channels); 1: none.", AT_LEAST_1,
        default=2,
    )


@dataclasses.dataclass
class FlowBlocks:
    """``n_blocks`` x (ActNorm, invertible 1x1 conv, coupling): 3 layers per block."""

    name: Literal["flow_blocks"] = _help(
        "Layer group kind; selects this table.", default="flow_blocks"
    )
    n_blocks: int = _help("Number of blocks (each adds 3 layers).", AT_LEAST_1, default=1)
    block_channels: int = _help("Hidden width of each coupling CNN.", AT_LEAST_1, default=128)
    conv_1x1_kernel: bool = _help(
        "Coupling CNN of three 1x1 convs without ActNorm (for 1x1 resolution).",
        default=False,
    )
    coupling: Literal["affine", "additive"] = _help(
        "affine: y = (sigmoid(s) + 0.5) * x + t; additive: y = x + t.", default="affine"
    )


LayerConfig = Union[FadeOutAndPool, FlowBlocks]  # noqa: UP007  (needed at runtime)


@dataclasses.dataclass
class ModelConfig:
    """The invertible network: layer groups, then a final ActNorm and 1x1 conv."""

    layers: list[LayerConfig] = _help(
        "Layer groups in order (`[[model.layers]]` tables with `name`).",
        default_factory=list,
    )
    image_size: int = _help("Input height and width in pixels.", AT_LEAST_1, default=128)
    in_channels: int = _help("Input channels (3 for RGB).", AT_LEAST_1, default=3)


@dataclasses.dataclass
class ClassifierConfig:
    """A linear, interpretable head ``logit = w . flatten(h) + b`` on one flow layer."""

    after_layer: int = _help("Index of the flow layer whose output the head reads.",
                             NON_NEGATIVE, default=0)
    in_channels: int = _help(
        "Number of input features (C*H*W of that layer's output; 0: inferred).", NON_NEGATIVE,
        default=0,
    )
    label: str = _help("Dataset attribute to predict (binary).", default="obj_name")
    loss_weight: float = _help("Weight of the head's BCE in the total loss.", NON_NEGATIVE,
                               default=1.0)
    label_noise: float = _help(
        "Probability of replacing each label with a random bit during training.",
        PROBABILITY, default=0.0,
    )
    backpropagate_loss: bool = _help(
        "Let the head's loss flow into the invertible network.", default=True
    )
    optimizer: OptimizerConfig = _help(
        "The head's own optimiser.",
        default_factory=lambda: OptimizerConfig(
            name="sgd", lr=0.1, schedule=ScheduleConfig(name="hill")
        ),
    )


# --------------------------------------------------------------------------- training


@dataclasses.dataclass
class TrainConfig:
    """Data, budget, optimiser and bookkeeping of a training run."""

    dataset: str = _help(
        "Dataset folder name under `dataset_dir` (a Two4Two dataset with train/"
        "validation/test splits).",
        default="two4two_obj_color_and_spherical_finer_search_spherical_uniform_0.33_uniform_0.15",
    )
    dataset_dir: str = _help("Folder that holds datasets.", default="data")
    n_train_samples: int = _help("Training budget in samples (not batches).", AT_LEAST_1,
                                 default=2_500_000)
    batch_size: int = _help("Global batch size (split across processes).", AT_LEAST_1,
                            default=40)
    seed: int = _help("Seed of initialisation, data order and noise.", NON_NEGATIVE,
                      default=0)
    optimizer: OptimizerConfig = _help(
        "Optimiser of the invertible network.",
        default_factory=lambda: OptimizerConfig(
            name="adam",
            lr=5e-5,
            schedule=ScheduleConfig(name="fade_in_cosine", fade_in_steps=200_000),
        ),
    )
    n_init_samples: int = _help(
        "Images used for the data-dependent ActNorm initialisation.", AT_LEAST_1, default=256
    )
    dequantize: bool = _help("Add uniform noise of width 1/256 to training images.", default=True)
    val_every_samples: int = _help("Validate every this many samples (0: only at the end).",
                                   NON_NEGATIVE, default=50_000)
    n_val_samples: int = _help("Validation images per evaluation (0: whole split).",
                               NON_NEGATIVE, default=1000)
    checkpoint_every_samples: int = _help(
        "Write a checkpoint every this many samples (0: only at the start and the end).",
        NON_NEGATIVE, default=100_000,
    )
    checkpoint_every_minutes: float = _help(
        "Also write a checkpoint once this many minutes of wall time have passed since the "
        "last one (0: never), so that a kill loses at most that much.", NON_NEGATIVE,
        default=30.0,
    )
    sample_every_samples: int = _help(
        "Save generated sample images every this many samples (0: never).", NON_NEGATIVE,
        default=100_000,
    )
    sample_temperature: float = _help("Temperature of the Gaussian for samples.", NON_NEGATIVE,
                                      default=0.7)
    max_grad_norm: float = _help("Clip the gradient norm to this (0: no clipping).",
                                 NON_NEGATIVE, default=0.0)
    num_workers: int = _help("DataLoader worker processes.", NON_NEGATIVE, default=0)
    logger: Literal["none", "tensorboard", "wandb"] = _help(
        "Optional experiment logger (needs the package installed).", default="none"
    )


@dataclasses.dataclass
class ExperimentConfig:
    """A whole experiment: model, training and heads."""

    model: ModelConfig = _help("The invertible network.", default_factory=ModelConfig)
    train: TrainConfig = _help("Training settings.", default_factory=TrainConfig)
    classifiers: list[ClassifierConfig] = _help(
        "Linear heads (`[[classifiers]]` tables).", default_factory=list
    )
    marker: str = _help("Prefix of the run directory name.", default="dubfiv")


# --------------------------------------------------------------------------- conversion


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"list of {_type_name(inner)}"
    if dataclasses.is_dataclass(tp):
        return f"table ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _fail(source: str, key: str, message: str) -> ConfigError:
    where = f"key '{key}'" if key else "top level"
    return ConfigError(f"{source}: {where}: {message}")


def validate(config: Any, source: str = "experiment config", prefix: str = "") -> None:
    """Check every numeric value of the config dataclass ``config`` (and of the ones it
    holds) against its field's :class:`Range`.

    Args:
        config: a config dataclass (e.g. :class:`ExperimentConfig`).
        source: the file (or other origin) named in the message.
        prefix: the dotted key of ``config`` itself (``"train"``; ``""`` for the top).

    Raises:
        ConfigError: a value out of range (``x.toml: key 'train.batch_size': must be at
            least 1, got 0``), or a list of the wrong length.
    """
    for field in dataclasses.fields(config):
        key = f"{prefix}.{field.name}" if prefix else field.name
        _check_value(getattr(config, field.name), field.metadata, key, source)


def _check_value(value: Any, metadata: Mapping[str, Any], key: str, source: str) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        validate(value, source, key)
    elif isinstance(value, list | tuple):
        length = metadata.get("length")
        if length is not None and len(value) != length:
            raise _fail(source, key, f"must have {length} entries, got {len(value)}")
        for i, item in enumerate(value):
            _check_value(item, metadata, f"{key}[{i}]", source)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        check = metadata.get("range")
        problem = check.problem(value) if check is not None else None
        if problem is not None:
            raise _fail(source, key, problem)


def _convert(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (recursively)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _fail(source, key, f"expected a table ({tp.__name__}), got {value!r}")
        return _from_mapping(tp, value, key, source)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(
            isinstance(a, bool) for a in allowed
        ):
            raise _fail(source, key, f"must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        tables = [o for o in options if dataclasses.is_dataclass(o)]
        if tables and isinstance(value, Mapping):
            return _convert_tagged(tables, value, key, source)
        errors = []
        for option in options:
            try:
                return _convert(option, value, key, source)
            except ConfigError as error:
                errors.append(str(error))
        raise _fail(source, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _fail(source, key, f"expected a list, got {value!r}")
        return [_convert(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(source, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(source, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(source, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(source, key, f"expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported annotation {tp!r} for key {key!r}")


def _convert_tagged(tables: list[type], value: Mapping, key: str, source: str) -> Any:
    """Pick the dataclass whose ``name`` literal matches ``value['name']``."""
    by_name = {}
    for table in tables:
        name_type = typing.get_type_hints(table)["name"]
        for tag in typing.get_args(name_type):
            by_name[tag] = table
    tag = value.get("name")
    if tag not in by_name:
        raise _fail(
            source, f"{key}.name" if key else "name",
            f"must be one of {sorted(by_name)}, got {tag!r}",
        )
    return _from_mapping(by_name[tag], value, key, source)


def _from_mapping(cls: type[T], data: Mapping, prefix: str, source: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        full = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise _fail(
            source, full,
            f"unknown key for {cls.__name__}; known keys: {', '.join(fields)}. "
            "Remove it or fix its spelling.",
        )
    kwargs = {}
    for name, field in fields.items():
        full = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], full, source)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise _fail(source, full, f"missing required key of {cls.__name__}.")
    return cls(**kwargs)


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "<dict>") -> T:
    """Build dataclass ``cls`` from nested mappings, strictly.

    Args:
        cls: a config dataclass (e.g. :class:`ExperimentConfig`).
        data: the parsed TOML.
        source: the file name used in error messages.

    Raises:
        ConfigError: unknown key, missing key, wrong type or a value out of its range
            (:func:`validate`); the message names the file and the dotted key.
    """
    config = _convert(cls, data, "", source)
    if dataclasses.is_dataclass(config):
        validate(config, source)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dictionary of a config dataclass (TOML-serialisable)."""
    return dataclasses.asdict(config)


def _read_toml(path: str | os.PathLike) -> dict[str, Any]:
    return read_toml(path, ConfigError)


def load_experiment(path: str | os.PathLike) -> ExperimentConfig:
    """Load one experiment TOML (``[model]``, ``[train]``, ``[[classifiers]]``)."""
    return from_dict(ExperimentConfig, _read_toml(path), source=str(path))


def _section(data: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    """The ``[name]`` table of a part file, or the whole file if it has none; a ``[name]``
    table beside other keys is an error (they would be ignored)."""
    if name not in data:
        return data
    extra = sorted(set(data) - {name})
    if extra:
        raise _fail(source, extra[0], f"expected only a [{name}] table in the `{name}` file "
                    "(for a whole experiment file use `experiment`).")
    return data[name]


def load_experiment_parts(
    model: str | os.PathLike,
    train: str | os.PathLike,
    classifiers: str | os.PathLike | None = None,
) -> ExperimentConfig:
    """Load the three-file form: a model TOML, a train TOML and a classifiers TOML.

    Each file may hold its section either at the top level or under its table
    name (``[model]``, ``[train]``, ``[[classifiers]]``).
    """
    model_data = _section(_read_toml(model), "model", str(model))
    train_data = _section(_read_toml(train), "train", str(train))
    heads: list[ClassifierConfig] = []
    if classifiers is not None:
        cls_data = _read_toml(classifiers)
        if set(cls_data) - {"classifiers"}:
            extra = sorted(set(cls_data) - {"classifiers"})[0]
            raise _fail(str(classifiers), extra, "expected only [[classifiers]] tables.")
        heads = _convert(
            list[ClassifierConfig], cls_data.get("classifiers", []), "classifiers",
            str(classifiers),
        )
        for i, head in enumerate(heads):
            validate(head, str(classifiers), f"classifiers[{i}]")
    return ExperimentConfig(
        model=from_dict(ModelConfig, model_data, source=str(model)),
        train=from_dict(TrainConfig, train_data, source=str(train)),
        classifiers=heads,
    )


def dumps(config: Any) -> str:
    """TOML text of a config dataclass."""
    return toml.dumps(to_dict(config))


def save_experiment(config: ExperimentConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as TOML atomically (temporary file, then rename)."""
    from dubfiv.files import atomic_write_text

    return atomic_write_text(path, dumps(config))
