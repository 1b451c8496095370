"""A readable TOML writer for dataset configs (``[[dataset]]`` / ``[[dataset.split]]`` /
``[dataset.sampler_config]``), laid out like the hand-written files in ``config/``.

The ``toml`` package can write these too, but puts arrays as ``[ 1, 2,]``; this
writer keeps the files people read tidy. Callers re-parse what it writes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps_dataset_document", "format_key", "format_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key(key: str) -> str:
    """A TOML key: bare if it can be, else a quoted string."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def format_value(value: Any) -> str:
    """A TOML value (bool, int, float, str, list or inline table).

    Raises:
        TypeError: a value TOML cannot hold (e.g. ``None``).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{format_key(str(k))} = {format_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a TOML value")


def _plain_lines(table: Mapping[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    return [f"{format_key(k)} = {format_value(v)}" for k, v in table.items()
            if k not in skip and v is not None]


def dumps_dataset_document(document: Mapping[str, Any], header: str = "") -> str:
    """TOML text of ``{"dataset": [dataset tables]}`` with ``header`` as leading comments.

    Each dataset table's ``split`` list becomes ``[[dataset.split]]`` tables and its
    ``sampler_config`` a ``[dataset.sampler_config]`` table; other keys stay plain
    (``None`` values are left out: TOML has no null).
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for dataset in document.get("dataset", []):
        if lines:
            lines.append("")
        lines.append("[[dataset]]")
        lines += _plain_lines(dataset, skip=("split", "sampler_config"))
        for split in dataset.get("split", []):
            lines += ["", "[[dataset.split]]", *_plain_lines(split)]
        if "sampler_config" in dataset:
            lines += ["", "[dataset.sampler_config]", *_plain_lines(dataset["sampler_config"])]
    return "\n".join(lines) + "\n"
