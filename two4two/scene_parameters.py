"""``SceneParameters``: everything the renderer needs to draw one Two4Two image.

A scene is a plain dataclass: any value can be assigned (as upstream), and
:meth:`SceneParameters.check_values` says whether the scene is valid. Samplers
and the dataset writer call it; the renderer draws what it is given. Each
sampled attribute has a *status* that records where its value came from:

* ``default`` -- the dataclass default, never touched;
* ``custom`` -- set by hand (:meth:`SceneParameters.mark_custom`);
* ``sampled`` -- drawn once by a sampler;
* ``resampled`` -- drawn again (e.g. by an intervention).

Scenes serialise to JSON with :meth:`SceneParameters.state_dict` and back with
:meth:`SceneParameters.load` (which re-creates subclasses by module and name);
:func:`load_jsonl` / :func:`write_jsonl` handle files of one scene per line.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from two4two import utils
from two4two.errors import Two4TwoError

__all__ = [
    "ATTRIBUTE_STATUSES",
    "OBJ_NAMES",
    "OBJ_NAME_TO_INT",
    "SAMPLED_ATTRIBUTES",
    "SceneParameters",
    "SceneValueError",
    "UnknownAttributeError",
    "check_scene_id",
    "is_scene_id",
    "load_jsonl",
    "new_scene_id",
    "read_jsonl_lenient",
    "split_peaky_stretchy",
    "write_jsonl",
]

OBJ_NAMES: tuple[str, str] = ("peaky", "stretchy")
"""The two classes; ``obj_name`` as an integer is its index here (peaky 0, stretchy 1)."""

OBJ_NAME_TO_INT: dict[str, int] = {name: i for i, name in enumerate(OBJ_NAMES)}
"""``{'peaky': 0, 'stretchy': 1}``."""


class SceneValueError(Two4TwoError, ValueError):
    """A scene value, status or saved state is invalid; the message names the attribute."""


class UnknownAttributeError(SceneValueError, KeyError):
    """An attribute name that has no status (a ValueError, as upstream, and a KeyError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""

_SCENE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_scene_id(value: object) -> bool:
    """Whether ``value`` is a scene id: a UUID in its canonical lower-case form
    (``8-4-4-4-12`` hex digits), as upstream's ``str(uuid.uuid4())`` and ours write.

    Ids become file names (``<id>.png``), so nothing else is accepted: no path
    separators, no ``..``, nothing a file system could read otherwise.
    """
    return isinstance(value, str) and _SCENE_ID.fullmatch(value) is not None


def check_scene_id(value: object, what: str = "id") -> str:
    """``value`` if it is a scene id (:func:`is_scene_id`), else a :class:`SceneValueError`."""
    if not is_scene_id(value):
        raise SceneValueError(f"{what} {value!r} is not a scene id (a UUID such as "
                              "'3f2b8c1e-9d4a-4c6e-8f0b-2a7d5e9c1b34')")
    return value  # type: ignore[return-value]


def new_scene_id(random_bytes: bytes | None = None) -> str:
    """A new scene id: a random UUID 4, or the UUID 4 made of 16 given ``random_bytes``
    (a seeded plan draws them, so that its ids are reproducible)."""
    if random_bytes is None:
        return str(uuid.uuid4())
    return str(uuid.UUID(bytes=bytes(random_bytes), version=4))


SAMPLED_ATTRIBUTES: tuple[str, ...] = (
    "obj_name",
    "labeling_error",
    "spherical",
    "bending",
    "obj_rotation_roll",
    "obj_rotation_pitch",
    "obj_rotation_yaw",
    "fliplr",
    "position_x",
    "position_y",
    "arm_position",
    "obj_color",
    "bg_color",
)
"""Attributes that samplers draw and whose status is tracked (dataclass order)."""

ATTRIBUTE_STATUSES: tuple[str, ...] = ("default", "custom", "sampled", "resampled")

_DEFAULT_OBJ_CMAP = "seismic"
_DEFAULT_BG_CMAP = "binary"


def _default_status() -> dict[str, str]:
    return dict.fromkeys(SAMPLED_ATTRIBUTES, "default")


@dataclasses.dataclass
class SceneParameters:
    """One scene: an animal (Peaky or Stretchy), its pose, colours and the background.

    Angles are in radians; positions in Blender units; colours are values in
    [0, 1] plus the RGBA they map to. ``resolution`` is ``(height, width)`` of
    the rendered image in pixels. The default colours are upstream's:
    ``seismic(0.5)`` for the object, ``binary(0.45)`` for the background.
    ``labeling_error`` is valid as a boolean or a number equal to 0 or 1 (as
    upstream). Assignment never checks a value; :meth:`check_values` does.
    """

    obj_name: str = "peaky"
    labeling_error: bool = False
    spherical: float = 0.5
    bending: float = 0.0
    obj_rotation_roll: float = 0.0
    obj_rotation_pitch: float = 0.0
    obj_rotation_yaw: float = 0.0
    fliplr: bool = False
    position_x: float = 0.0
    position_y: float = 0.0
    arm_position: float = 0.0
    obj_color: float = 0.5
    obj_color_rgba: utils.RGBAColor = dataclasses.field(
        default_factory=lambda: utils.color_from_cmap(_DEFAULT_OBJ_CMAP, 0.5)
    )
    bg_color: float = 0.45
    bg_color_rgba: utils.RGBAColor = dataclasses.field(
        default_factory=lambda: utils.color_from_cmap(_DEFAULT_BG_CMAP, 0.45)
    )
    resolution: tuple[int, int] = (128, 128)
    id: str = dataclasses.field(default_factory=new_scene_id)
    original_id: str | None = None
    _attributes_status: dict[str, str] = dataclasses.field(default_factory=_default_status)

    VALID_VALUES: ClassVar[dict[str, Any]] = {
        "obj_name": set(OBJ_NAMES),
        "labeling_error": {False, True},  # numbers equal to 0 or 1 too
        "fliplr": {False, True},
        "spherical": (0.0, 1.0),
        "bending": (-math.pi / 8, math.pi / 8),
        "obj_rotation_roll": (-math.pi / 3, math.pi / 3),
        "obj_rotation_pitch": (-math.pi / 3, math.pi / 3),
        "obj_rotation_yaw": (-math.pi, math.pi),
        "position_x": (-3.0, 3.0),
        "position_y": (-3.0, 3.0),
        "arm_position": (0.0, 1.0),
        "obj_color": (0.0, 1.0),
        "bg_color": (0.0, 1.0),
    }
    """Valid values: a set of allowed values or a closed interval ``(low, high)``."""

    def __post_init__(self) -> None:
        self.obj_color_rgba = tuple(float(c) for c in self.obj_color_rgba)  # type: ignore
        self.bg_color_rgba = tuple(float(c) for c in self.bg_color_rgba)  # type: ignore
        self.resolution = tuple(int(r) for r in self.resolution)  # type: ignore
        status = _default_status()
        unknown = set(self._attributes_status) - set(status)
        if unknown:
            raise SceneValueError(f"_attributes_status has unknown attributes {sorted(unknown)}")
        status.update(self._attributes_status)
        for attr, value in status.items():
            if value not in ATTRIBUTE_STATUSES:
                raise SceneValueError(
                    f"status of {attr!r} is {value!r}; must be one of {ATTRIBUTE_STATUSES}"
                )
        self._attributes_status = status

    # ------------------------------------------------------------------ checks

    def check_values(self) -> None:
        """Raise ValueError naming the first attribute outside its valid range, its value
        and the valid range or values."""
        for attr, valid in self.VALID_VALUES.items():
            value = getattr(self, attr)
            if isinstance(valid, set):
                if not any(value is v or (type(value) is type(v) and value == v)
                           or (attr == "labeling_error"
                               and isinstance(value, int | float | np.number | np.bool_)
                               and value == v)
                           for v in valid):
                    raise SceneValueError(
                        f"SceneParameters.{attr} = {value!r} is not valid; "
                        f"must be one of {sorted(valid, key=str)}"
                    )
                continue
            low, high = valid
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not low <= value <= high):
                raise SceneValueError(
                    f"SceneParameters.{attr} = {value!r} is out of its valid range "
                    f"[{low:.6g}, {high:.6g}]"
                )
        for attr in ("obj_color_rgba", "bg_color_rgba"):
            rgba = getattr(self, attr)
            if len(rgba) != 4 or not all(0.0 <= c <= 1.0 for c in rgba):
                raise SceneValueError(
                    f"SceneParameters.{attr} = {rgba!r} must be 4 numbers in [0, 1]"
                )
        if len(self.resolution) != 2 or min(self.resolution) < 1:
            raise SceneValueError(
                f"SceneParameters.resolution = {self.resolution!r} must be two "
                "positive integers (height, width)"
            )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def default_peaky(cls) -> SceneParameters:
        """A peaky with every attribute at its default (arms inward, arm_position=0)."""
        return cls(obj_name="peaky", arm_position=0.0)

    @classmethod
    def default_stretchy(cls) -> SceneParameters:
        """A stretchy with every other attribute at its default (arm_position=1)."""
        params = cls(obj_name="stretchy", arm_position=1.0)
        return params

    # ------------------------------------------------------------------ class as int

    @property
    def obj_name_as_int(self) -> int:
        """``obj_name`` as an integer: peaky 0, stretchy 1."""
        return OBJ_NAMES.index(self.obj_name)

    @property
    def label(self) -> str:
        """The label a classifier sees: ``obj_name``, flipped if ``labeling_error``."""
        if not self.labeling_error:
            return self.obj_name
        return OBJ_NAMES[1 - self.obj_name_as_int]

    def obj_name_with_label_error(self) -> str:
        """``obj_name``, flipped if ``labeling_error`` (upstream's name for :attr:`label`)."""
        return self.label

    # ------------------------------------------------------------------ cloning

    def clone(self, create_new_id: bool = True) -> SceneParameters:
        """A deep copy; with ``create_new_id`` it gets a new id and ``original_id = self.id``.

        Raises:
            ValueError: cloning a clone with a new id (the chain would lose its origin).
        """
        if create_new_id and self.original_id is not None:
            raise SceneValueError(
                f"scene {self.id} is already a clone of {self.original_id}; clone the "
                "original instead (or pass create_new_id=False for an exact copy)"
            )
        cloned = copy.deepcopy(self)
        if create_new_id:
            cloned.original_id = self.id
            cloned.id = new_scene_id()
        return cloned

    @utils.keyword_aliases(other="original")
    def is_clone_of(self, original: SceneParameters) -> bool:
        """Whether this scene was cloned from ``original``."""
        return self.original_id is not None and self.original_id == original.id

    def is_cloned(self) -> bool:
        """Whether this scene is a clone of another one."""
        return self.original_id is not None

    # ------------------------------------------------------------------ statuses

    def _check_attr(self, attribute: str) -> None:
        if attribute not in self._attributes_status:
            raise UnknownAttributeError(
                f"attribute {attribute!r} has no status; tracked attributes: "
                f"{', '.join(SAMPLED_ATTRIBUTES)}"
            )

    @utils.keyword_aliases(attr="attribute")
    def get_status(self, attribute: str) -> str:
        """Status of ``attribute``: ``default``, ``custom``, ``sampled`` or ``resampled``.

        Raises:
            UnknownAttributeError: (a ValueError) ``attribute`` has no status.
        """
        self._check_attr(attribute)
        return self._attributes_status[attribute]

    @utils.keyword_aliases(attr="attribute")
    def mark_sampled(self, attribute: str) -> None:
        """Record that ``attribute`` was drawn: ``sampled`` the first time, then ``resampled``."""
        self._check_attr(attribute)
        previous = self._attributes_status[attribute]
        self._attributes_status[attribute] = (
            "resampled" if previous in ("sampled", "resampled") else "sampled"
        )

    @utils.keyword_aliases(attr="attribute")
    def mark_custom(self, attribute: str) -> None:
        """Record that ``attribute`` was set by hand.

        Raises:
            UnknownAttributeError: (a ValueError) ``attribute`` has no status.
        """
        self._check_attr(attribute)
        self._attributes_status[attribute] = "custom"

    # ------------------------------------------------------------------ files

    @property
    def filename(self) -> str:
        """Image file name, ``<id>.png``.

        Raises:
            SceneValueError: ``id`` is not a scene id (:func:`is_scene_id`).
        """
        return f"{check_scene_id(self.id)}.png"

    @property
    def mask_filename(self) -> str:
        """Segmentation mask file name, ``<id>_mask.png`` (the id checked as for
        :attr:`filename`)."""
        return f"{check_scene_id(self.id)}_mask.png"

    # ------------------------------------------------------------------ (de)serialisation

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all fields plus ``label``, ``__module__``, ``__name__``."""
        state = dataclasses.asdict(self)
        state["obj_color_rgba"] = list(self.obj_color_rgba)
        state["bg_color_rgba"] = list(self.bg_color_rgba)
        state["resolution"] = list(self.resolution)
        state["label"] = self.label
        state["__module__"] = type(self).__module__
        state["__name__"] = type(self).__qualname__
        return state

    @staticmethod
    def load(state: Mapping[str, Any]) -> SceneParameters:
        """Re-create a scene (of the class named by ``__module__``/``__name__``) from a state.

        Raises:
            ValueError: unknown keys, or the named class cannot be imported or is
                not a ``SceneParameters`` subclass.
        """
        state = dict(state)
        state.pop("label", None)
        module = state.pop("__module__", SceneParameters.__module__)
        name = state.pop("__name__", SceneParameters.__qualname__)
        try:
            cls = utils.import_object(f"{module}.{name}")
        except ImportError as error:
            raise SceneValueError(
                f"cannot re-create the scene class {module}.{name}: {error}. Install or "
                "import the package that defines it."
            ) from error
        if not (isinstance(cls, type) and issubclass(cls, SceneParameters)):
            raise SceneValueError(f"{module}.{name} is not a SceneParameters subclass")
        field_names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(state) - field_names)
        if unknown:
            raise SceneValueError(f"unknown keys for {module}.{name}: {unknown}")
        if "id" in state:
            check_scene_id(state["id"])
        if state.get("original_id") is not None:
            check_scene_id(state["original_id"], "original_id")
        return cls(**state)


def split_peaky_stretchy(
    params: Sequence[SceneParameters], num_samples: int | None = None
) -> tuple[list[SceneParameters], list[SceneParameters]]:
    """The peaky and the stretchy scenes of ``params`` (by ``obj_name``), in their order.

    Args:
        params: the scenes.
        num_samples: keep at most this many of each class (None: all).

    Returns:
        ``(peakies, stretchies)``.
    """
    peakies = [p for p in params if p.obj_name == "peaky"]
    stretchies = [p for p in params if p.obj_name == "stretchy"]
    if num_samples is not None:
        peakies, stretchies = peakies[:num_samples], stretchies[:num_samples]
    return peakies, stretchies


# --------------------------------------------------------------------------- JSON lines


def _line(params: SceneParameters) -> str:
    return json.dumps(params.state_dict(), sort_keys=False, allow_nan=False)


def write_jsonl(path: str | os.PathLike, params: Iterable[SceneParameters]) -> Path:
    """Write scenes, one ``state_dict()`` per line, atomically (temp file + rename)."""
    return utils.atomic_write_lines(path, (_line(p) for p in params))


def read_jsonl_lenient(path: str | os.PathLike) -> tuple[list[SceneParameters], int, bytes]:
    """Scenes of a JSON-lines file that may end in a truncated line (an interrupted append).

    Only newline-terminated lines count as written; the writer appends
    ``json + "\\n"`` in one call, so anything after the last newline is the
    remainder of an interrupted append.

    Returns:
        ``(scenes, n_valid_bytes, tail)``: the scenes of all complete lines, the
        byte length of the file's valid prefix (truncate the file to it to drop
        a partial last line), and the unterminated tail (``b""`` if none).

    Raises:
        ValueError: a complete line is not valid JSON or not a valid scene (the
            file is corrupt, not merely interrupted); the message names the line.
    """
    path = Path(path)
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    scenes: list[SceneParameters] = []
    for number, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if raw.strip():
            scenes.append(_parse_line(path, number, raw))
    return scenes, end, data[end:]


def _parse_line(path: Path, number: int, raw: bytes) -> SceneParameters:
    try:
        return SceneParameters.load(json.loads(raw))
    except ValueError as error:
        raise SceneValueError(f"{path}: line {number} is not a valid scene: {error}") from error


def load_jsonl(path: str | os.PathLike) -> list[SceneParameters]:
    """Load a file of one scene ``state_dict()`` per line (e.g. ``parameters.jsonl``).

    A last line without a newline is kept if it is a valid scene and ignored
    if it is not (a truncated line left by an interrupted writer); any other
    invalid line is an error.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ValueError: a line is not valid JSON or not a valid scene.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    scenes, _, tail = read_jsonl_lenient(path)
    if tail.strip():
        try:
            scenes.append(SceneParameters.load(json.loads(tail)))
        except ValueError:
            pass  # truncated by an interrupted append
    return scenes
