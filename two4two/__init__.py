"""Two4Two: a generator of synthetic images of two abstract animals, Peaky and Stretchy.

Public API::

    import two4two
    sampler = two4two.Sampler()            # or ColorBiasedSampler, HighVariationSampler, ...
    params = [sampler.sample() for _ in range(8)]
    for image, mask, p in two4two.render(params, output_dir="out"):
        ...                                # image uint8 [H, W, 3], mask uint8 [H, W]

``two4two.render`` lives in :mod:`two4two.blender` and is imported on first
use, so ``import two4two`` needs neither ``bpy`` nor ``torch``
(:mod:`two4two.pytorch` holds the PyTorch dataset).
"""

from __future__ import annotations

from typing import Any

from two4two.bias import (
    ColorBiasedSampler,
    HighVariationColorBiasedSampler,
    HighVariationSampler,
    Sampler,
    SimpleColorMapSampler,
)
from two4two.scene_parameters import SceneParameters

__all__ = [
    "ColorBiasedSampler",
    "HighVariationColorBiasedSampler",
    "HighVariationSampler",
    "Sampler",
    "SceneParameters",
    "SimpleColorMapSampler",
    "render",
]


def __getattr__(name: str) -> Any:
    """Lazy ``two4two.render`` (keeps the renderer's imports out of ``import two4two``)."""
    if name == "render":
        from two4two.blender import render

        return render
    raise AttributeError(f"module 'two4two' has no attribute {name!r}")
