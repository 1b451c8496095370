"""The dataset TOML (``python -m two4two CONFIG.toml``): strict parsing and validation.

A file holds one or more ``[[dataset]]`` tables, each with ``[[dataset.split]]``
tables and an optional ``[dataset.sampler_config]`` table. Every key is
documented on the dataclasses below (and in ``config/dataset_small.toml``).

Upstream two4two's form is read too (``docs/two4two_api.md``): one table per
dataset, named freely (``[nobias]``, with the same keys), and one sub-table
per split named after the split (``[nobias.train]`` with ``n_samples`` and
optionally ``interventions`` and ``seed``)::

    [nobias]
    sampler = "two4two.Sampler"
    output_dir = "data/nobias"
    [nobias.train]
    n_samples = 1000

Parsing is strict: an unknown key, a wrong type, an out-of-range value, a
sampler path that does not import or a bad intervention attribute is a
:class:`DatasetConfigError` naming the file and the field -- raised before any
scene is sampled or rendered.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from two4two import utils
from two4two.bias import Sampler
from two4two.cluster.settings import RENDER_DEVICES, SlurmSettings, parse_slurm_table
from two4two.errors import Two4TwoError
from two4two.files import read_toml

__all__ = [
    "DatasetConfig",
    "DatasetConfigError",
    "SplitConfig",
    "intervention_dirname",
    "load_dataset_configs",
    "make_sampler",
    "parse_dataset_configs",
]


class DatasetConfigError(Two4TwoError, ValueError):
    """A dataset TOML is invalid; the message names the file and the field."""


@dataclasses.dataclass
class SplitConfig:
    """One split (``[[dataset.split]]``); see the field comments for each key's meaning."""

    name: str
    """Directory name of the split under ``output_dir`` (e.g. ``train``)."""
    n_samples: int
    """Number of images (> 0)."""
    interventions: list[list[str]] = dataclasses.field(default_factory=list)
    """Lists of attributes; each list gets its own directory ``<name>_<attrs joined by _>``
    with clones of this split's scenes in which only those attributes are resampled."""
    seed: int | None = None
    """Numpy seed of the split's sampling (default: derived from the dataset's ``seed`` and
    the split name)."""


@dataclasses.dataclass
class DatasetConfig:
    """One dataset (``[[dataset]]``); see the field comments for each key's meaning."""

    output_dir: str
    """Folder of the dataset (relative paths: relative to the working directory)."""
    split: list[SplitConfig]
    """The splits, rendered in order."""
    sampler: str = "two4two.bias.Sampler"
    """Dotted path of the sampler class (a ``two4two.Sampler`` subclass)."""
    sampler_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Keyword arguments of the sampler class."""
    force_overwrite: bool = False
    """Delete existing splits (and their intervention dirs) and start over."""
    n_processes: int = 0
    """Render worker processes (0: one per CPU core)."""
    chunk_size: int = 1
    """Scenes handed to a worker at a time."""
    download_blender: bool = False
    """Accepted for compatibility with the original tool; ignored (bpy needs no download)."""
    blender_dir: str | None = None
    """Accepted for compatibility with the original tool; ignored."""
    debug: bool = False
    """Show the renderer's (Blender's) output and commands."""
    unbiased: bool = False
    """Draw every scene with ``sampler.sample_unbiased()`` (only arm_position carries the class)."""
    render_samples: int = 128
    """Cycles samples per pixel (lower: faster, noisier drafts)."""
    resolution: list[int] = dataclasses.field(default_factory=lambda: [128, 128])
    """Image size ``[height, width]`` in pixels."""
    seed: int = 0
    """Base seed; each split's seed is derived from it and the split name."""
    render_device: str = "cpu"
    """Cycles' device: ``"cpu"``, ``"cuda"`` or ``"optix"`` (an NVIDIA GPU, one per render
    worker; the images differ slightly from the CPU's)."""
    slurm: SlurmSettings = dataclasses.field(default_factory=SlurmSettings)
    """``[dataset.slurm]``: resources of each array task when rendering with
    ``--executor slurm`` (``docs/cluster_render.md``)."""

    def split_seed(self, split: SplitConfig) -> int:
        """The numpy seed of ``split`` (its own ``seed`` or one derived from the name)."""
        if split.seed is not None:
            return split.seed
        return _derive_seed(f"{self.seed}/{split.name}")


