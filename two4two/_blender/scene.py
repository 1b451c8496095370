"""The Two4Two scene in Blender (imports ``bpy``; only worker processes import this).

:class:`BlenderScene` builds the scene of ``docs/two4two_scene.md`` once and updates it
per image:

* **Blocks** (facts in ``docs/two4two_scene.md``): a hidden *template*
  object, a cube of edge ``0.8 + 0.1 * spherical`` with a Bevel modifier
  (one segment, width ``0.05 + edge * 0.25 * spherical``) and a Catmull-Clark
  Subdivision Surface modifier (level :data:`SUBDIVISION_LEVEL`), is evaluated
  once per ``spherical``: its vertices ``[V, 3]`` and, through eight one-hot
  vertex groups, how each evaluated vertex interpolates the cube's corners
  (``[V, 8]``; the weights a live modifier stack would hand to the Armature
  modifier after it). Faces are smooth-shaded. Each of the eight block
  objects (``pass_index`` 1..8) has its own copy of that mesh, whose vertices
  are rewritten per image in world coordinates: the template placed at the
  block's centre, bent by linear blend skinning (:func:`geometry.skin`) with
  automatic (heat) bone weights, then moved by the object matrix
  (:func:`geometry.object_matrix`).
* **Heat weights**: a hidden copy of the base mesh (eight cubes, 64 corners)
  and an armature with the bones of :func:`geometry.bones`; per
  ``(spherical, arm_position)`` Blender's ``parent_set(type='ARMATURE_AUTO')``
  (run with ``bpy.context.temp_override``) computes the corners' weights,
  which are read back ``[64, 8]``. Blender's bone-heat solver is
  deterministic.
* **Materials**: a Diffuse BSDF whose colour comes from the object's colour
  (Object Info node), so a new colour is an object update, not a shader
  recompile. The blocks' colour is ``obj_color_rgba[:3]``, the background
  plane's ``bg_color_rgba[:3]`` (used as linear values, as Blender takes colours
  set from Python).
* **Camera** at (9, 0, 0), Euler (pi/2, 0, pi/2), 50 mm lens, 36 mm sensor.
  **Light**: one elliptic area light 20 x 15 at (10, 10, 10), Euler
  (pi/4, pi/4, pi/2), 20000 W; no world (black, emits nothing).
  **Background**: a 20 x 20 plane at x = (object's min x) - 10, Euler (0, pi/2, 0).
* **Cycles**: ``samples`` per pixel (default 128), no adaptive sampling and no
  denoiser (Blender 2.83's defaults; we assume the original kept them), default light
  paths and bounces, no light tree (Blender 4's light tree only costs time with
  a single light: renders take about 25% less CPU and differ by at most 1/255),
  fixed seed 0, persistent data (only what changed is re-synced between
  images), one tile.
* **Colour management**: "Filmic" by default, Blender 2.83's default view
  transform, with an exposure of :data:`EXPOSURE_EV` (see
  ``docs/two4two_scene.md``: with it, our images are as bright as the
  original's). ``view_transform`` selects another. Images are 8-bit,
  without dithering (2.83 dithered by default; we keep renders deterministic).
* **Read-out**: Blender cannot hand render pixels to Python in background mode
  (the ``Render Result`` image has no pixel buffer; the compositor's Viewer
  node is not evaluated when rendering), so the worker saves the one render
  twice into a RAM-backed scratch folder: the colour-managed image as an
  8-bit BMP (Blender applies the view transform) and the object-index pass as
  an uncompressed multilayer EXR, decoded with numpy
  (:mod:`two4two._blender.exr`). Together about 5 ms at 128x128.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from PIL import Image

from two4two._blender import geometry
from two4two._blender.devices import select_device
from two4two._blender.exr import read_exr_channels
from two4two._blender.spec import DEFAULT_VIEW_TRANSFORM, RenderSpec, mask_from_index_pass
from two4two.errors import Two4TwoError

__all__ = ["EXPOSURE_EV", "SUBDIVISION_LEVEL", "BlenderScene", "HeatWeightError",
           "SceneTimings", "select_device"]

_CAMERA_LOCATION = (9.0, 0.0, 0.0)
_CAMERA_ROTATION = (math.pi / 2, 0.0, math.pi / 2)
_LIGHT_LOCATION = (10.0, 10.0, 10.0)
_LIGHT_ROTATION = (math.pi / 4, math.pi / 4, math.pi / 2)
_LIGHT_ENERGY_W = 20000.0
_LIGHT_SIZE = (20.0, 15.0)
_PLANE_HALF_SIZE = 10.0
_PLANE_DISTANCE = 10.0
_UNIT_CUBE_VERTICES = [(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
_UNIT_CUBE_FACES = list(geometry.CUBE_FACES)  # outward-facing quads

SUBDIVISION_LEVEL = 3
"""Catmull-Clark level of the blocks (smooth-shaded); see ``docs/two4two_scene.md``
for the comparison with the original's level 5."""

