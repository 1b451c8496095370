"""The study's tutorial: what each Two4Two attribute looks like, and comprehension checks.

Rendered with two4two at export time (:func:`render_scenes`, Blender Cycles):

* one **base scene** (:func:`base_scene`) and, per attribute of
  :func:`~dubfiv.study.content.default_attributes`, a row of five scenes that
  differ from the base in that attribute only (:data:`VARIATIONS`); each row
  is one tutorial page (a 1 x 5 grid, captions above the columns);
* per comprehension check a **pair** of scenes: a second base
  (:func:`check_base_scene`) and a copy with one attribute changed
  (:data:`CHECK_CHANGES`); the question asks which attribute differs between
  the two images of the pair, with the attribute labels as choices (the
  checked attributes and the order of the choices are drawn with the seed).
  All pairs are shown on one page above the questions (``Study.comprehension_page``).

Scenes are deterministic (fixed values, ids ``tutorial-...``); Cycles renders
with a fixed noise seed, so the same settings give the same images. Images are
written like the explanation cells (integer upscaling to ``cell_pixels``,
neutral names in ``public/`` through an :class:`~dubfiv.study.build.names.ImageNamer`).
Angles are radians; positions Blender units (+x right, +y up in the image).
"""

from __future__ import annotations

import dataclasses
import html
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dubfiv.errors import ParameterError
from dubfiv.explain.records import scene_record
from dubfiv.study.build.material import RenderSettings, cell_path, save_cell
from dubfiv.study.content import Attribute, CheckQuestion, GridLayout, Page, StudyImage

if TYPE_CHECKING:
    from dubfiv.study.build.names import ImageNamer
    from two4two.scene_parameters import SceneParameters

__all__ = [
    "CHECK_CHANGES",
    "VARIATIONS",
    "Tutorial",
    "TutorialError",
    "TutorialSettings",
    "base_scene",
    "build_tutorial",
    "check_base_scene",
    "infer_color_map",
    "render_scenes",
    "tutorial_scenes",
]

PI = math.pi


class TutorialError(ParameterError):
    """The tutorial cannot be built as asked (bad settings, unknown attributes)."""


@dataclasses.dataclass(frozen=True)
class TutorialSettings:
    """How the tutorial is rendered.

    Attributes:
        resolution: rendered image size in pixels (square); cells are then
            enlarged by an integer factor to ``cell_pixels`` (see RenderSettings).
        samples: Cycles samples per pixel (16 to 64 look fine at 128 px).
        device: Cycles device: ``auto``, ``cpu`` or ``gpu``.
        n_processes: render workers (0: one per core, at most one per scene).
        obj_color_map, bg_color_map: matplotlib colour maps of the two colours
            (those of the run's dataset; ``coolwarm`` is two4two's default).
        n_checks: comprehension checks (pairs), at most the number of attributes.
    """

    resolution: int = 128
    samples: int = 32
    device: str = "auto"
    n_processes: int = 0
    obj_color_map: str = "coolwarm"
    bg_color_map: str = "coolwarm"
    n_checks: int = 2

    def check(self) -> None:
        """Raise :class:`TutorialError` naming the bad setting."""
        if not 16 <= self.resolution <= 1024:
            raise TutorialError(f"tutorial_resolution {self.resolution} must be 16 to 1024 px",
                                parameter="tutorial_resolution")
        if not 1 <= self.samples <= 4096:
            raise TutorialError(f"tutorial_samples {self.samples} must be 1 to 4096",
                                parameter="tutorial_samples")
        if self.device not in ("auto", "cpu", "gpu"):
            raise TutorialError(f"tutorial device {self.device!r} must be auto, cpu or gpu")
        if not 1 <= self.n_checks <= len(VARIATIONS):
            raise TutorialError(f"comprehension_checks {self.n_checks} must be 1 to "
                                f"{len(VARIATIONS)}", parameter="comprehension_checks")