def _derive_seed(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def intervention_dirname(split_name: str, attrs: list[str]) -> str:
    """``<split>_<attrs joined by _>``, e.g. ``test_spherical_obj_color_bg_color``."""
    return "_".join([split_name, *attrs])


# --------------------------------------------------------------------------- parsing


class _Parser:
    """Strict conversion of one parsed TOML document, with errors naming file and field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> DatasetConfigError:
        return DatasetConfigError(f"{self.source}: {key}: {message}")

    def table(self, cls: type, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.fail(key, f"expected a table, got {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        for name in data:
            if name not in names:
                raise self.fail(
                    f"{key}.{name}",
                    f"unknown key; known keys: {', '.join(names)}. Remove it or fix its spelling.",
                )
        for field in dataclasses.fields(cls):
            required = (field.default is dataclasses.MISSING
                        and field.default_factory is dataclasses.MISSING)
            if required and field.name not in data:
                raise self.fail(f"{key}.{field.name}", "missing required key")
        return dict(data)

    def check(self, key: str, value: Any, kind: type, minimum: int | None = None) -> Any:
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise self.fail(key, f"expected {kind.__name__}, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value!r}")
        return value

    def split(self, data: Any, key: str) -> SplitConfig:
        data = self.table(SplitConfig, data, key)
        name = self.check(f"{key}.name", data["name"], str)
        if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
            raise self.fail(f"{key}.name", f"must be a plain directory name, got {name!r}")
        self.check(f"{key}.n_samples", data["n_samples"], int, minimum=1)
        interventions = data.get("interventions", [])
        if not isinstance(interventions, list):
            raise self.fail(f"{key}.interventions", "expected a list of lists of attributes")
        for i, attrs in enumerate(interventions):
            ikey = f"{key}.interventions[{i}]"
            if not isinstance(attrs, list) or not attrs or not all(
                    isinstance(a, str) for a in attrs):
                raise self.fail(ikey, f"expected a non-empty list of attribute names, "
                                f"got {attrs!r}")
            if len(set(attrs)) != len(attrs):
                raise self.fail(ikey, f"repeats an attribute: {attrs!r}")
        if data.get("seed") is not None:
            self.check(f"{key}.seed", data["seed"], int, minimum=0)
        return SplitConfig(**data)

    def dataset(self, data: Any, key: str, split_keys: list[str] | None = None
                ) -> DatasetConfig:
        data = self.table(DatasetConfig, data, key)
        self.check(f"{key}.output_dir", data["output_dir"], str)
        if not data["output_dir"]:
            raise self.fail(f"{key}.output_dir", "must not be empty")
        self.check(f"{key}.sampler", data.get("sampler", ""), str)
        if not isinstance(data.get("sampler_config", {}), Mapping):
            raise self.fail(f"{key}.sampler_config", "expected a table")
        for name in ("force_overwrite", "download_blender", "debug", "unbiased"):
            if name in data:
                self.check(f"{key}.{name}", data[name], bool)
        for name, minimum in (("n_processes", 0), ("chunk_size", 1), ("render_samples", 1),
                              ("seed", 0)):
            if name in data:
                self.check(f"{key}.{name}", data[name], int, minimum=minimum)
        device = data.get("render_device", "cpu")
        if device not in RENDER_DEVICES:
            raise self.fail(f"{key}.render_device",
                            f"expected one of {', '.join(RENDER_DEVICES)}, got {device!r}")
        if "slurm" in data:
            data["slurm"] = parse_slurm_table(
                data["slurm"], lambda name, message: self.fail(
                    f"{key}.slurm.{name}".rstrip("."), message))
        if data.get("blender_dir") is not None:
            self.check(f"{key}.blender_dir", data["blender_dir"], str)
        resolution = data.get("resolution", [128, 128])
        if (not isinstance(resolution, list) or len(resolution) != 2 or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in resolution)):
            raise self.fail(f"{key}.resolution",
                            f"expected [height, width], two positive integers, got {resolution!r}")
        splits = data["split"]
        if not isinstance(splits, list) or not splits:
            raise self.fail(f"{key}.split", "expected one or more [[dataset.split]] tables")
        if split_keys is None:
            split_keys = [f"{key}.split[{i}]" for i in range(len(splits))]
        data["split"] = [self.split(s, k) for s, k in zip(splits, split_keys, strict=True)]
        data["sampler_config"] = dict(data.get("sampler_config", {}))
        config = DatasetConfig(**data)
        self.validate(config, key, split_keys)
        return config

    def upstream_dataset(self, name: str, data: Any) -> DatasetConfig:
        """One dataset of upstream's form: ``[name]`` with one ``[name.<split>]`` per split."""
        if not isinstance(data, Mapping):
            raise self.fail(name, f"expected a table (upstream form [{name}]) or [[dataset]] "
                            f"tables, got {data!r}")
        dataset: dict[str, Any] = {}
        splits: list[dict[str, Any]] = []
        split_keys: list[str] = []
        for field_name, value in data.items():
            if isinstance(value, Mapping) and field_name not in ("sampler_config", "slurm"):
                if "name" in value:
                    raise self.fail(f"{name}.{field_name}.name", "the split's name is its "
                                    f"table name ({field_name!r}); remove the key")
                splits.append({"name": field_name, **value})
                split_keys.append(f"{name}.{field_name}")
            else:
                dataset[field_name] = value
        if not splits:
            raise self.fail(name, f"no splits; add a sub-table per split, e.g. [{name}.train] "
                            "with n_samples")
        dataset["split"] = splits
        return self.dataset(dataset, name, split_keys)

    def validate(self, config: DatasetConfig, key: str,
                 split_keys: list[str] | None = None) -> None:
        """Checks that need the sampler or several splits together."""
        sampler = make_sampler(config, source=self.source, key=key)
        dirnames: dict[str, str] = {}
        for i, split in enumerate(config.split):
            skey = split_keys[i] if split_keys is not None else f"{key}.split[{i}]"
            if split.name in dirnames:
                raise self.fail(f"{skey}.name", f"directory {split.name!r} is used twice "
                                f"(also by {dirnames[split.name]})")
            dirnames[split.name] = f"{skey}.name"
            for j, attrs in enumerate(split.interventions):
                ikey = f"{skey}.interventions[{j}]"
                try:
                    sampler.check_attributes(attrs)
                except ValueError as error:
                    raise self.fail(ikey, str(error)) from None
                dirname = intervention_dirname(split.name, attrs)
                if dirname in dirnames:
                    raise self.fail(ikey, f"directory {dirname!r} is used twice "
                                    f"(also by {dirnames[dirname]})")
                dirnames[dirname] = ikey


def make_sampler(config: DatasetConfig, source: str = "<config>", key: str = "dataset") -> Sampler:
    """Import ``config.sampler`` and build it with ``config.sampler_config``.

    Raises:
        DatasetConfigError: the path does not import, is not a Sampler, or the
            sampler_config has an unknown key or a bad value.
    """
    try:
        cls = utils.import_object(config.sampler)
    except ImportError as error:
        raise DatasetConfigError(
            f"{source}: {key}.sampler: {error}. Use a dotted path such as "
            "'dubfiv.data_generation.SamplerObjColorAndSpherical'."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Sampler)):
        raise DatasetConfigError(
            f"{source}: {key}.sampler: {config.sampler!r} is not a two4two.Sampler subclass"
        )
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for name in config.sampler_config:
        if name not in fields:
            raise DatasetConfigError(
                f"{source}: {key}.sampler_config.{name}: unknown key for {cls.__name__}; "
                f"known keys: {', '.join(sorted(fields))}"
            )
    try:
        sampler = cls(**config.sampler_config)
    except (TypeError, ValueError) as error:
        raise DatasetConfigError(f"{source}: {key}.sampler_config: {error}") from None
    try:  # a trial draw, so that out-of-range values fail before any work is done
        with utils.seeded(0):
            sampler.sample()
            sampler.sample_unbiased()
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        raise DatasetConfigError(
            f"{source}: {key}.sampler_config: {config.sampler} draws invalid scenes: {error}"
        ) from None
    return sampler


