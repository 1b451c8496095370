"""What a worker needs to draw one image: plain numbers taken from ``SceneParameters``.

Kept free of ``bpy`` so the parent process can build specs without Blender.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DEFAULT_SAMPLES", "DEFAULT_VIEW_TRANSFORM", "DEVICES", "GPU_BACKENDS", "RenderSpec",
           "backends_to_try", "mask_from_index_pass", "worker_devices"]

DEFAULT_SAMPLES = 128
"""Cycles samples per pixel of the released datasets."""

DEVICES = ("auto", "cpu", "gpu", "cuda", "optix")
"""Cycles devices a renderer accepts: ``auto`` (a GPU if Cycles finds one, else the
CPU), ``cpu``, ``gpu`` (any GPU backend, error if none), ``cuda`` or ``optix``."""

GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "ONEAPI")
"""Cycles' GPU backends, in the order ``auto`` and ``gpu`` try them."""


def backends_to_try(device: str) -> tuple[str, ...]:
    """The Cycles backends ``device`` may use (empty for ``cpu``)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu":
        return ()
    if device in ("cuda", "optix"):
        return (device.upper(),)
    return GPU_BACKENDS


def worker_devices(device_types: list[str], backend: str, worker_id: int) -> list[bool]:
    """Which of Cycles' devices (by their ``type``) worker ``worker_id`` switches on: the
    ``worker_id % n``-th of the ``n`` devices of ``backend``, so that workers share the
    GPUs out one each instead of every worker using all of them (the CPU entry Cycles
    lists beside the GPUs stays off)."""
    indices = [i for i, kind in enumerate(device_types) if kind == backend]
    if not indices:
        return [False] * len(device_types)
    chosen = indices[worker_id % len(indices)]
    return [i == chosen for i in range(len(device_types))]

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