# Per attribute key: (page text, [(column caption, {scene parameter: value}), ...]).
VARIATIONS: dict[str, tuple[str, list[tuple[str, dict[str, float]]]]] = {
    "arm_position": (
        "The arms at one end of the body can be pulled in or stretched out. This is what "
        "makes an animal a <b>Peaky</b> (arms pulled in) or a <b>Stretchy</b> (arms "
        "stretched out).",
        [("arms in (Peaky)", {"arm_position": 0.0}), ("", {"arm_position": 0.25}),
         ("middle", {"arm_position": 0.5}), ("", {"arm_position": 0.75}),
         ("arms out (Stretchy)", {"arm_position": 1.0})]),
    "obj_color": (
        "The colour of the animal's blocks, from one end of the colour scale to the other.",
        [("", {"obj_color": v}) for v in (0.0, 0.25, 0.5, 0.75, 1.0)]),
    "bg_color": (
        "The colour of the background behind the animal.",
        [("", {"bg_color": v}) for v in (0.2, 0.4, 0.6, 0.8, 1.0)]),
    "spherical": (
        "The blocks can be cubes, spheres or anything in between.",
        [("cubes", {"spherical": 0.0}), ("", {"spherical": 0.25}),
         ("in between", {"spherical": 0.5}), ("", {"spherical": 0.75}),
         ("spheres", {"spherical": 1.0})]),
    "bending": (
        "The body can be straight or bent to either side.",
        [("bent one way", {"bending": -PI / 8}), ("", {"bending": -PI / 16}),
         ("straight", {"bending": 0.0}), ("", {"bending": PI / 16}),
         ("bent the other way", {"bending": PI / 8})]),
    "rotation": (
        "The whole animal can be spun in the picture or turned in space.",
        [("upright", {"obj_rotation_yaw": 0.0}),
         ("spun 45\N{DEGREE SIGN}", {"obj_rotation_yaw": -PI / 4}),
         ("spun 90\N{DEGREE SIGN}", {"obj_rotation_yaw": -PI / 2}),
         ("turned one way", {"obj_rotation_pitch": PI / 6}),
         ("turned the other way", {"obj_rotation_pitch": -PI / 6})]),
    "position": (
        "Where the animal is in the picture.",
        [("left", {"position_x": -0.8}), ("centre", {}), ("right", {"position_x": 0.8}),
         ("lower", {"position_y": -0.8}), ("higher", {"position_y": 0.8})]),
}
"""One tutorial row per attribute: five scenes differing from :func:`base_scene` in it."""

CHECK_CHANGES: dict[str, dict[str, float]] = {
    "arm_position": {"arm_position": 1.0},
    "obj_color": {"obj_color": 0.0},
    "bg_color": {"bg_color": 0.0},
    "spherical": {"spherical": 1.0},
    "bending": {"bending": PI / 8},
    "rotation": {"obj_rotation_yaw": -PI / 2},
    "position": {"position_x": 0.8, "position_y": 0.6},
}
"""The change of a comprehension pair, applied to :func:`check_base_scene`."""

_BASE = {"obj_name": "peaky", "arm_position": 0.5, "spherical": 0.5, "bending": 0.0,
         "obj_rotation_roll": 0.0, "obj_rotation_pitch": 0.0, "obj_rotation_yaw": 0.0,
         "position_x": 0.0, "position_y": 0.0, "obj_color": 0.0, "bg_color": 0.6}
_CHECK_BASE = {**_BASE, "arm_position": 0.0, "spherical": 0.0, "obj_color": 1.0,
               "bg_color": 0.45, "obj_rotation_yaw": -PI / 6}


def _scene(values: dict[str, Any], settings: TutorialSettings, scene_id: str
           ) -> SceneParameters:
    from two4two import utils
    from two4two.scene_parameters import SceneParameters

    scene = SceneParameters(**values, resolution=(settings.resolution, settings.resolution),
                            id=scene_id)
    scene.obj_color_rgba = utils.color_from_cmap(settings.obj_color_map, scene.obj_color)
    scene.bg_color_rgba = utils.color_from_cmap(settings.bg_color_map, scene.bg_color)
    for attr in values:
        if attr != "obj_name":
            scene.mark_custom(attr)
    scene.check_values()
    return scene


def base_scene(settings: TutorialSettings) -> SceneParameters:
    """The scene every tutorial row varies (a Peaky with arms half out, blue on light)."""
    return _scene(dict(_BASE), settings, "tutorial-base")


def check_base_scene(settings: TutorialSettings) -> SceneParameters:
    """The first image of every comprehension pair (looks different from :func:`base_scene`)."""
    return _scene(dict(_CHECK_BASE), settings, "tutorial-check-base")