def parse_dataset_configs(data: Mapping[str, Any], source: str = "<dict>") -> list[DatasetConfig]:
    """Validate a parsed dataset TOML into :class:`DatasetConfig` s.

    ``data`` is either ``{'dataset': [...]}`` (``[[dataset]]`` tables) or
    upstream's form ``{'<name>': {..., '<split>': {'n_samples': ...}}}``.
    """
    parser = _Parser(source)
    if "dataset" not in data and data:
        configs = [parser.upstream_dataset(name, table) for name, table in data.items()]
        _check_distinct_splits(parser, configs, list(data))
        return configs
    for name in data:
        if name != "dataset":
            raise parser.fail(name, "unknown top-level key; expected [[dataset]] tables "
                              "(or only upstream-style [<name>] tables)")
    datasets = data.get("dataset")
    if isinstance(datasets, Mapping):
        datasets = [datasets]
    if not isinstance(datasets, list) or not datasets:
        raise parser.fail("dataset", "expected one or more [[dataset]] tables")
    configs = [parser.dataset(d, f"dataset[{i}]") for i, d in enumerate(datasets)]
    _check_distinct_splits(parser, configs, [f"dataset[{i}]" for i in range(len(configs))])
    return configs


def _check_distinct_splits(parser: _Parser, configs: list[DatasetConfig],
                           keys: list[str]) -> None:
    """No two datasets may write the same split directory."""
    seen: dict[tuple[str, str], str] = {}
    for key, config in zip(keys, configs, strict=True):
        for split in config.split:
            where = (os.path.normpath(config.output_dir), split.name)
            if where in seen:
                raise parser.fail(f"{key}.split", f"split {split.name!r} of "
                                  f"{config.output_dir!r} is also written by {seen[where]}")
            seen[where] = key


def load_dataset_configs(path: str | os.PathLike) -> list[DatasetConfig]:
    """Read and validate a dataset TOML file.

    Raises:
        DatasetConfigError: missing file, invalid TOML or invalid content (the
            message names the file and the field).
    """
    data = read_toml(path, DatasetConfigError)
    return parse_dataset_configs(data, source=str(path))
