"""Samplers: draw :class:`~two4two.scene_parameters.SceneParameters`, with biases on purpose.

A :class:`Sampler` is a dataclass whose fields are distributions, one per
scene attribute. A distribution is

* a frozen scipy distribution (anything with ``.rvs()``),
* a callable without arguments that returns a value,
* a constant, or
* a dict ``{'peaky': dist, 'stretchy': dist}``: a distribution per class.

Randomness comes from numpy's **global** random state (scipy's ``rvs()``
without ``random_state`` and ``np.random``), so ``np.random.seed(s)`` makes
sampling reproducible. Seed once per batch of scenes you want reproducible.

``intervention=True`` draws an attribute independently of the scene's class:
a per-class distribution is evaluated for a freshly drawn random class. That
is how ground-truth interventions (:meth:`Sampler.make_interventions`) are made.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from typing import Any, ClassVar

import scipy.stats

from two4two import utils
from two4two.scene_parameters import OBJ_NAMES, SceneParameters

__all__ = [
    "SAMPLING_ORDER",
    "ColorBiasedSampler",
    "HighVariationColorBiasedSampler",
    "HighVariationSampler",
    "Sampler",
    "SimpleColorMapSampler",
]

Distribution = Any
"""scipy frozen distribution | callable | constant | dict by class of those."""

PI = math.pi

SAMPLING_ORDER: tuple[str, ...] = (
    "obj_name",
    "arm_position",
    "labeling_error",
    "spherical",
    "bending",
    "obj_rotation_roll",
    "obj_rotation_pitch",
    "obj_rotation_yaw",
    "fliplr",
    "position_x",
    "position_y",
    "obj_color",
    "bg_color",
)
"""The order in which :meth:`Sampler.sample` draws the attributes."""


@dataclasses.dataclass
class Sampler:
    """The default Two4Two sampler: only the arm position depends on the class.

    Defaults (intervals are closed): obj_name 50/50; arm_position peaky
    truncated normal(0.5, 0.2, [0, 0.52]), stretchy truncated normal(0.5, 0.2,
    [0.48, 1]); spherical Beta(0.3, 0.3); bending truncated normal(0, pi/20,
    +-pi/10); roll truncated normal(0, 0.03*pi/4, +-pi/4); pitch truncated
    normal(0, 0.3*pi/4, +-pi/4); yaw uniform [-pi, 0]; position_x/y uniform
    [-0.8, 0]; obj_color uniform [0, 1]; bg_color uniform [0.05, 0.95];
    labeling_error and fliplr False. Both colours map through ``coolwarm``.
    """

    obj_name: Distribution = field(
        default_factory=lambda: utils.discrete({"peaky": 0.5, "stretchy": 0.5}))
    arm_position: Distribution = field(default_factory=lambda: {
        "peaky": utils.truncated_normal(0.5, 0.2, 0.0, 0.52),
        "stretchy": utils.truncated_normal(0.5, 0.2, 0.48, 1.0),
    })
    labeling_error: Distribution = False
    spherical: Distribution = field(default_factory=lambda: scipy.stats.beta(0.3, 0.3))
    bending: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.0, PI / 20, -PI / 10, PI / 10))
    obj_rotation_roll: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.0, 0.03 * PI / 4, -PI / 4, PI / 4))
    obj_rotation_pitch: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.0, 0.3 * PI / 4, -PI / 4, PI / 4))
    obj_rotation_yaw: Distribution = field(default_factory=lambda: utils.uniform(-PI, 0.0))
    fliplr: Distribution = False
    position_x: Distribution = field(default_factory=lambda: utils.uniform(-0.8, 0.0))
    position_y: Distribution = field(default_factory=lambda: utils.uniform(-0.8, 0.0))
    obj_color: Distribution = field(default_factory=lambda: utils.uniform(0.0, 1.0))
    bg_color: Distribution = field(default_factory=lambda: utils.uniform(0.05, 0.95))

    obj_color_map: ClassVar[str] = "coolwarm"
    """matplotlib colour map of the object colour."""
    bg_color_map: ClassVar[str] = "coolwarm"
    """matplotlib colour map of the background colour."""
    scene_class: ClassVar[type[SceneParameters]] = SceneParameters
    """The class of the scenes this sampler creates."""

    def __post_init__(self) -> None:
        for attr in SAMPLING_ORDER:
            dist = getattr(self, attr)
            if isinstance(dist, Mapping) and set(dist) != set(OBJ_NAMES):
                raise ValueError(
                    f"{type(self).__name__}.{attr}: a per-class distribution needs exactly "
                    f"the keys {list(OBJ_NAMES)}, got {sorted(dist)}"
                )
        if isinstance(self.obj_name, Mapping):
            raise ValueError(f"{type(self).__name__}.obj_name cannot depend on the class")

    # ------------------------------------------------------------------ drawing

    def _sample_name(self) -> str:
        """A class drawn from ``self.obj_name``."""
        return utils.sample_value(self.obj_name)

    def _sample(self, obj_name: str, dist: Distribution, intervention: bool = False) -> Any:
        """One value of ``dist`` for class ``obj_name`` (a random class if ``intervention``)."""
        if isinstance(dist, Mapping):
            if intervention:
                obj_name = self._sample_name()
            dist = dist[obj_name]
        return utils.sample_value(dist)

    def _set(self, params: SceneParameters, attr: str, value: Any) -> None:
        setattr(params, attr, value)
        params.mark_sampled(attr)

    # ------------------------------------------------------------------ whole scenes

    def sample(self, obj_name: str | None = None) -> SceneParameters:
        """A new scene with every attribute drawn in :data:`SAMPLING_ORDER`.

        Args:
            obj_name: fix the class (its status is then ``custom``) instead of
                drawing it.

        Raises:
            ValueError: if the drawn values fail ``check_values()`` (a
                misconfigured distribution).
        """
        params = self.scene_class()
        if obj_name is None:
            self.sample_obj_name(params)
        else:
            if obj_name not in OBJ_NAMES:
                raise ValueError(f"obj_name must be one of {OBJ_NAMES}, got {obj_name!r}")
            params.obj_name = obj_name
            params.mark_custom("obj_name")
        for attr in SAMPLING_ORDER[1:]:
            getattr(self, f"sample_{attr}")(params)
        params.check_values()
        return params

    def sample_unbiased(self, obj_name: str | None = None) -> SceneParameters:
        """A scene where only ``arm_position`` carries the class.

        Samples as usual, re-draws ``arm_position`` for the scene's class and
        every other attribute (except ``obj_name``) with ``intervention=True``.
        """
        params = self.sample(obj_name)
        self.sample_arm_position(params)
        for attr in SAMPLING_ORDER:
            if attr not in ("obj_name", "arm_position"):
                getattr(self, f"sample_{attr}")(params, intervention=True)
        params.check_values()
        return params

    def make_interventions(
        self, params: Iterable[SceneParameters], attrs: Sequence[str] | str
    ) -> list[SceneParameters]:
        """Clones of ``params`` (same order, new ids, ``original_id`` set) with ``attrs`` redrawn.

        Each attribute is redrawn with ``intervention=True``, in the order given.

        Raises:
            ValueError: an attribute has no ``sample_<attr>`` method.
        """
        attrs = [attrs] if isinstance(attrs, str) else list(attrs)
        self.check_attributes(attrs)
        interventions = []
        for original in params:
            cloned = original.clone()
            for attr in attrs:
                getattr(self, f"sample_{attr}")(cloned, intervention=True)
            cloned.check_values()
            interventions.append(cloned)
        return interventions

    def check_attributes(self, attrs: Iterable[str]) -> None:
        """Raise ValueError if an attribute cannot be sampled (no ``sample_<attr>``)."""
        for attr in attrs:
            if attr not in SAMPLING_ORDER or not hasattr(self, f"sample_{attr}"):
                raise ValueError(
                    f"cannot intervene on {attr!r}; valid attributes: "
                    f"{', '.join(SAMPLING_ORDER)}"
                )

    # ------------------------------------------------------------------ colours

    def obj_color_rgba(self, value: float) -> utils.RGBAColor:
        """RGBA of the object colour value ``value`` in [0, 1]."""
        return utils.color_from_cmap(self.obj_color_map, value)

    def bg_color_rgba(self, value: float) -> utils.RGBAColor:
        """RGBA of the background colour value ``value`` in [0, 1]."""
        return utils.color_from_cmap(self.bg_color_map, value)

    # ------------------------------------------------------------------ one per attribute

    def sample_obj_name(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the class (``intervention`` makes no difference here)."""
        self._set(params, "obj_name", self._sample_name())

    def sample_arm_position(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the right arms' position: 0 inward (peaky) .. 1 outward (stretchy)."""
        self._set(params, "arm_position", float(
            self._sample(params.obj_name, self.arm_position, intervention)))

    def sample_labeling_error(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw whether the label is flipped."""
        self._set(params, "labeling_error", bool(
            self._sample(params.obj_name, self.labeling_error, intervention)))

    def sample_spherical(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the roundness of the blocks: 0 cube-like .. 1 sphere-like."""
        self._set(params, "spherical", float(
            self._sample(params.obj_name, self.spherical, intervention)))

    def sample_bending(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the bending of the spine (radians)."""
        self._set(params, "bending", float(
            self._sample(params.obj_name, self.bending, intervention)))

    def sample_obj_rotation_roll(
        self, params: SceneParameters, intervention: bool = False
    ) -> None:
        """Draw the roll angle (rotation about world Y, radians)."""
        self._set(params, "obj_rotation_roll", float(
            self._sample(params.obj_name, self.obj_rotation_roll, intervention)))

    def sample_obj_rotation_pitch(
        self, params: SceneParameters, intervention: bool = False
    ) -> None:
        """Draw the pitch angle (rotation about world Z, radians)."""
        self._set(params, "obj_rotation_pitch", float(
            self._sample(params.obj_name, self.obj_rotation_pitch, intervention)))

    def sample_obj_rotation_yaw(
        self, params: SceneParameters, intervention: bool = False
    ) -> None:
        """Draw the yaw angle (in-plane spin about the view axis, radians)."""
        self._set(params, "obj_rotation_yaw", float(
            self._sample(params.obj_name, self.obj_rotation_yaw, intervention)))

    def sample_rotation(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw roll, pitch and yaw."""
        self.sample_obj_rotation_roll(params, intervention)
        self.sample_obj_rotation_pitch(params, intervention)
        self.sample_obj_rotation_yaw(params, intervention)

    def sample_fliplr(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw whether the image is mirrored left-right."""
        self._set(params, "fliplr", bool(
            self._sample(params.obj_name, self.fliplr, intervention)))

    def sample_position_x(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the horizontal position (Blender units)."""
        self._set(params, "position_x", float(
            self._sample(params.obj_name, self.position_x, intervention)))

    def sample_position_y(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the vertical position (Blender units)."""
        self._set(params, "position_y", float(
            self._sample(params.obj_name, self.position_y, intervention)))

    def sample_position(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw both positions."""
        self.sample_position_x(params, intervention)
        self.sample_position_y(params, intervention)

    def sample_obj_color(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the object colour value and set its RGBA."""
        value = float(self._sample(params.obj_name, self.obj_color, intervention))
        self._set(params, "obj_color", value)
        params.obj_color_rgba = self.obj_color_rgba(value)

    def sample_bg_color(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the background colour value and set its RGBA."""
        value = float(self._sample(params.obj_name, self.bg_color, intervention))
        self._set(params, "bg_color", value)
        params.bg_color_rgba = self.bg_color_rgba(value)

    def sample_color(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the object colour, then the background colour."""
        self.sample_obj_color(params, intervention)
        self.sample_bg_color(params, intervention)


def _simple_bg_color() -> Distribution:
    return utils.uniform(0.05, 0.85)


def _color_biased_obj_color() -> Distribution:
    return {
        "peaky": utils.truncated_normal(1.0, 0.5, 0.0, 1.0),
        "stretchy": utils.truncated_normal(0.0, 0.5, 0.0, 1.0),
    }


@dataclasses.dataclass
class SimpleColorMapSampler(Sampler):
    """A :class:`Sampler` with simple colour maps: object ``seismic``, background ``binary``.

    The background is drawn uniformly from [0.05, 0.85] (greys, never black).
    """

    bg_color: Distribution = field(default_factory=_simple_bg_color)

    obj_color_map: ClassVar[str] = "seismic"
    bg_color_map: ClassVar[str] = "binary"


@dataclasses.dataclass
class ColorBiasedSampler(SimpleColorMapSampler):
    """Object colour predicts the class: peaky near 1 (red), stretchy near 0 (blue).

    obj_color: peaky truncated normal(1, 0.5, [0, 1]), stretchy truncated
    normal(0, 0.5, [0, 1]).
    """

    obj_color: Distribution = field(default_factory=_color_biased_obj_color)


@dataclasses.dataclass
class HighVariationSampler(Sampler):
    """More pose variation: roll and pitch uniform on [-pi/3, pi/3], bending on [-pi/8, pi/8]."""

    obj_rotation_roll: Distribution = field(
        default_factory=lambda: utils.uniform(-PI / 3, PI / 3))
    obj_rotation_pitch: Distribution = field(
        default_factory=lambda: utils.uniform(-PI / 3, PI / 3))
    obj_rotation_yaw: Distribution = field(default_factory=lambda: utils.uniform(-PI, 0.0))
    bending: Distribution = field(default_factory=lambda: utils.uniform(-PI / 8, PI / 8))


@dataclasses.dataclass
class HighVariationColorBiasedSampler(HighVariationSampler, ColorBiasedSampler):
    """:class:`HighVariationSampler`'s poses with :class:`ColorBiasedSampler`'s colours.

    (Dataclass inheritance takes every field from the *last* base that has it,
    so the colour fields are restated here.)
    """

    obj_color: Distribution = field(default_factory=_color_biased_obj_color)
    bg_color: Distribution = field(default_factory=_simple_bg_color)