EXPOSURE_EV = -0.3
"""View exposure (stops) applied before the view transform."""
_BMP_FORMAT = {"file_format": "BMP", "color_mode": "RGB"}
_EXR_FORMAT = {"file_format": "OPEN_EXR_MULTILAYER", "exr_codec": "NONE", "color_depth": "32"}


def _set_format(settings: bpy.types.ImageFormatSettings, values: dict[str, object]) -> None:
    for name, value in values.items():
        if getattr(settings, name) != value:
            setattr(settings, name, value)


class HeatWeightError(Two4TwoError, RuntimeError):
    """Blender's automatic (heat) weights left some base-mesh corners without a bone."""


@dataclass
class SceneTimings:
    """Seconds spent per stage of the last image (wall clock, this process)."""

    update: float = 0.0  # scene update: template, matrices, colours, plane
    render: float = 0.0  # bpy.ops.render.render(): Cycles sync + sampling
    render_cpu: float = 0.0  # CPU seconds of this process (all threads) in that call
    image: float = 0.0  # colour-managed 8-bit BMP to the scratch folder and back
    mask: float = 0.0  # object-index pass as EXR to the scratch folder and back


class BlenderScene:
    """The Two4Two scene in this process's Blender, built once, updated per image.

    Args:
        scratch_dir: folder (ideally a RAM disk) for the read-back files.
        samples: Cycles samples per pixel.
        threads: CPU threads for Cycles (0 = all).
        device: one of :data:`~two4two._blender.spec.DEVICES` (see :func:`select_device`).
        worker_id: which worker this is (picks its GPU).
        view_transform: Blender view transform (``'Filmic'``, ``'Standard'``, ``'AgX'``).
        index_pass: render the object-index pass (the mask); only benchmarks
            switch it off.
        cycles_settings: extra ``scene.cycles`` attributes (experiments).
        subdivision_level: Catmull-Clark level of the blocks.
        smooth_shading: smooth-shade the blocks (flat: faceted, as the original's
            faces were, which at level 5 is invisible).
        exposure: view exposure in stops.
    """

    def __init__(
        self,
        scratch_dir: str | os.PathLike,
        samples: int = 128,
        threads: int = 0,
        device: str = "auto",
        view_transform: str = DEFAULT_VIEW_TRANSFORM,
        index_pass: bool = True,
        cycles_settings: Mapping[str, Any] | None = None,
        subdivision_level: int = SUBDIVISION_LEVEL,
        smooth_shading: bool = True,
        exposure: float = EXPOSURE_EV,
        worker_id: int = 0,
    ) -> None:
        self.scratch_bmp = str(Path(scratch_dir) / f"render-{os.getpid()}.bmp")
        self.scratch_exr = str(Path(scratch_dir) / f"render-{os.getpid()}.exr")
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = bpy.context.scene
        self.device = select_device(device, worker_id)
        self._index_pass = index_pass
        self._subdivision_level = int(subdivision_level)
        self._smooth = bool(smooth_shading)
        self._setup_render(threads, view_transform)
        self.scene.view_settings.exposure = float(exposure)
        for name, value in (cycles_settings or {}).items():
            if not hasattr(self.scene.cycles, name):
                raise ValueError(f"scene.cycles has no setting {name!r}")
            setattr(self.scene.cycles, name, value)
        self._layer = self.scene.view_layers[0].name
        self.set_samples(samples)
        self._material = self._make_material()
        self._spherical: float | None = None
        self._weights_key: tuple[float, float] | None = None
        self._build_template()
        self._build_blocks()
        self._build_rig()
        self._build_stage()
        self.timings = SceneTimings()

    # ------------------------------------------------------------------ construction

    def _setup_render(self, threads: int, view_transform: str) -> None:
        scene = self.scene
        scene.render.engine = "CYCLES"
        cycles = scene.cycles
        cycles.device = "CPU" if self.device == "CPU" else "GPU"
        cycles.use_adaptive_sampling = False
        cycles.use_denoising = False
        # One light: the light tree (new in Blender 4.0) only costs time here; without it
        # renders take ~25% less CPU time and differ by at most 1/255 (same estimator).
        cycles.use_light_tree = False
        cycles.seed = 0
        cycles.use_animated_seed = False
        scene.render.use_persistent_data = True
        scene.render.threads_mode = "FIXED" if threads > 0 else "AUTO"
        if threads > 0:
            scene.render.threads = threads
        scene.render.resolution_percentage = 100
        scene.render.film_transparent = False
        scene.render.use_compositing = False
        scene.render.use_sequencer = False
        scene.render.dither_intensity = 0.0
        try:
            scene.view_settings.view_transform = view_transform
        except TypeError:
            raise ValueError(f"unknown view transform {view_transform!r}") from None
        scene.view_settings.look = "None"
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        scene.display_settings.display_device = "sRGB"
        scene.world = None
        scene.view_layers[0].use_pass_object_index = self._index_pass

    def _make_material(self) -> bpy.types.Material:
        material = bpy.data.materials.new("two4two_diffuse")
        material.use_nodes = True
        nodes = material.node_tree.nodes
        nodes.clear()
        info = nodes.new("ShaderNodeObjectInfo")
        diffuse = nodes.new("ShaderNodeBsdfDiffuse")
        output = nodes.new("ShaderNodeOutputMaterial")
        links = material.node_tree.links
        links.new(info.outputs["Color"], diffuse.inputs["Color"])
        links.new(diffuse.outputs["BSDF"], output.inputs["Surface"])
        return material

    def _build_template(self) -> None:
        cube = bpy.data.meshes.new("two4two_cube")
        cube.from_pydata(_UNIT_CUBE_VERTICES, [], _UNIT_CUBE_FACES)
        self._unit_cube = np.empty(len(cube.vertices) * 3, dtype=np.float32)
        cube.vertices.foreach_get("co", self._unit_cube)
        template = bpy.data.objects.new("two4two_template", cube)
        self.scene.collection.objects.link(template)
        template.hide_render = True
        for corner in range(len(cube.vertices)):  # one-hot groups: corner interpolation
            template.vertex_groups.new(name=f"corner_{corner}").add([corner], 1.0, "REPLACE")
        self._bevel = template.modifiers.new("bevel", "BEVEL")
        self._bevel.segments = 1
        subsurf = template.modifiers.new("subdivision", "SUBSURF")
        subsurf.subdivision_type = "CATMULL_CLARK"
        subsurf.levels = self._subdivision_level
        subsurf.render_levels = self._subdivision_level
        self._template = template
        self._template_vertices, self._corner_weights = self._evaluate_template(0.5)
        evaluated = self._template.evaluated_get(bpy.context.evaluated_depsgraph_get())
        self._block_template = bpy.data.meshes.new_from_object(evaluated)
        self._n_vertices = len(self._block_template.vertices)

    def _evaluate_template(self, spherical: float) -> tuple[np.ndarray, np.ndarray]:
        """Set edge and bevel for ``spherical``.

        Returns:
            evaluated vertices ``[V, 3]`` (centred at the origin) and how each
            interpolates the cube's eight corners ``[V, 8]`` (rows sum to 1).
        """
        edge = geometry.block_edge(spherical)
        self._template.data.vertices.foreach_set("co", self._unit_cube * edge)
        self._template.data.update()
        self._bevel.width = geometry.bevel_width(spherical)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
        mesh = self._template.evaluated_get(depsgraph).data
        coords = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", coords)
        weights = np.zeros((len(mesh.vertices), 8))
        for vertex in mesh.vertices:
            for group in vertex.groups:
                weights[vertex.index, group.group] = group.weight
        return coords.reshape(-1, 3).astype(np.float64), weights

    def _build_blocks(self) -> None:
        self.blocks = []
        self._block_meshes = []
        for k, name in enumerate(geometry.BLOCK_NAMES):
            mesh = self._block_template.copy()
            mesh.name = f"two4two_{name}"
            mesh.materials.clear()
            mesh.materials.append(self._material)
            if self._smooth:
                mesh.shade_smooth()
            else:
                mesh.shade_flat()
            obj = bpy.data.objects.new(name, mesh)
            obj.pass_index = k + 1
            self.scene.collection.objects.link(obj)
            self.blocks.append(obj)
            self._block_meshes.append(mesh)

    def _build_rig(self) -> None:
        """Hidden base mesh (64 corners) and armature for the heat weights."""
        faces = [tuple(8 * k + i for i in quad) for k in range(8) for quad in _UNIT_CUBE_FACES]
        corners = geometry.base_corners(0.5, 0.5).reshape(-1, 3)
        mesh = bpy.data.meshes.new("two4two_base")
        mesh.from_pydata(corners.tolist(), [], faces)
        mesh.update()
        self._rig_mesh = bpy.data.objects.new("two4two_base", mesh)
        self._rig_mesh.hide_render = True
        self.scene.collection.objects.link(self._rig_mesh)
        self._armature = bpy.data.objects.new("two4two_armature",
                                              bpy.data.armatures.new("two4two_armature"))
        self._armature.hide_render = True
        self.scene.collection.objects.link(self._armature)
        self._rig_arm_position: float | None = None

    def _set_bones(self, arm_position: float) -> None:
        armature = self._armature
        bpy.context.view_layer.objects.active = armature
        with bpy.context.temp_override(active_object=armature, object=armature,
                                       selected_objects=[armature]):
            bpy.ops.object.mode_set(mode="EDIT")
            edit_bones = armature.data.edit_bones
            for bone in list(edit_bones):
                edit_bones.remove(bone)
            made = {}
            for bone in geometry.bones(arm_position):
                edit = edit_bones.new(bone.name)
                edit.head, edit.tail = bone.head, bone.tail
                if bone.parent is not None:
                    edit.parent = made[bone.parent]
                made[bone.name] = edit
            bpy.ops.object.mode_set(mode="OBJECT")
        self._rig_arm_position = arm_position

    def heat_weights(self, spherical: float, arm_position: float) -> np.ndarray:
        """Blender's automatic bone weights of the base mesh's corners.

        Returns:
            ``[64, 8]`` weights: block ``k``'s corners are rows ``8k..8k+7``
            (cube-corner order), bones in ``geometry.BONE_NAMES`` order.

        Raises:
            HeatWeightError: some corner got no weight (Blender's bone-heat
                solver failed for this pose).
        """
        if arm_position != self._rig_arm_position:
            self._set_bones(arm_position)
        mesh_obj, armature = self._rig_mesh, self._armature
        corners = geometry.base_corners(spherical, arm_position).reshape(-1)
        mesh_obj.data.vertices.foreach_set("co", corners.astype(np.float32))
        mesh_obj.data.update()
        mesh_obj.parent = None
        mesh_obj.vertex_groups.clear()
        for modifier in list(mesh_obj.modifiers):
            mesh_obj.modifiers.remove(modifier)
        with bpy.context.temp_override(active_object=armature, object=armature,
                                       selected_objects=[mesh_obj, armature],
                                       selected_editable_objects=[mesh_obj, armature]):
            bpy.ops.object.parent_set(type="ARMATURE_AUTO")
        index = {group.index: geometry.BONE_NAMES.index(group.name)
                 for group in mesh_obj.vertex_groups}
        weights = np.zeros((len(mesh_obj.data.vertices), len(geometry.BONE_NAMES)))
        for vertex in mesh_obj.data.vertices:
            for group in vertex.groups:
                weights[vertex.index, index[group.group]] = group.weight
        if np.any(weights.sum(axis=1) <= 0):
            raise HeatWeightError(
                f"Blender's heat weights left corners without a bone (spherical={spherical}, "
                f"arm_position={arm_position}); see two4two._blender.geometry.bones")
        return weights

    def _build_stage(self) -> None:
        scene = self.scene
        h = _PLANE_HALF_SIZE
        plane_mesh = bpy.data.meshes.new("two4two_background")
        plane_mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
        plane_mesh.materials.append(self._material)
        self.plane = bpy.data.objects.new("background", plane_mesh)
        self.plane.rotation_euler = (0.0, math.pi / 2, 0.0)
        self.plane.pass_index = 0
        scene.collection.objects.link(self.plane)

        camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
        camera.data.lens = 50.0
        camera.data.sensor_width = 36.0
        camera.location = _CAMERA_LOCATION
        camera.rotation_euler = _CAMERA_ROTATION
        scene.collection.objects.link(camera)
        scene.camera = camera

        light_data = bpy.data.lights.new("light", "AREA")
        light_data.shape = "ELLIPSE"
        light_data.size, light_data.size_y = _LIGHT_SIZE
        light_data.energy = _LIGHT_ENERGY_W
        light = bpy.data.objects.new("light", light_data)
        light.location = _LIGHT_LOCATION
        light.rotation_euler = _LIGHT_ROTATION
        scene.collection.objects.link(light)

    # ------------------------------------------------------------------ per image

    def set_index_pass(self, enabled: bool) -> None:
        """Switch the object-index pass (the mask) on or off (benchmarks only)."""
        self._index_pass = bool(enabled)
        self.scene.view_layers[0].use_pass_object_index = self._index_pass

    def set_samples(self, samples: int) -> None:
        """Cycles samples per pixel (>= 1)."""
        if int(samples) < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.scene.cycles.samples = int(samples)

    def update(self, spec: RenderSpec) -> None:
        """Deform and place the blocks, set colours, plane and resolution for ``spec``."""
        start = time.perf_counter()
        if spec.spherical != self._spherical:
            vertices, interpolation = self._evaluate_template(spec.spherical)
            if len(vertices) != self._n_vertices:
                raise RuntimeError(
                    f"bevelled block has {len(vertices)} vertices, expected {self._n_vertices}"
                )
            self._template_vertices, self._corner_weights = vertices, interpolation
            self._spherical = spec.spherical
        key = (spec.spherical, spec.arm_position)
        if key != self._weights_key:
            self._weights = self.heat_weights(*key)
            self._weights_key = key
        world = self.block_vertices(spec)
        for mesh, vertices in zip(self._block_meshes, world, strict=True):
            mesh.vertices.foreach_set("co", vertices.astype(np.float32).ravel())
            mesh.update()
        obj_color = (*spec.obj_rgb, 1.0)
        for block in self.blocks:
            block.color = obj_color
        self.plane.location = (float(self._bbox_min_x) - _PLANE_DISTANCE, 0.0, 0.0)
        self.plane.color = (*spec.bg_rgb, 1.0)
        render = self.scene.render
        if (render.resolution_y, render.resolution_x) != (spec.height, spec.width):
            render.resolution_x, render.resolution_y = spec.width, spec.height
        self.timings.update = time.perf_counter() - start

    def block_vertices(self, spec: RenderSpec) -> np.ndarray:
        """World positions ``[8, V, 3]`` of the blocks' evaluated vertices for ``spec``.

        Uses the template and heat weights of the last :meth:`update` (same
        ``spherical`` and ``arm_position`` expected).
        """
        corners = geometry.base_corners(spec.spherical, spec.arm_position)
        matrix = geometry.object_matrix(corners, spec.roll, spec.pitch, spec.yaw,
                                        spec.position_x, spec.position_y)
        world_corners = corners.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
        self._bbox_min_x = float(world_corners[:, 0].min())
        bones = geometry.bone_matrices(spec.bending)
        centres = geometry.block_centers(spec.arm_position)
        out = np.empty((8, *self._template_vertices.shape))
        for k in range(8):
            rest = self._template_vertices + centres[k]
            weights = self._corner_weights @ self._weights[8 * k: 8 * k + 8]
            bent = geometry.skin(rest, weights, bones)
            out[k] = bent @ matrix[:3, :3].T + matrix[:3, 3]
        return out

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Render the current scene.

        Returns:
            ``(image, mask)``: uint8 ``[H, W, 3]`` sRGB image and uint8 ``[H, W]``
            labels (0 background, 1..8 blocks; all zeros without the index pass).
            Not flipped (``fliplr`` is applied by the caller).
        """
        t0, cpu0 = time.perf_counter(), time.process_time()
        bpy.ops.render.render()
        t1 = time.perf_counter()
        self.timings.render_cpu = time.process_time() - cpu0
        result = bpy.data.images["Render Result"]
        settings = self.scene.render.image_settings
        _set_format(settings, _BMP_FORMAT)
        result.save_render(self.scratch_bmp)
        with Image.open(self.scratch_bmp) as bmp:
            image = np.asarray(bmp.convert("RGB"))
        t2 = time.perf_counter()
        if self._index_pass:
            _set_format(settings, _EXR_FORMAT)
            result.save_render(self.scratch_exr)
            channels = read_exr_channels(Path(self.scratch_exr).read_bytes())
            mask = mask_from_index_pass(channels[f"{self._layer}.IndexOB.X"])
        else:
            mask = np.zeros(image.shape[:2], dtype=np.uint8)
        t3 = time.perf_counter()
        self.timings.render, self.timings.image, self.timings.mask = t1 - t0, t2 - t1, t3 - t2
        return image, mask

    def save_blend(self, path: str | os.PathLike) -> None:
        """Save the current scene as a ``.blend`` file (a copy; this session keeps going)."""
        bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True, check_existing=False)
