"""Pose of the eight blocks of a Two4Two animal, in plain numpy (no ``bpy``).

Every block is one rigid copy of the same rounded-cube mesh (the *template*,
vertices ``[V, 3]`` centred at the origin, in Blender units). The scene of
``TWO4TWO.md`` is reproduced as one ``[4, 4]`` object-to-world matrix per block:

1. **Build**: block ``k`` is translated to its centre (:data:`BLOCK_CENTERS`;
   the right arms sit at ``y = 1.5 + arm_position``).
2. **Centre** (the original's quirk): translate everything by ``-c / 2``, where
   ``c`` is the centre of the world-space axis-aligned bounding box of all
   vertices (so the object moves only half-way to the origin).
3. **Bend**: two bone chains start at the spine's centre ``(0, 0.5, 0)`` of the
   object (the joints move with the object, i.e. they are shifted by the
   centring translations applied so far). Our reading of the joints: they sit
   half-way between neighbouring spine blocks, at ``y = 0.5`` (root of both
   chains), ``y = 1.5`` (right, between spine_right_center and spine_right) and
   ``y = -0.5`` (left, between spine_left_center and spine_left).
   Right chain: spine_right_center, spine_right and the right arms turn by
   ``+bending / 2`` about the X axis through the root joint; spine_right and the
   right arms then turn by a further ``+bending`` about the (already moved)
   second right joint. Left chain: the same with ``-bending / 2`` and
   ``-bending`` (spine_left_center; spine_left and the left arms). Rotations
   follow the right-hand rule about +X, so for ``bending > 0`` both ends of the
   spine go up (+Z): a banana in the image plane. Arms move rigidly with their
   spine block (each block belongs to exactly one bone). Then centre again.
4. **Rotate** about the centre ``p`` of the bounding box (taken once, before the
   rotations): roll about Y, then pitch about Z, then yaw about X (right-hand
   rule, radians), i.e. ``R = Rx(yaw) @ Rz(pitch) @ Ry(roll)``; then centre again.
5. **Translate** by ``(0, position_x, position_y)``.

All maths is float64; the functions are pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLOCK_NAMES",
    "BlockPose",
    "bevel_width",
    "block_centers",
    "block_edge",
    "pose_blocks",
    "rotation_x",
    "rotation_y",
    "rotation_z",
]

BLOCK_NAMES: tuple[str, ...] = (
    "arm_left_top",
    "arm_left_bottom",
    "spine_left",
    "spine_left_center",
    "spine_right_center",
    "spine_right",
    "arm_right_top",
    "arm_right_bottom",
)
"""The blocks in mask-label order: block ``k`` (0-based) has label ``k + 1``."""

_LEFT_OUTER = (0, 1, 2)  # arms left + spine_left: both left joints
_LEFT_INNER = (3,)  # spine_left_center: first left joint only
_RIGHT_INNER = (4,)  # spine_right_center: first right joint only
_RIGHT_OUTER = (5, 6, 7)  # spine_right + right arms: both right joints

_ROOT_JOINT = np.array([0.0, 0.5, 0.0])
_RIGHT_JOINT = np.array([0.0, 1.5, 0.0])
_LEFT_JOINT = np.array([0.0, -0.5, 0.0])


def block_edge(spherical: float) -> float:
    """Edge length of each cube in Blender units: ``0.8 + 0.1 * spherical``."""
    return 0.8 + 0.1 * spherical


def bevel_width(spherical: float) -> float:
    """Bevel width (one segment): ``0.05 + edge * 0.25 * spherical``."""
    return 0.05 + block_edge(spherical) * 0.25 * spherical


def block_centers(arm_position: float) -> np.ndarray:
    """Block centres before any transform, ``[8, 3]`` (x, y, z), in BLOCK_NAMES order."""
    right_arm_y = 1.5 + arm_position
    return np.array(
        [
            [0.0, -1.5, 1.0],
            [0.0, -1.5, -1.0],
            [0.0, -1.0, 0.0],
            [0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 2.0, 0.0],
            [0.0, right_arm_y, 1.0],
            [0.0, right_arm_y, -1.0],
        ]
    )


def rotation_x(angle: float) -> np.ndarray:
    """``[3, 3]`` right-hand rotation by ``angle`` radians about +X."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle: float) -> np.ndarray:
    """``[3, 3]`` right-hand rotation by ``angle`` radians about +Y."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_z(angle: float) -> np.ndarray:
    """``[3, 3]`` right-hand rotation by ``angle`` radians about +Z."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rotation_about(rotation: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """``[4, 4]`` matrix rotating by ``rotation`` ``[3, 3]`` about the point ``pivot``."""
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = pivot - rotation @ pivot
    return m


def _translation(offset: np.ndarray) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = offset
    return m


def _apply(matrix: np.ndarray, point: np.ndarray) -> np.ndarray:
    return matrix[:3, :3] @ point + matrix[:3, 3]


@dataclass(frozen=True)
class BlockPose:
    """Result of :func:`pose_blocks`.

    Attributes:
        matrices: ``[8, 4, 4]`` object-to-world matrices, BLOCK_NAMES order.
        bbox_min: ``[3]`` world-space minimum over all vertices (x, y, z).
        bbox_max: ``[3]`` world-space maximum over all vertices.
    """

    matrices: np.ndarray
    bbox_min: np.ndarray
    bbox_max: np.ndarray


def _world_vertices(matrices: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``[8, V, 3]`` vertices of all blocks."""
    return np.einsum("kij,vj->kvi", matrices[:, :3, :3], template) + matrices[:, None, :3, 3]


