"""Two4Two: a generator of synthetic images of two abstract animals, Peaky and Stretchy.

Public API::

    import two4two
    sampler = two4two.Sampler()            # or ColorBiasedSampler, HighVariationSampler, ...
    params = [sampler.sample() for _ in range(8)]
    for image, mask, p in two4two.render(params, output_dir="out"):
        ...                                # image uint8 [H, W, 3], mask uint8 [H, W]

``two4two.render`` lives in :mod:`two4two.blender`; it and the submodules
``blender``, ``plotvis``, ``pytorch``, ``cli_tool`` and ``dataset`` are imported
on first use (``two4two.blender.render(...)`` works after a plain
``import two4two``), so ``import two4two`` needs neither ``bpy``, ``torch``
nor matplotlib's pyplot.
"""

from __future__ import annotations

import importlib
from typing import Any

from two4two.bias import (
    ColorBiasedSampler,
    HighVariationColorBiasedSampler,
    HighVariationSampler,
    MedVarColorSampler,
    MedVarNoArmsSampler,
    MedVarSampler,
    MedVarSpherColorSampler,
    MedVarSpherSampler,
    Sampler,
    SimpleColorMapSampler,
)
from two4two.scene_parameters import SceneParameters

__all__ = [
    "ColorBiasedSampler",
    "HighVariationColorBiasedSampler",
    "HighVariationSampler",
    "MedVarColorSampler",
    "MedVarNoArmsSampler",
    "MedVarSampler",
    "MedVarSpherColorSampler",
    "MedVarSpherSampler",
    "Sampler",
    "SceneParameters",
    "SimpleColorMapSampler",
    "render",
]

_LAZY_SUBMODULES = ("blender", "cli_tool", "dataset", "dataset_config", "plotvis", "pytorch")


def __getattr__(name: str) -> Any:
    """Lazy ``two4two.render`` and submodules (keeps their imports out of ``import two4two``)."""
    if name == "render":
        from two4two.blender import render

        return render
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"two4two.{name}")
    raise AttributeError(f"module 'two4two' has no attribute {name!r}")
