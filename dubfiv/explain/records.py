"""Atomic writes of the explanations' JSON records and PNG figures."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from dubfiv.files import atomic_write, atomic_write_text

__all__ = ["jsonable", "save_png", "scene_record", "write_json"]


def scene_record(scene: Any) -> dict[str, Any]:
    """The parameters of a two4two scene for a record: its ``state_dict`` without the
    internal keys (those starting with ``_``, e.g. ``__module__``)."""
    return {k: v for k, v in scene.state_dict().items() if not k.startswith("_")}


def jsonable(value: Any) -> Any:
    """``value`` with tensors/arrays turned into lists and numpy scalars into Python ones.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (strict JSON).
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()] if value.ndim else jsonable(value.item())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, record: Any) -> Path:
    """Write ``jsonable(record)`` as indented JSON, atomically (temporary file, rename)."""
    text = json.dumps(jsonable(record), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def save_png(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save ``figure`` as a PNG, atomically."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=dpi))
