"""What a worker needs to draw one image: plain numbers taken from ``SceneParameters``.

Kept free of ``bpy`` so the parent process can build specs without Blender.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_VIEW_TRANSFORM", "RenderSpec", "mask_from_index_pass"]

DEFAULT_VIEW_TRANSFORM = "Filmic"
"""Blender 2.83's default view transform, which the released images were made with."""


@dataclass(frozen=True)
class RenderSpec:
    """One scene as the renderer sees it (angles in radians, lengths in Blender units).

    ``obj_rgb`` and ``bg_rgb`` are the first three entries of the colour maps'
    RGBA, used as linear (scene-referred) diffuse colours, as Blender does with
    colours set from Python. ``height``/``width`` are in pixels.
    """

    spherical: float
    arm_position: float
    bending: float
    roll: float
    pitch: float
    yaw: float
    position_x: float
    position_y: float
    obj_rgb: tuple[float, float, float]
    bg_rgb: tuple[float, float, float]
    height: int
    width: int
    fliplr: bool

    @classmethod
    def from_params(cls, params: Any) -> RenderSpec:
        """Read the fields of a ``SceneParameters`` (``resolution`` is ``(height, width)``).

        Values outside ``check_values()``'s ranges are kept (they render, as upstream's).

        Raises:
            ValueError: a value that cannot be drawn at all: not a finite number, or a
                resolution that is not two positive integers (the message names it).
        """
        height, width = (int(v) for v in params.resolution)
        if height < 1 or width < 1:
            raise ValueError(f"resolution {tuple(params.resolution)!r} must be two positive "
                             "integers (height, width)")
        spec = cls(
            spherical=float(params.spherical),
            arm_position=float(params.arm_position),
            bending=float(params.bending),
            roll=float(params.obj_rotation_roll),
            pitch=float(params.obj_rotation_pitch),
            yaw=float(params.obj_rotation_yaw),
            position_x=float(params.position_x),
            position_y=float(params.position_y),
            obj_rgb=tuple(float(c) for c in params.obj_color_rgba[:3]),  # type: ignore[arg-type]
            bg_rgb=tuple(float(c) for c in params.bg_color_rgba[:3]),  # type: ignore[arg-type]
            height=height,
            width=width,
            fliplr=bool(params.fliplr),
        )
        for name, value in vars(spec).items():
            numbers = value if isinstance(value, tuple) else (value,)
            if not all(math.isfinite(v) for v in numbers):
                raise ValueError(f"{name} = {value!r} is not a finite number")
        return spec


def mask_from_index_pass(index: np.ndarray) -> np.ndarray:
    """Object-index pass ``[H, W]`` (floats holding integers 0..8) -> uint8 labels.

    Raises:
        ValueError: the pass holds non-integer or out-of-range values (it would
            mean the pass was filtered, i.e. anti-aliased).
    """
    labels = np.rint(index)
    if not np.array_equal(labels, index) or labels.min() < 0 or labels.max() > 255:
        raise ValueError("object-index pass holds non-integer or out-of-range values")
    return labels.astype(np.uint8)
