"""Families of dataset TOMLs over a grid of bias parameters or split sizes.

``dubfiv_dataset_configs --name GENERATOR --config BASE.toml --output_dir DIR``
takes one base dataset TOML (one ``[[dataset]]`` table, see ``docs/datasets.md``) and
writes one TOML per point of a cartesian grid. A grid axis is either

* a sampler parameter -- a field of the base's sampler class with a scalar
  default, e.g. ``obj_color_slope``, ``obj_color_uniform_prob``,
  ``spherical_uniform_prob`` of ``SamplerObjColorAndSpherical``: it is set in
  ``[dataset.sampler_config]``; or
* a split size ``<split>.n_samples`` (e.g. ``train.n_samples``) of a split the
  base defines.

Each variant's file name and its dataset ``output_dir`` (beside the base's
``output_dir``) is ``<prefix>_<label>_<value>_..._<label>_<value><suffix>``, so
the folder names say what varies. The built-in generators (:data:`GENERATORS`)
name their variants like the paper's released datasets: the ``finer_search``
point ``spherical_uniform_prob = 0.33``, ``obj_color_uniform_prob = 0.15`` is
``two4two_obj_color_and_spherical_finer_search_spherical_uniform_0.33_uniform_0.15``.

Every variant is parsed with :func:`two4two.dataset_config.parse_dataset_configs`
(which also builds its sampler and draws a trial scene) before any file is
written; each file is written atomically.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import toml

from dubfiv.workflow.errors import WorkflowError
from dubfiv.workflow.toml_text import dumps_dataset_document, format_value
from two4two import utils
from two4two.dataset_config import DatasetConfig, DatasetConfigError, load_dataset_configs
from two4two.dataset_config import parse_dataset_configs as parse_configs
from two4two.files import read_toml

__all__ = [
    "GENERATORS",
    "SPLIT_SIZE_SUFFIX",
    "Axis",
    "Generator",
    "Variant",
    "build_variants",
    "describe_generators",
    "load_grid_file",
    "parse_grid_arg",
    "sampler_parameters",
    "write_variants",
]

SPLIT_SIZE_SUFFIX = ".n_samples"
"""A grid key ``<split>.n_samples`` varies the size of that split."""

Scalar = bool | int | float | str


@dataclasses.dataclass
class Generator:
    """A named family of dataset configs.

    Attributes:
        name: what ``--name`` selects.
        description: one line for ``--list``.
        grid: key -> values, in naming order.
        labels: key -> its word in names (default: the key, ``.`` as ``_``).
        prefix: first part of the names (default: the base's output folder name).
        suffix: appended to the names (e.g. ``_unbiased``).
        settings: dataset-level keys set in every variant (e.g. ``unbiased = true``).
    """

    name: str
    description: str
    grid: dict[str, list[Scalar]]
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    prefix: str | None = None
    suffix: str = ""
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


RELEASED_PREFIX = "two4two_obj_color_and_spherical_finer_search"
"""Name prefix of the paper's released datasets."""
_RELEASED_LABELS = {"spherical_uniform_prob": "spherical_uniform",
                    "obj_color_uniform_prob": "uniform"}
_FINER_SEARCH = {"spherical_uniform_prob": [0.0, 0.2, 0.33, 0.5],
                 "obj_color_uniform_prob": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3]}
_RELEASED_POINT: dict[str, list[Scalar]] = {"spherical_uniform_prob": [0.33],
                                            "obj_color_uniform_prob": [0.15]}

GENERATORS: dict[str, Generator] = {g.name: g for g in [
    Generator("finer_search", "the bias search the released dataset came from (released "
              "point: spherical_uniform_prob 0.33, obj_color_uniform_prob 0.15)",
              _FINER_SEARCH, _RELEASED_LABELS, RELEASED_PREFIX),
    Generator("finer_search_unbiased", "finer_search with unbiased = true (only "
              "arm_position carries the class), for the supervised ground truth",
              _FINER_SEARCH, _RELEASED_LABELS, RELEASED_PREFIX, "_unbiased",
              {"unbiased": True}),
    Generator("released", "only the released dataset's point of finer_search",
              _RELEASED_POINT, _RELEASED_LABELS, RELEASED_PREFIX),
    Generator("released_unbiased", "only the released unbiased dataset's point",
              _RELEASED_POINT, _RELEASED_LABELS, RELEASED_PREFIX, "_unbiased",
              {"unbiased": True}),
    Generator("obj_color_slope", "how fast the object colour's range narrows with the "
              "arm position (the strength of the colour bias)",
              {"obj_color_slope": [1.0, 2.5, 5.0, 10.0]}),
    Generator("train_size", "training set sizes (needs a split named train)",
              {"train.n_samples": [5000, 10000, 20000, 40000, 60000]}),
]}