def tutorial_scenes(settings: TutorialSettings, keys: Sequence[str], check_keys: Sequence[str]
                    ) -> list[tuple[str, SceneParameters]]:
    """``(image key, scene)`` of every tutorial image: the rows of the attributes ``keys``,
    then one pair per attribute of ``check_keys``."""
    out = []
    for key in keys:
        for j, (_, change) in enumerate(VARIATIONS[key][1]):
            out.append((f"tutorial/{key}_{j + 1}",
                        _scene({**_BASE, **change}, settings, f"tutorial-{key}-{j + 1}")))
    for i, key in enumerate(check_keys):
        out.append((f"tutorial/check{i + 1}_a", _scene(dict(_CHECK_BASE), settings,
                                                        f"tutorial-check{i + 1}-a")))
        out.append((f"tutorial/check{i + 1}_b",
                    _scene({**_CHECK_BASE, **CHECK_CHANGES[key]}, settings,
                           f"tutorial-check{i + 1}-b")))
    return out


_CANDIDATE_MAPS = ("coolwarm", "seismic", "binary", "viridis", "gray")


def infer_color_map(scenes: Sequence[Any], attr: str, default: str = "coolwarm") -> str:
    """The colour map that turns ``scene.<attr>`` into ``scene.<attr>_rgba`` in most scenes.

    ``attr`` is ``obj_color`` or ``bg_color``; tries two4two's maps (and a few
    common ones); ``default`` if none fits at least half of the scenes (e.g. a
    sampler that maps values through its own function).
    """
    from two4two import utils

    best, best_hits = default, 0
    for name in _CANDIDATE_MAPS:
        hits = 0
        for scene in scenes:
            value, rgba = getattr(scene, attr, None), getattr(scene, f"{attr}_rgba", None)
            if value is None or rgba is None:
                continue
            if np.allclose(utils.color_from_cmap(name, float(value)), rgba, atol=1e-6):
                hits += 1
        if hits > best_hits:
            best, best_hits = name, hits
    return best if best_hits * 2 >= max(len(scenes), 1) else default


