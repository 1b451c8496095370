"""Geometry of a Two4Two animal in plain numpy (no ``bpy``); facts in ``docs/two4two_scene.md``.

The scene is built in a *build frame* (block centres of :data:`BLOCK_CENTERS`,
Blender units) and placed by one object matrix; bending deforms the blocks.

* **Base mesh**: eight cubes of edge ``0.8 + 0.1 * spherical``, 64 corners
  (:func:`base_corners`). All bounding boxes (centring, rotation pivots, the
  background plane) are taken over these corners, undeformed: the armature,
  bevel and subdivision are live modifiers in the original, so the mesh data
  it measured never held them.
* **Object matrix** (:func:`object_matrix`): centre (translate by minus *half*
  the bounding-box centre, the original's quirk) after building, again after
  bending, then roll about Y, pitch about Z and yaw about X, each about the
  centre of a fresh bounding box of the corners as they are before that
  rotation, centre again, then translate by ``(0, position_x, position_y)``.
* **Bending** (:func:`bone_matrices`, :func:`skin`): an armature in the build
  frame (:func:`bones`): two spine chains from ``(0, 0.5, 0)``, right
  ``0.5 -> 1.0 -> 2.0``, left ``0.5 -> 0.0 -> -1.0``, and four arm bones from
  the spine ends into the arms, children of the outer spine bones. Pose: the
  right chain turns by ``+bending / 2`` at ``y = 0.5`` and a further
  ``+bending`` at ``y = 1.0``, the left chain by ``-bending / 2`` and
  ``-bending`` at ``y = 0.0`` (right-hand rule about +X: both ends rise for
  ``bending > 0``); arm bones keep their rest pose. Vertices are deformed by
  linear blend skinning with per-vertex bone weights (automatic heat weights,
  computed by Blender in :mod:`two4two._blender.scene`), as Blender's
  Armature modifier does, so the centre blocks become wedges.

All maths is float64; the functions are pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BLOCK_NAMES",
    "BONE_NAMES",
    "CUBE_FACES",
    "Bone",
    "base_corners",
    "bbox_center",
    "bevel_width",
    "block_centers",
    "block_edge",
    "bone_matrices",
    "bones",
    "object_matrix",
    "rotation_x",
    "rotation_y",
    "rotation_z",
    "skin",
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


# --------------------------------------------------------------------------- mesh and armature

_CUBE_SIGNS = np.array([(x, y, z) for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
"""``[8, 3]`` corners of the unit cube, in the order the scene's cube mesh uses."""

CUBE_FACES: tuple[tuple[int, int, int, int], ...] = (
    (0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)
)
"""Outward-facing quads of one cube (indices into :data:`_CUBE_SIGNS`)."""

BONE_NAMES: tuple[str, ...] = (
    "spine_right_1", "spine_right_2", "arm_right_top", "arm_right_bottom",
    "spine_left_1", "spine_left_2", "arm_left_top", "arm_left_bottom",
)
"""Bones in the order of :func:`bones` and :func:`bone_matrices`."""


@dataclass(frozen=True)
class Bone:
    """One bone of the armature, in the build frame (Blender units)."""

    name: str
    head: tuple[float, float, float]
    tail: tuple[float, float, float]
    parent: str | None


def base_corners(spherical: float, arm_position: float) -> np.ndarray:
    """``[8, 8, 3]`` cube corners per block (BLOCK_NAMES order) in the build frame."""
    edge = block_edge(spherical)
    return block_centers(arm_position)[:, None, :] + edge * _CUBE_SIGNS[None]