@dataclasses.dataclass
class Axis:
    """One grid dimension: ``key`` takes ``values``; ``source`` says where it was given."""

    key: str
    values: list[Scalar]
    label: str
    source: str


@dataclasses.dataclass
class Variant:
    """One dataset TOML of a family (validated, not yet written)."""

    name: str
    assignments: dict[str, Scalar]
    path: Path
    text: str
    config: DatasetConfig


# --------------------------------------------------------------------------- grid input


def parse_scalar(text: str) -> Scalar:
    """A TOML scalar (``0.15``, ``1000``, ``true``, ``"a"``); anything else as a string."""
    try:
        value = toml.loads(f"v = {text}")["v"]
    except (toml.TomlDecodeError, IndexError, ValueError):
        return text
    return value if isinstance(value, Scalar) else text


def parse_grid_arg(text: str) -> tuple[str, list[Scalar]]:
    """``key=v1,v2,...`` -> ``(key, [v1, v2, ...])``.

    Raises:
        WorkflowError: no ``=``, an empty key, or an empty value.
    """
    key, sep, values = text.partition("=")
    key = key.strip()
    items = [item.strip() for item in values.split(",")]
    if not sep or not key or not all(items):
        raise WorkflowError(f"`grid_args` {text!r}: expected key=value1,value2,... "
                            "(e.g. `grid_args` obj_color_uniform_prob=0.05,0.15,0.3)")
    return key, [parse_scalar(item) for item in items]