def render_scenes(scenes: Sequence[SceneParameters], settings: TutorialSettings,
                  progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Render ``scenes`` with two4two (Cycles); uint8 ``[H, W, 3]`` images in order.

    ``progress(done, total)`` is called after each image. Raises
    :class:`two4two.blender.RenderError` (a ``Two4TwoError``) if rendering fails.
    """
    from two4two.blender import render

    images = []
    for image, _mask, _params in render(list(scenes), n_processes=settings.n_processes,
                                        samples=settings.samples, device=settings.device):
        images.append(np.asarray(image, dtype=np.uint8))
        if progress is not None:
            progress(len(images), len(scenes))
    return images


@dataclasses.dataclass
class Tutorial:
    """What :func:`build_tutorial` made: the study's tutorial fields and a record."""

    intro: str
    pages: list[Page]
    comprehension_page: Page
    checks: list[CheckQuestion]
    record: dict[str, Any]


def _check_question(index: int, key: str, labels: dict[str, str], rng: np.random.Generator
                    ) -> CheckQuestion:
    others = [k for k in labels if k != key]
    picked = [str(k) for k in rng.choice(others, size=min(3, len(others)), replace=False)]
    order = [str(k) for k in rng.permutation([key, *picked])]
    letter = chr(ord("A") + index)
    return CheckQuestion(
        tag=f"comprehension_{index + 1}", kind="comprehension",
        text=f"<p>Look at <b>pair {letter}</b>. Which attribute is different between its two "
             "images?</p>",
        choices=[labels[k] for k in order], correct=order.index(key) + 1)


def build_tutorial(folder: Path, attributes: Sequence[Attribute], settings: TutorialSettings,
                   cells: RenderSettings, seed: int, namer: ImageNamer | None = None,
                   log: Callable[[str], None] | None = None) -> Tutorial:
    """Render the tutorial into ``folder`` and describe it (see the module docstring).

    Args:
        folder: the study folder (images go to ``namer``'s paths in it).
        attributes: the attributes to teach; keys must be in :data:`VARIATIONS`.
        settings: rendering and check settings.
        cells: how images are written (upscaling, dpi).
        seed: draws the checked attributes and the order of the choices.
        namer: neutral image names (``None``: ``images/tutorial/...``).
        log: receives progress lines.

    Raises:
        TutorialError: bad settings or an attribute without a tutorial row.
        two4two.errors.Two4TwoError: rendering failed (e.g. ``bpy`` missing).
    """
    settings.check()
    say = log or (lambda _msg: None)
    unknown = [a.key for a in attributes if a.key not in VARIATIONS]
    if unknown:
        raise TutorialError(f"no tutorial row for attribute(s) {unknown}; known: "
                            f"{sorted(VARIATIONS)}")
    keys = [a.key for a in attributes]
    labels = {a.key: a.label for a in attributes}
    if settings.n_checks > len(keys):
        raise TutorialError(f"comprehension_checks {settings.n_checks}: only {len(keys)} "
                            "attributes to check", parameter="comprehension_checks")
    rng = np.random.default_rng([seed, 24])
    check_keys = [str(k) for k in rng.choice(keys, size=settings.n_checks, replace=False)]
    scenes = tutorial_scenes(settings, keys, check_keys)
    t0 = time.perf_counter()
    step = max(1, len(scenes) // 4)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            say(f"tutorial: rendered {done}/{total} images ({time.perf_counter() - t0:.0f} s)")

    say(f"tutorial: rendering {len(scenes)} images at {settings.resolution} px, "
        f"{settings.samples} samples")
    rendered = render_scenes([s for _, s in scenes], settings, progress)
    if len(rendered) != len(scenes):
        raise TutorialError(f"the renderer returned {len(rendered)} images for "
                            f"{len(scenes)} scenes")
    images: dict[str, StudyImage] = {}
    records = []
    for (key, scene), array in zip(scenes, rendered, strict=True):
        rel = cell_path(namer, key)
        chw = np.ascontiguousarray(np.asarray(array, dtype=np.uint8).transpose(2, 0, 1))
        width, height = save_cell(chw, folder / rel, cells)
        images[key] = StudyImage(rel, alt="", width=width, height=height)
        records.append({"key": key, "path": rel, "scene": scene_record(scene)})
    pages = []
    for key in keys:
        text, row = VARIATIONS[key]
        row_images = []
        for j, (caption, _) in enumerate(row):
            img = images[f"tutorial/{key}_{j + 1}"]
            img.alt = f"{labels[key]}, example {j + 1}" + (f": {caption}" if caption else "")
            row_images.append(img)
        captions = [c for c, _ in row]
        pages.append(Page(
            f"Attribute: {labels[key]}",
            f"<p>{text} Only this attribute changes from image to image; everything else "
            "stays the same.</p>",
            row_images, GridLayout(1, len(row), [], captions if any(captions) else [])))
    checks, pair_images, row_labels = [], [], []
    for i, key in enumerate(check_keys):
        checks.append(_check_question(i, key, labels, rng))
        letter = chr(ord("A") + i)
        for side, word in (("a", "first"), ("b", "second")):
            img = images[f"tutorial/check{i + 1}_{side}"]
            img.alt = f"pair {letter}, {word} image"
            pair_images.append(img)
        row_labels.append(f"pair {letter}")
    comprehension = Page(
        "Check your understanding",
        "<p>Each pair below shows two images that differ in exactly one attribute. Please "
        "answer the questions below the images. If an answer is wrong, the study ends "
        "here.</p>",
        pair_images, GridLayout(len(check_keys), 2, row_labels, ["first image",
                                                                 "second image"]))
    names = ", ".join(html.escape(labels[k]) for k in keys)
    intro = (
        "<p>In this study, a computer program (the <i>model</i>) sorts images of two "
        "abstract animals, <b>Peaky</b> and <b>Stretchy</b>. Each animal is made of blocks, "
        f"and the images differ in {len(keys)} attributes: {names}.</p>"
        "<p>On the next pages you see what each attribute looks like: each row of images "
        "changes one attribute and keeps everything else the same. Afterwards, a few "
        "questions check that the attributes are clear.</p>")
    record = {"settings": dataclasses.asdict(settings), "seed": seed,
              "checked_attributes": check_keys,
              "checks": [dataclasses.asdict(c) for c in checks], "images": records,
              "render_seconds": time.perf_counter() - t0}
    return Tutorial(intro, pages, comprehension, checks, record)