def bones(arm_position: float) -> tuple[Bone, ...]:
    """The armature's bones for ``arm_position`` (BONE_NAMES order).

    Spine chains start at ``(0, 0.5, 0)``; the second bones' heads are at
    ``y = 1.0`` (right) and ``y = 0.0`` (left). Arm bones run from the spine
    ends into the arm blocks (they give the arms' vertices a visible bone for
    the heat weights) and are children of the outer spine bones.
    """
    right_arm_y = 1.5 + arm_position
    return (
        Bone("spine_right_1", (0.0, 0.5, 0.0), (0.0, 1.0, 0.0), None),
        Bone("spine_right_2", (0.0, 1.0, 0.0), (0.0, 2.0, 0.0), "spine_right_1"),
        Bone("arm_right_top", (0.0, 2.0, 0.0), (0.0, right_arm_y, 1.0), "spine_right_2"),
        Bone("arm_right_bottom", (0.0, 2.0, 0.0), (0.0, right_arm_y, -1.0), "spine_right_2"),
        Bone("spine_left_1", (0.0, 0.5, 0.0), (0.0, 0.0, 0.0), None),
        Bone("spine_left_2", (0.0, 0.0, 0.0), (0.0, -1.0, 0.0), "spine_left_1"),
        Bone("arm_left_top", (0.0, -1.0, 0.0), (0.0, -1.5, 1.0), "spine_left_2"),
        Bone("arm_left_bottom", (0.0, -1.0, 0.0), (0.0, -1.5, -1.0), "spine_left_2"),
    )


def bone_matrices(bending: float) -> np.ndarray:
    """``[8, 4, 4]`` pose-from-rest matrices of the bones (BONE_NAMES order), build frame.

    A point attached rigidly to bone ``j`` moves by ``matrices[j]``.
    """
    right_1 = _rotation_about(rotation_x(bending / 2.0), np.array([0.0, 0.5, 0.0]))
    right_2 = right_1 @ _rotation_about(rotation_x(bending), np.array([0.0, 1.0, 0.0]))
    left_1 = _rotation_about(rotation_x(-bending / 2.0), np.array([0.0, 0.5, 0.0]))
    left_2 = left_1 @ _rotation_about(rotation_x(-bending), np.array([0.0, 0.0, 0.0]))
    return np.stack([right_1, right_2, right_2, right_2, left_1, left_2, left_2, left_2])


def skin(vertices: np.ndarray, weights: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Linear blend skinning, as Blender's Armature modifier (no preserve-volume).

    Args:
        vertices: ``[N, 3]`` rest positions (build frame).
        weights: ``[N, B]`` bone weights (>= 0); rows are normalised by their
            sum, rows summing to 0 keep their rest position.
        matrices: ``[B, 4, 4]`` pose-from-rest matrices.

    Returns:
        ``[N, 3]`` deformed positions.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum(axis=1, keepdims=True)
    moved = np.einsum("bij,nj->nbi", matrices[:, :3, :3], vertices) + matrices[None, :, :3, 3]
    blended = np.einsum("nb,nbi->ni", weights, moved)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, blended / safe, vertices)


def bbox_center(points: np.ndarray) -> np.ndarray:
    """``[3]`` centre of the axis-aligned bounding box of ``points`` ``[..., 3]``."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return (flat.min(axis=0) + flat.max(axis=0)) / 2.0


def _transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def object_matrix(
    corners: np.ndarray,
    roll: float,
    pitch: float,
    yaw: float,
    position_x: float,
    position_y: float,
) -> np.ndarray:
    """``[4, 4]`` build-frame-to-world matrix of the animal.

    Args:
        corners: ``[..., 3]`` base-mesh corners in the build frame
            (:func:`base_corners`); bounding boxes are taken over them.
        roll, pitch, yaw: radians about Y, Z and X, applied in this order,
            each about the centre of a fresh bounding box.
        position_x, position_y: final shift along world Y and Z.
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 3)
    matrix = np.eye(4)

    def centre() -> None:
        nonlocal matrix
        matrix = _translation(-bbox_center(_transform(matrix, corners)) / 2.0) @ matrix

    centre()  # after building
    centre()  # after bending: the base mesh (what the box is taken of) is not deformed
    for rotation in (rotation_y(roll), rotation_z(pitch), rotation_x(yaw)):
        pivot = bbox_center(_transform(matrix, corners))
        matrix = _rotation_about(rotation, pivot) @ matrix
    centre()
    return _translation(np.array([0.0, position_x, position_y])) @ matrix