def _dotted(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables as dotted keys: ``train.n_samples = [..]`` (parsed as
    ``{"train": {"n_samples": [..]}}``) -> ``{"train.n_samples": [..]}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load_grid_file(path: str | Path) -> tuple[dict[str, list[Scalar]], dict[str, str]]:
    """Read a grid TOML: ``[grid]`` key = [values] (required), ``[labels]`` key = "word".

    Raises:
        WorkflowError: missing file, invalid TOML, unknown tables, or bad values.
    """
    path = Path(path)
    data = read_toml(path, WorkflowError, what="`grid_file` ")
    for name in data:
        if name not in ("grid", "labels"):
            raise WorkflowError(f"{path}: {name}: unknown key; a grid file has a [grid] "
                                "table (key = [values]) and an optional [labels] table")
    grid, labels = data.get("grid"), data.get("labels", {})
    if isinstance(labels, Mapping):
        labels = _dotted(labels)
    if not isinstance(grid, Mapping) or not grid:
        raise WorkflowError(f"{path}: expected a [grid] table with key = [value, ...] lines")
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise WorkflowError(f"{path}: [labels] must map grid keys to words (strings)")
    axes: dict[str, list[Scalar]] = {}
    for key, values in _dotted(grid).items():
        values = values if isinstance(values, list) else [values]
        if not values or not all(isinstance(v, Scalar) for v in values):
            raise WorkflowError(f"{path}: grid.{key}: expected a non-empty list of numbers, "
                                f"booleans or strings, got {values!r}")
        axes[str(key)] = list(values)
    for key in labels:
        if key not in axes:
            raise WorkflowError(f"{path}: labels.{key}: not a key of [grid]")
    return axes, {str(k): str(v) for k, v in labels.items()}


# --------------------------------------------------------------------------- keys


def sampler_parameters(sampler_cls: type) -> list[str]:
    """The sampler's parameters: dataclass init fields with a scalar default."""
    return [f.name for f in dataclasses.fields(sampler_cls)
            if f.init and isinstance(f.default, Scalar)]


def _split_names(dataset: Mapping[str, Any]) -> list[str]:
    return [str(s.get("name")) for s in dataset.get("split", [])]


def _valid_keys(dataset: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    sampler_path = dataset.get("sampler", "two4two.bias.Sampler")
    sampler_cls = utils.import_object(sampler_path)
    return (sampler_parameters(sampler_cls),
            [f"{name}{SPLIT_SIZE_SUFFIX}" for name in _split_names(dataset)])


def _check_key(key: str, source: str, dataset: Mapping[str, Any], base: Path) -> None:
    params, sizes = _valid_keys(dataset)
    if key not in params and key not in sizes:
        sampler = dataset.get("sampler", "two4two.bias.Sampler")
        raise WorkflowError(
            f"{source}: {key!r} is not a parameter of {sampler} (the sampler of {base}) "
            f"nor a split size; valid keys: {', '.join(params + sizes)}"
        )


# --------------------------------------------------------------------------- variants


def _value_text(value: Scalar) -> str:
    """A value as it appears in names: numbers as in TOML (``0.15``, ``-1.0``), strings
    with characters other than letters, digits, ``.``, ``+`` and ``-`` replaced by ``-``."""
    if not isinstance(value, str):
        return format_value(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", value).strip("-") or "empty"


def _axes(generator: Generator | None, grid_file: str | Path | None,
          grid_args: Sequence[str]) -> list[Axis]:
    """The grid, in order: the generator's axes, the grid file's, then ``--grid``'s
    (a later source replaces an earlier one's values of the same key)."""
    axes: dict[str, Axis] = {}

    def add(key: str, values: list[Scalar], label: str | None, source: str) -> None:
        previous = axes.get(key)
        label = label or (previous.label if previous else key.replace(".", "_"))
        axes[key] = Axis(key, values, label, source)

    if generator is not None:
        for key, values in generator.grid.items():
            add(key, list(values), generator.labels.get(key), f"generator {generator.name}")
    if grid_file is not None:
        file_axes, labels = load_grid_file(grid_file)
        for key, values in file_axes.items():
            add(key, values, labels.get(key), f"`grid_file` {grid_file}: grid.{key}")
    seen_flags: set[str] = set()
    for text in grid_args:
        key, values = parse_grid_arg(text)
        if key in seen_flags:
            raise WorkflowError(f"`grid_args` {key}: given twice; list all values in one entry")
        seen_flags.add(key)
        add(key, values, None, f"`grid_args` {key}")
    for axis in axes.values():
        texts = [_value_text(v) for v in axis.values]
        if len(set(texts)) != len(texts):
            raise WorkflowError(f"{axis.source}: repeated value in {axis.values!r}")
    labels = [axis.label for axis in axes.values()]
    if len(set(labels)) != len(labels):
        raise WorkflowError(f"two grid keys share the label in file names: {labels}")
    return list(axes.values())


def _read_base(path: Path) -> dict[str, Any]:
    try:
        load_dataset_configs(path)  # strict: the base itself must be valid
    except DatasetConfigError as error:
        raise WorkflowError(f"`base_config`: {error}") from None
    data = read_toml(path, WorkflowError, what="`base_config` ")
    datasets = data["dataset"] if isinstance(data["dataset"], list) else [data["dataset"]]
    if len(datasets) != 1:
        raise WorkflowError(f"`base_config` {path}: holds {len(datasets)} [[dataset]] tables; a "
                            "base config must hold exactly one")
    return dict(datasets[0])


def _apply(base: Mapping[str, Any], assignments: Mapping[str, Scalar],
           settings: Mapping[str, Any], output_dir: str) -> dict[str, Any]:
    dataset = copy.deepcopy(dict(base))
    dataset.update(copy.deepcopy(dict(settings)))
    dataset["output_dir"] = output_dir
    dataset["sampler_config"] = dict(dataset.get("sampler_config", {}))
    for key, value in assignments.items():
        split_name = key.removesuffix(SPLIT_SIZE_SUFFIX)
        if key.endswith(SPLIT_SIZE_SUFFIX) and split_name in _split_names(dataset):
            for split in dataset["split"]:
                if split.get("name") == split_name:
                    split["n_samples"] = value
        else:
            dataset["sampler_config"][key] = value
    return dataset


def build_variants(
    base_config: str | Path,
    name: str,
    output_dir: str | Path,
    grid_args: Sequence[str] = (),
    grid_file: str | Path | None = None,
    data_dir: str | None = None,
) -> list[Variant]:
    """Build and validate every variant of a family; writes nothing.

    Args:
        base_config: the base dataset TOML (exactly one ``[[dataset]]``).
        name: a built-in generator (:data:`GENERATORS`), or the name (and name prefix)
            of a custom family given by ``grid_args`` / ``grid_file``.
        output_dir: where the TOML files will go.
        grid_args: ``key=v1,v2,...`` strings (add axes or replace a generator's values).
        grid_file: a grid TOML (see :func:`load_grid_file`).
        data_dir: parent folder of the variants' datasets (default: that of the base's
            ``output_dir``).

    Raises:
        WorkflowError: an invalid base, an unknown generator without a grid, a key that
            is neither a sampler parameter nor a split size, or a variant that does not
            parse or whose sampler fails (the message names the flag or file).
    """
    base_path = Path(base_config)
    generator = GENERATORS.get(name)
    if generator is None and not grid_args and grid_file is None:
        raise WorkflowError(f"`name` {name!r}: not a built-in generator ({', '.join(GENERATORS)}"
                            "; see `list`); for a family of your own give `grid_args` or "
                            "`grid_file`")
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", name):
        raise WorkflowError(f"`name` {name!r}: use letters, digits, '.', '_', '+' or '-'")
    base = _read_base(base_path)
    axes = _axes(generator, grid_file, grid_args)
    for axis in axes:
        _check_key(axis.key, axis.source, base, base_path)
    base_output = str(base["output_dir"]).rstrip("/")
    prefix = (generator.prefix or posixpath.basename(base_output)) if generator else name
    suffix = generator.suffix if generator else ""
    settings = generator.settings if generator else {}
    if {**base, **settings}.get("unbiased") is True and not suffix:
        suffix = "_unbiased"  # never give an unbiased dataset the name of a biased one
    parent = data_dir if data_dir is not None else posixpath.dirname(base_output)
    output_dir = Path(output_dir)
    variants = []
    for values in itertools.product(*(axis.values for axis in axes)):
        assignments = {axis.key: value for axis, value in zip(axes, values, strict=True)}
        variant = "_".join([prefix] + [f"{axis.label}_{_value_text(value)}"
                                       for axis, value in zip(axes, values, strict=True)])
        variant += suffix
        dataset = _apply(base, assignments, settings,
                         posixpath.join(parent, variant) if parent else variant)
        varied = ", ".join(f"{k} = {format_value(v)}" for k, v in assignments.items())
        path = output_dir / f"{variant}.toml"
        header = [f"Generated by dubfiv_dataset_configs (--name {name}) from {base_path}.",
                  f"Varied: {varied}"]
        if settings:
            header.append("Set by the generator: " + ", ".join(
                f"{k} = {format_value(v)}" for k, v in settings.items()))
        header += ["Every other setting is copied from the base; see its comments.",
                   f"Render: python -m two4two {path}"]
        text = dumps_dataset_document({"dataset": [dataset]}, "\n".join(header))
        try:
            [config] = parse_configs(toml.loads(text), source=f"{path} ({varied})")
        except DatasetConfigError as error:
            raise WorkflowError(f"variant {variant}: {error}") from None
        except toml.TomlDecodeError as error:  # a bug of the writer, not of the input
            raise RuntimeError(f"{path}: wrote invalid TOML: {error}") from error
        variants.append(Variant(variant, assignments, path, text, config))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise WorkflowError("two variants get the same name; use distinct values")
    return variants


def write_variants(variants: Sequence[Variant], force: bool = False) -> list[Path]:
    """Write each variant's TOML atomically (all conflicts are checked first).

    Raises:
        WorkflowError: a file exists with other content and ``force`` is false.
    """
    if not force:
        for variant in variants:
            path = variant.path
            if path.exists() and (not path.is_file()
                                  or path.read_text(encoding="utf-8") != variant.text):
                raise WorkflowError(f"{path} exists with other content; pass `force` to "
                                    "overwrite, or choose another `output_dir`")
    for variant in variants:
        utils.atomic_write_text(variant.path, variant.text)
    return [v.path for v in variants]


def describe_generators() -> str:
    """The built-in generators and their grids (what ``--list`` prints)."""
    lines = []
    for generator in GENERATORS.values():
        n = 1
        for values in generator.grid.values():
            n *= len(values)
        plural = "s" if n != 1 else ""
        lines.append(f"{generator.name}: {generator.description} ({n} variant{plural})")
        for key, values in generator.grid.items():
            label = generator.labels.get(key, key.replace(".", "_"))
            lines.append(f"    {key} = {', '.join(format_value(v) for v in values)}"
                         f"    (named {label}_<value>)")
        for key, value in generator.settings.items():
            lines.append(f"    sets {key} = {format_value(value)}")
        first = "_".join([generator.prefix or "<base output_dir name>"]
                         + [f"{generator.labels.get(k, k.replace('.', '_'))}_"
                            f"{_value_text(v[0])}" for k, v in generator.grid.items()])
        lines.append(f"    e.g. {first}{generator.suffix}")
    return "\n".join(lines)
