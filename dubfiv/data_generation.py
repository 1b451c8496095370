"""The paper's biased Two4Two sampler, configured by name from a dataset TOML.

``sampler = "dubfiv.data_generation.SamplerObjColorAndSpherical"`` with a
``[dataset.sampler_config]`` table of its four keys. This module must stay
free of torch imports: the renderer's worker processes import it.

The biases (see ``docs/two4two_api.md`` for the class defaults):

* ``arm_position`` carries the class: peaky uniform [0, 0.52], stretchy
  uniform [0.48, 1].
* ``obj_color`` is *predictive*: its range shrinks towards the class's end of
  the colour scale the further the arms are from 0.5 (slope
  ``obj_color_slope``); with probability ``obj_color_uniform_prob`` it is
  uniform instead. Under intervention the class is read from the arm
  position (> 0.52 stretchy, < 0.48 peaky, else a coin).
* ``spherical`` is *biased but not predictive*: Beta(0.3, 0.3) truncated to
  <= 0.5 if the arms are < 0.45 and >= 0.5 if > 0.55 (rejection sampling); with
  probability ``spherical_uniform_prob`` a fresh Beta(0.3, 0.3) draw instead.
  Under intervention a fresh arm position (itself drawn as an intervention)
  decides the truncation, so spherical becomes independent of the scene.

Randomness: numpy's global random state (seed with ``np.random.seed``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from two4two import utils
from two4two.bias import Sampler
from two4two.scene_parameters import SceneParameters

__all__ = ["RELEASED_SAMPLER_CONFIG", "SamplerObjColorAndSpherical", "class_from_arm_position",
           "obj_color_cmap_value"]

RELEASED_SAMPLER_CONFIG: dict[str, float] = {
    "obj_color_slope": 2.5,
    "obj_color_uniform_prob": 0.15,
    "spherical_uniform_prob": 0.33,
    "obj_color_value_at_05": 0.25,
}
"""The ``sampler_config`` of the paper's released datasets (``config/dataset_config*.toml``)."""


def class_from_arm_position(arm_position: float) -> str:
    """The class an arm position implies: > 0.52 stretchy, < 0.48 peaky, else a coin flip."""
    if arm_position > 0.52:
        return "stretchy"
    if arm_position < 0.48:
        return "peaky"
    return "stretchy" if np.random.uniform() < 0.5 else "peaky"


def obj_color_cmap_value(value: float) -> float:
    """Where colour value ``v`` reads the colour map: ``v`` if v <= 0.5 else ``0.9*(v-0.5)+0.5``."""
    return value if value <= 0.5 else 0.9 * (value - 0.5) + 0.5


@dataclasses.dataclass
class SamplerObjColorAndSpherical(Sampler):
    """The study's sampler: obj_color predicts the class, spherical is biased but not predictive.

    Config keys (the dataclass fields below; all floats):
        obj_color_slope: how fast the object colour's range narrows with the
            arm position (2.5).
        obj_color_uniform_prob: probability of a uniform object colour (class
            default 0.2, as the paper's code; the released datasets set 0.15).
        spherical_uniform_prob: probability of an untruncated spherical (class
            default 0.2, as the paper's code; the released datasets set 0.33).
        obj_color_value_at_05: upper end of the colour range at arm position
            0.5 (0.25).

    The released datasets' values are :data:`RELEASED_SAMPLER_CONFIG`; the
    dataset TOMLs in ``config/`` set them explicitly.
    """

    obj_color_slope: float = 2.5
    obj_color_uniform_prob: float = 0.2
    spherical_uniform_prob: float = 0.2
    obj_color_value_at_05: float = 0.25

    arm_position: Any = dataclasses.field(default_factory=lambda: {
        "peaky": utils.uniform(0.0, 0.52),
        "stretchy": utils.uniform(0.48, 1.0),
    })
    bg_color: Any = dataclasses.field(default_factory=lambda: utils.uniform(0.0, 1.0))
    obj_rotation_pitch: Any = dataclasses.field(
        default_factory=lambda: utils.truncated_normal(
            0.0, 0.5 * math.pi / 4, -math.pi / 6, math.pi / 6
        )
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("obj_color_uniform_prob", "spherical_uniform_prob", "obj_color_value_at_05"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        slope = self.obj_color_slope
        if isinstance(slope, bool) or not isinstance(slope, int | float) \
                or not math.isfinite(slope):
            raise ValueError(f"obj_color_slope must be a finite number, got {slope!r}")

    # ------------------------------------------------------------------ colours

    def obj_color_rgba(self, value: float) -> utils.RGBAColor:
        """``coolwarm`` at ``v`` if v <= 0.5 else at ``0.9*(v-0.5)+0.5`` (no darkest red)."""
        return utils.color_from_cmap(self.obj_color_map, obj_color_cmap_value(value))

    def _obj_color_for(self, obj_name: str, arm_position: float) -> float:
        """The class-dependent colour value (no uniform replacement)."""
        if obj_name == "stretchy":
            high = float(np.clip(
                self.obj_color_value_at_05 + self.obj_color_slope * (arm_position - 0.5), 0, 1))
            return 1.0 - float(np.random.uniform(0.0, high))
        high = float(np.clip(
            self.obj_color_value_at_05 + self.obj_color_slope * (0.5 - arm_position), 0, 1))
        return float(np.random.uniform(0.0, high))

    def sample_obj_color(self, params: SceneParameters, intervention: bool = False) -> None:
        """Predictive object colour; under intervention the class comes from the arm position."""
        if np.random.uniform() < self.obj_color_uniform_prob:
            value = float(np.random.uniform(0.0, 1.0))
        else:
            obj_name = (class_from_arm_position(params.arm_position) if intervention
                        else params.obj_name)
            value = self._obj_color_for(obj_name, params.arm_position)
        self._set(params, "obj_color", value)
        params.obj_color_rgba = self.obj_color_rgba(value)

    # ------------------------------------------------------------------ spherical

    def sample_spherical(self, params: SceneParameters, intervention: bool = False) -> None:
        """Spherical truncated by the arm position (a fresh one under intervention)."""
        if intervention:
            arm_position = float(self._draw(params, self.arm_position, True))
        else:
            arm_position = params.arm_position
        if np.random.uniform() < self.spherical_uniform_prob:
            value = utils.sample_value(self.spherical)
        elif arm_position < 0.45:
            value = utils.rejection_sample(self.spherical, lambda s: s <= 0.5)
        elif arm_position > 0.55:
            value = utils.rejection_sample(self.spherical, lambda s: s >= 0.5)
        else:
            value = utils.sample_value(self.spherical)
        self._set(params, "spherical", float(value))