def _bbox(matrices: np.ndarray, template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    verts = _world_vertices(matrices, template).reshape(-1, 3)
    return verts.min(axis=0), verts.max(axis=0)


def _bbox_center(matrices: np.ndarray, template: np.ndarray) -> np.ndarray:
    low, high = _bbox(matrices, template)
    return (low + high) / 2.0


def pose_blocks(
    template: np.ndarray,
    arm_position: float,
    bending: float,
    roll: float,
    pitch: float,
    yaw: float,
    position_x: float,
    position_y: float,
) -> BlockPose:
    """Place the eight blocks as described in the module docstring.

    Args:
        template: ``[V, 3]`` vertices of one block's mesh, centred at the origin.
        arm_position: in [0, 1]; right arms at ``y = 1.5 + arm_position``.
        bending: spine bending in radians.
        roll, pitch, yaw: rotations in radians about Y, Z and X (in this order).
        position_x, position_y: final translation along world Y and Z.

    Returns:
        the per-block matrices and the world bounding box of all vertices.
    """
    template = np.asarray(template, dtype=np.float64)
    matrices = np.stack([_translation(c) for c in block_centers(arm_position)])
    object_offset = np.zeros(3)  # translation applied to the whole object so far

    def centre() -> None:
        nonlocal matrices, object_offset
        shift = -_bbox_center(matrices, template) / 2.0
        matrices = _translation(shift)[None] @ matrices
        object_offset = object_offset + shift

    centre()

    root = _ROOT_JOINT + object_offset
    for inner, outer, joint, sign in (
        (_RIGHT_INNER, _RIGHT_OUTER, _RIGHT_JOINT, 1.0),
        (_LEFT_INNER, _LEFT_OUTER, _LEFT_JOINT, -1.0),
    ):
        first = _rotation_about(rotation_x(sign * bending / 2.0), root)
        moved_joint = _apply(first, joint + object_offset)
        second = _rotation_about(rotation_x(sign * bending), moved_joint) @ first
        for k in inner:
            matrices[k] = first @ matrices[k]
        for k in outer:
            matrices[k] = second @ matrices[k]
    centre()

    pivot = _bbox_center(matrices, template)
    rotation = rotation_x(yaw) @ rotation_z(pitch) @ rotation_y(roll)
    matrices = _rotation_about(rotation, pivot)[None] @ matrices
    centre()

    matrices = _translation(np.array([0.0, position_x, position_y]))[None] @ matrices
    low, high = _bbox(matrices, template)
    return BlockPose(matrices=matrices, bbox_min=low, bbox_max=high)
