"""Samplers: draw :class:`~two4two.scene_parameters.SceneParameters`, with biases on purpose.

A :class:`Sampler` is a dataclass whose fields are distributions, one per
scene attribute. A distribution (the type :data:`Distribution`) is

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

Upstream two4two's sampler API is kept (``docs/two4two_api.md``): the static
helpers :meth:`Sampler._sample` and :meth:`Sampler._sample_truncated`, the
colour maps as dataclass fields, the ``MedVar*`` samplers and the attribute
groups ``rotation``, ``position`` and ``color`` for interventions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import field
from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.stats

from two4two import utils
from two4two.errors import Two4TwoError
from two4two.scene_parameters import OBJ_NAMES, SAMPLED_ATTRIBUTES, SceneParameters

__all__ = [
    "ATTRIBUTE_GROUPS",
    "SAMPLING_ORDER",
    "ColorBiasedSampler",
    "Continouos",
    "Discrete",
    "Distribution",
    "HighVariationColorBiasedSampler",
    "HighVariationSampler",
    "MedVarColorSampler",
    "MedVarNoArmsSampler",
    "MedVarSampler",
    "MedVarSpherColorSampler",
    "MedVarSpherSampler",
    "Sampler",
    "SimpleColorMapSampler",
    "UnknownClassError",
]


class RandomVariable(Protocol):
    """Anything with ``rvs()``, e.g. a frozen scipy distribution."""

    def rvs(self, *args: Any, **kwargs: Any) -> Any:
        """Draw a value."""


Continouos = RandomVariable | Callable[[], float] | float
"""A distribution of numbers (upstream's name, spelling included)."""

Discrete = RandomVariable | Callable[[], Any] | bool | int | str
"""A distribution of discrete values (classes, flags)."""

Distribution = Continouos | Discrete | Mapping[str, Continouos | Discrete]
"""A distribution, or a per-class dict ``{'peaky': dist, 'stretchy': dist}`` of them."""


class UnknownClassError(Two4TwoError, ValueError, KeyError):
    """A per-class distribution has no entry for the class asked for (a ``KeyError``, as
    upstream's ``dist[obj_name]`` raises, and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


PI = math.pi

_CLASS_FIRST = ("obj_name", "arm_position")
SAMPLING_ORDER: tuple[str, ...] = (
    *_CLASS_FIRST, *(a for a in SAMPLED_ATTRIBUTES if a not in _CLASS_FIRST))
"""The order in which :meth:`Sampler.sample` draws the attributes: the class, the arm
position (which depends on it), then the other :data:`SAMPLED_ATTRIBUTES` in their order."""

ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "rotation": ("obj_rotation_roll", "obj_rotation_pitch", "obj_rotation_yaw"),
    "position": ("position_x", "position_y"),
    "color": ("obj_color", "bg_color"),
}
"""Names that stand for several attributes in :meth:`Sampler.make_interventions`
(each has a ``sample_<group>`` method)."""


@dataclasses.dataclass
class Sampler:
    """The default Two4Two sampler: only the arm position depends on the class.

    Defaults (intervals are closed): obj_name 50/50; arm_position peaky
    truncated normal(0.5, 0.2, [0, 0.52]), stretchy truncated normal(0.5, 0.2,
    [0.48, 1]); spherical Beta(0.3, 0.3); bending truncated normal(0, pi/20,
    +-pi/10); roll truncated normal(0, 0.03*pi/4, +-pi/4); pitch truncated
    normal(0, 0.3*pi/4, +-pi/4); yaw uniform [-pi, 0]; position_x/y uniform
    [-0.8, 0]; obj_color uniform [0, 1]; bg_color uniform [0.05, 0.95];
    labeling_error and fliplr False. Both colours map through ``coolwarm``
    (the fields ``obj_color_map`` and ``bg_color_map``: a matplotlib colour map
    or its name; set them on an instance to change the colours it samples).
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

    obj_color_map: Any = "coolwarm"
    """matplotlib colour map (or its name) of the object colour."""
    bg_color_map: Any = "coolwarm"
    """matplotlib colour map (or its name) of the background colour."""

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
        for name in ("obj_color_map", "bg_color_map"):
            cmap = getattr(self, name)
            if isinstance(cmap, str):
                try:
                    utils.get_cmap(cmap)
                except ValueError as error:
                    raise ValueError(f"{type(self).__name__}.{name}: {error}") from None
            elif not callable(cmap):
                raise ValueError(f"{type(self).__name__}.{name} must be a matplotlib colour "
                                 f"map or its name, got {cmap!r}")

    # ------------------------------------------------------------------ drawing

    def _sample_name(self) -> str:
        """A class drawn from ``self.obj_name``."""
        return utils.sample_value(self.obj_name)

    @staticmethod
    def _sample(obj_name: str | None, dist: Distribution, size: int = 1) -> Any:
        """Draw from ``dist`` (``dist[obj_name]`` if it is a per-class dict).

        Args:
            obj_name: the class, used only if ``dist`` is a per-class dict; ``None``
                takes the dict's first distribution (as upstream).
            dist: a distribution (see the module docstring).
            size: number of draws.

        Returns:
            one Python value if ``size == 1``, else a tuple of ``size`` values.

        Raises:
            UnknownClassError: (a KeyError) ``dist`` is a per-class dict without
                ``obj_name``.
        """
        if isinstance(dist, Mapping):
            if obj_name is None and dist:
                obj_name = next(iter(dist))
            if obj_name not in dist:
                raise UnknownClassError(f"per-class distribution has no entry for "
                                        f"{obj_name!r}; keys: {sorted(dist)}")
            dist = dist[obj_name]
        if size == 1:
            return utils.sample_value(dist)
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        return tuple(utils.sample_value(dist) for _ in range(int(size)))

    @staticmethod
    def _sample_truncated(obj_name: str | None, dist: Distribution, size: int = 1,
                          min: float = -math.inf, max: float = math.inf) -> Any:
        """Like :meth:`_sample`, but every value lies in ``[min, max]`` (rejection sampling).

        Raises:
            RuntimeError: ``[min, max]`` has (almost) no probability under ``dist``.
        """
        lower, upper = min, max

        def one() -> Any:
            return utils.rejection_sample(
                lambda: Sampler._sample(obj_name, dist), lambda v: lower <= v <= upper)

        if size == 1:
            return one()
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        return tuple(one() for _ in range(int(size)))

    def _draw(self, params: SceneParameters, dist: Distribution, intervention: bool) -> Any:
        """One value of ``dist`` for the scene's class (a random class if ``intervention``)."""
        obj_name = params.obj_name
        if intervention and isinstance(dist, Mapping):
            obj_name = self._sample_name()
        return self._sample(obj_name, dist)

    def _set(self, params: SceneParameters, attr: str, value: Any) -> None:
        setattr(params, attr, value)
        params.mark_sampled(attr)

    # ------------------------------------------------------------------ whole scenes

    def _new_scene(self, obj_name: str | None) -> SceneParameters:
        """A scene whose class is drawn, or set to ``obj_name`` (status ``sampled`` either way)."""
        params = self.scene_class()
        if obj_name is None:
            self.sample_obj_name(params)
        else:
            if obj_name not in OBJ_NAMES:
                raise ValueError(f"obj_name must be one of {OBJ_NAMES}, got {obj_name!r}")
            params.obj_name = obj_name
            params.mark_sampled("obj_name")
        return params

    def sample(self, obj_name: str | None = None) -> SceneParameters:
        """A new scene with every attribute drawn in :data:`SAMPLING_ORDER`.

        Args:
            obj_name: fix the class instead of drawing it (its status is still
                ``sampled``, as upstream).

        Raises:
            ValueError: if the drawn values fail ``check_values()`` (a
                misconfigured distribution).
        """
        params = self._new_scene(obj_name)
        for attr in SAMPLING_ORDER[1:]:
            getattr(self, f"sample_{attr}")(params)
        params.check_values()
        return params

    def sample_unbiased(self, obj_name: str | None = None) -> SceneParameters:
        """A scene where only ``arm_position`` carries the class.

        Draws the class (or takes ``obj_name``), ``arm_position`` for that
        class, and every other attribute with ``intervention=True``, each once
        (every status is ``sampled``).
        """
        params = self._new_scene(obj_name)
        for attr in SAMPLING_ORDER[1:]:
            getattr(self, f"sample_{attr}")(params, intervention=attr != "arm_position")
        params.check_values()
        return params

    @utils.keyword_aliases(attrs="interventions")
    def make_interventions(
        self, params: Iterable[SceneParameters], interventions: Sequence[str] | str
    ) -> list[SceneParameters]:
        """Clones of ``params`` (same order, new ids, ``original_id`` set) with attributes redrawn.

        Args:
            params: the original scenes.
            interventions: attribute names (or one name), or the groups of
                :data:`ATTRIBUTE_GROUPS` (``rotation``, ``position``, ``color``);
                each is redrawn with ``intervention=True``, in the order given.

        Raises:
            ValueError: an attribute has no ``sample_<attr>`` method.
        """
        attrs = [interventions] if isinstance(interventions, str) else list(interventions)
        self.check_attributes(attrs)
        cloned_scenes = []
        for original in params:
            cloned = original.clone()
            for attr in attrs:
                getattr(self, f"sample_{attr}")(cloned, intervention=True)
            cloned.check_values()
            cloned_scenes.append(cloned)
        return cloned_scenes

    def check_attributes(self, attrs: Iterable[str]) -> None:
        """Raise ValueError if an attribute or group cannot be sampled (no ``sample_<attr>``)."""
        valid = (*SAMPLING_ORDER, *ATTRIBUTE_GROUPS)
        for attr in attrs:
            if attr not in valid or not hasattr(self, f"sample_{attr}"):
                raise ValueError(
                    f"cannot intervene on {attr!r}; valid attributes: {', '.join(valid)}"
                )

    # ------------------------------------------------------------------ colours

    def _obj_cmap(self, params: SceneParameters | None = None) -> Any:
        """The object colour map as a matplotlib ``Colormap`` (``params`` is unused here;
        subclasses may pick a map per scene)."""
        cmap = self.obj_color_map
        return utils.get_cmap(cmap) if isinstance(cmap, str) else cmap

    def _bg_cmap(self, params: SceneParameters | None = None) -> Any:
        """The background colour map as a matplotlib ``Colormap`` (see :meth:`_obj_cmap`)."""
        cmap = self.bg_color_map
        return utils.get_cmap(cmap) if isinstance(cmap, str) else cmap

    def obj_color_rgba(self, value: float) -> utils.RGBAColor:
        """RGBA of the object colour value ``value`` in [0, 1] (``obj_color_map``)."""
        return utils.color_from_cmap(self.obj_color_map, value)

    def bg_color_rgba(self, value: float) -> utils.RGBAColor:
        """RGBA of the background colour value ``value`` in [0, 1] (``bg_color_map``)."""
        return utils.color_from_cmap(self.bg_color_map, value)

    # ------------------------------------------------------------------ one per attribute

    def sample_obj_name(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the class (``intervention`` makes no difference here)."""
        self._set(params, "obj_name", self._sample_name())

    def sample_arm_position(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the right arms' position: 0 inward (peaky) .. 1 outward (stretchy)."""
        self._set(params, "arm_position", float(
            self._draw(params, self.arm_position, intervention)))

    def sample_labeling_error(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw whether the label is flipped; the value is stored as drawn (as upstream)."""
        self._set(params, "labeling_error", self._draw(params, self.labeling_error, intervention))

    def sample_spherical(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the roundness of the blocks: 0 cube-like .. 1 sphere-like."""
        self._set(params, "spherical", float(
            self._draw(params, self.spherical, intervention)))

    def sample_bending(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the bending of the spine (radians)."""
        self._set(params, "bending", float(
            self._draw(params, self.bending, intervention)))

    def sample_obj_rotation_roll(
        self, params: SceneParameters, intervention: bool = False
    ) -> None:
        """Draw the roll angle (rotation about world Y, radians)."""
        self._set(params, "obj_rotation_roll", float(
            self._draw(params, self.obj_rotation_roll, intervention)))

    def sample_obj_rotation_pitch(
        self, params: SceneParameters, intervention: bool = False
    ) -> None:
        """Draw the pitch angle (rotation about world Z, radians)."""
        self._set(params, "obj_rotation_pitch", float(
            self._draw(params, self.obj_rotation_pitch, intervention)))

    def sample_obj_rotation_yaw(
        self, params: SceneParameters, intervention: bool = False
    ) -> None:
        """Draw the yaw angle (in-plane spin about the view axis, radians)."""
        self._set(params, "obj_rotation_yaw", float(
            self._draw(params, self.obj_rotation_yaw, intervention)))

    def sample_rotation(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw roll, pitch and yaw."""
        self.sample_obj_rotation_roll(params, intervention)
        self.sample_obj_rotation_pitch(params, intervention)
        self.sample_obj_rotation_yaw(params, intervention)

    def sample_fliplr(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw whether the image is mirrored left-right."""
        self._set(params, "fliplr", bool(
            self._draw(params, self.fliplr, intervention)))

    def sample_position_x(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the horizontal position (Blender units)."""
        self._set(params, "position_x", float(
            self._draw(params, self.position_x, intervention)))

    def sample_position_y(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the vertical position (Blender units)."""
        self._set(params, "position_y", float(
            self._draw(params, self.position_y, intervention)))

    def sample_position(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw both positions."""
        self.sample_position_x(params, intervention)
        self.sample_position_y(params, intervention)

    def sample_obj_color(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the object colour value and set its RGBA."""
        value = float(self._draw(params, self.obj_color, intervention))
        self._set(params, "obj_color", value)
        params.obj_color_rgba = self.obj_color_rgba(value)

    def sample_bg_color(self, params: SceneParameters, intervention: bool = False) -> None:
        """Draw the background colour value and set its RGBA."""
        value = float(self._draw(params, self.bg_color, intervention))
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
    obj_color_map: Any = "seismic"
    bg_color_map: Any = "binary"


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
class HighVariationColorBiasedSampler(HighVariationSampler):
    """Upstream's class of this name: exactly :class:`HighVariationSampler`.

    Despite its name it has no colour bias (upstream derives it from
    :class:`HighVariationSampler` only): ``coolwarm`` maps, obj_color uniform
    on [0, 1], background uniform on [0.05, 0.95]. Kept so that upstream code
    draws the same scenes; for a colour bias with high variation, set
    ``obj_color`` (e.g. to :class:`ColorBiasedSampler`'s) yourself.
    """


# --------------------------------------------------------------------------- medium variation
# The MedVar samplers: pose variation between Sampler's and HighVariationSampler's, and
# biases switched on one at a time. Their distributions are ours (docs/two4two_api.md).


def _class_biased(peaky_mean: float, stretchy_mean: float) -> Distribution:
    return {
        "peaky": utils.truncated_normal(peaky_mean, 0.5, 0.0, 1.0),
        "stretchy": utils.truncated_normal(stretchy_mean, 0.5, 0.0, 1.0),
    }


@dataclasses.dataclass
class MedVarSampler(Sampler):
    """Medium pose variation, no bias besides the arm position.

    roll truncated normal(0, pi/8, +-pi/4), pitch truncated normal(0, pi/8,
    +-pi/4), bending truncated normal(0, pi/16, +-pi/8); everything else as
    :class:`Sampler`.
    """

    obj_rotation_roll: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.0, PI / 8, -PI / 4, PI / 4))
    obj_rotation_pitch: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.0, PI / 8, -PI / 4, PI / 4))
    bending: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.0, PI / 16, -PI / 8, PI / 8))


@dataclasses.dataclass
class MedVarColorSampler(MedVarSampler):
    """:class:`MedVarSampler` whose object colour predicts the class.

    obj_color: peaky truncated normal(1, 0.5, [0, 1]), stretchy truncated
    normal(0, 0.5, [0, 1]) (as :class:`ColorBiasedSampler`, ``coolwarm`` map).
    """

    obj_color: Distribution = field(default_factory=lambda: _class_biased(1.0, 0.0))


@dataclasses.dataclass
class MedVarSpherSampler(MedVarSampler):
    """:class:`MedVarSampler` whose roundness predicts the class.

    spherical: peaky truncated normal(1, 0.5, [0, 1]) (round), stretchy
    truncated normal(0, 0.5, [0, 1]) (cube-like).
    """

    spherical: Distribution = field(default_factory=lambda: _class_biased(1.0, 0.0))


@dataclasses.dataclass
class MedVarSpherColorSampler(MedVarSampler):
    """:class:`MedVarSampler` with both the colour and the roundness bias."""

    obj_color: Distribution = field(default_factory=lambda: _class_biased(1.0, 0.0))
    spherical: Distribution = field(default_factory=lambda: _class_biased(1.0, 0.0))


@dataclasses.dataclass
class MedVarNoArmsSampler(MedVarSpherColorSampler):
    """:class:`MedVarSpherColorSampler` whose arm position does not depend on the class.

    arm_position: truncated normal(0.5, 0.2, [0, 1]) for both classes, so
    only the colour and the roundness carry the class.
    """

    arm_position: Distribution = field(
        default_factory=lambda: utils.truncated_normal(0.5, 0.2, 0.0, 1.0))
