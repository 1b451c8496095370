"""Compare our renders with reference numbers: block centroids and brightness.

Renders a fixed list of scenes (``SCENES``) in one Blender and prints a table
per scene: each block's mask centroid (row, column in pixels) next to a
reference centroid, and the mean brightness (0..255, mean over RGB) of the
background and of the object next to reference numbers where there are some.

References live in ``scripts/compare_render_reference.json``:

* ``centroids``: the block centres of ``docs/two4two_scene.md`` moved as the
  facts say (centring by half the bounding-box centre of the base-mesh
  corners, rigid bending of each block with its bone, fresh-pivot
  rotations, position), projected through the camera model (pinhole at
  (9, 0, 0) looking along -X, 50 mm lens, 36 mm sensor). This is computed
  here, independently of ``two4two._blender.geometry``; ``--write-reference``
  rewrites them. For bent scenes the wedge-shaped centre blocks are
  approximated by rigid blocks, so expect up to about a pixel of difference there.
* ``brightness``: the issue's numbers for the original's images (203 / 232)
  against ours before the fix (211 / 237) give the shift to reproduce; see the
  file's ``source`` entries.

    python scripts/compare_render.py                  # 128x128, 128 samples
    python scripts/compare_render.py --samples 32
    python scripts/compare_render.py --write-reference
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when imported by a test
from bench_render import quiet_stdout

REFERENCE_PATH = Path(__file__).with_name("compare_render_reference.json")

# name -> SceneParameters fields (colours as rgba; resolution set from --resolution)
SCENES: dict[str, dict[str, object]] = {
    "brightness_reference": {"bg_color_rgba": [0.55, 0.55, 0.55, 1.0],
                             "obj_color_rgba": [1.0, 1.0, 1.0, 1.0]},
    "default": {},
    "peaky_cube": {"arm_position": 0.0, "spherical": 0.0},
    "stretchy_blob": {"arm_position": 1.0, "spherical": 1.0},
    "bent_up": {"bending": 0.35, "arm_position": 0.7},
    "bent_down_yaw": {"bending": -0.3, "obj_rotation_yaw": 0.6},
    "rolled_pitched": {"obj_rotation_roll": 0.4, "obj_rotation_pitch": 0.5, "spherical": 0.8},
    "moved_coloured": {"position_x": -0.6, "position_y": -0.5, "obj_rotation_yaw": -1.2,
                       "obj_color_rgba": [0.23, 0.30, 0.75, 1.0],
                       "bg_color_rgba": [0.70, 0.02, 0.15, 1.0]},
}

_FOCAL_OVER_SENSOR = 50.0 / 36.0
_CAMERA_X = 9.0


# --------------------------------------------------------------------------- reference model


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def reference_centres(fields: dict[str, object]) -> np.ndarray:
    """``[8, 3]`` intended world block centres (rigid blocks), from the scene facts."""
    spherical = float(fields.get("spherical", 0.5))
    arm = float(fields.get("arm_position", 0.0))
    bending = float(fields.get("bending", 0.0))
    half = (0.8 + 0.1 * spherical) / 2
    centres = np.array([[0, -1.5, 1], [0, -1.5, -1], [0, -1, 0], [0, 0, 0], [0, 1, 0],
                        [0, 2, 0], [0, 1.5 + arm, 1], [0, 1.5 + arm, -1]], dtype=float)
    signs = np.array([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    corners = centres[:, None] + half * signs[None]  # [8, 8, 3], stay undeformed for boxes

    def box_centre(points: np.ndarray) -> np.ndarray:
        flat = points.reshape(-1, 3)
        return (flat.min(0) + flat.max(0)) / 2

    # bending, rigid per block: (rotation angle about X, pivot chain)
    def bend(point: np.ndarray, block: int) -> np.ndarray:
        right = block in (4, 5, 6, 7)
        sign = 1.0 if right else -1.0
        first = _rot(0, sign * bending / 2)
        p = first @ (point - [0, 0.5, 0]) + [0, 0.5, 0]
        if block in (4, 3):  # inner blocks: first bone only (their centre is the 2nd head)
            return p
        joint = np.array([0, 1.0 if right else 0.0, 0])
        moved_joint = first @ (joint - [0, 0.5, 0]) + [0, 0.5, 0]
        return _rot(0, sign * bending) @ (p - moved_joint) + moved_joint

    centres = np.array([bend(c, k) for k, c in enumerate(centres)])
    for _ in range(2):  # after building and after bending
        shift = -box_centre(corners) / 2
        corners, centres = corners + shift, centres + shift
    for axis, key in ((1, "obj_rotation_roll"), (2, "obj_rotation_pitch"),
                      (0, "obj_rotation_yaw")):
        rotation = _rot(axis, float(fields.get(key, 0.0)))
        pivot = box_centre(corners)
        corners = (corners - pivot) @ rotation.T + pivot
        centres = (centres - pivot) @ rotation.T + pivot
    shift = -box_centre(corners) / 2
    offset = np.array([0.0, float(fields.get("position_x", 0.0)),
                       float(fields.get("position_y", 0.0))])
    return centres + shift + offset


def project(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[N, 2]`` (row, column) pixel positions (pixel centres at +0.5) of world points."""
    scale = _FOCAL_OVER_SENSOR * max(height, width)
    depth = _CAMERA_X - points[:, 0]
    col = width / 2 + scale * points[:, 1] / depth
    row = height / 2 - scale * points[:, 2] / depth
    return np.stack([row, col], axis=1) - 0.5


# --------------------------------------------------------------------------- rendering


def make_params(fields: dict[str, object], resolution: int):
    from two4two.scene_parameters import SceneParameters

    values = dict(fields)
    for key in ("bg_color_rgba", "obj_color_rgba"):
        if key in values:
            values[key] = tuple(values[key])  # type: ignore[arg-type]
    return SceneParameters(resolution=(resolution, resolution), **values)



def render_all(resolution: int, samples: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from two4two._blender.scene import BlenderScene
    from two4two._blender.spec import RenderSpec

    out = {}
    with tempfile.TemporaryDirectory() as scratch, quiet_stdout():
        blender = BlenderScene(scratch, samples=samples, threads=0)
        for name, fields in SCENES.items():
            blender.update(RenderSpec.from_params(make_params(fields, resolution)))
            out[name] = blender.render()
    return out


def mask_centroids(mask: np.ndarray) -> np.ndarray:
    """``[8, 2]`` (row, column) mean pixel position per label 1..8 (NaN if absent)."""
    rows, cols = np.indices(mask.shape)
    out = np.full((8, 2), np.nan)
    for label in range(1, 9):
        hit = mask == label
        if hit.any():
            out[label - 1] = rows[hit].mean(), cols[hit].mean()
    return out


def brightness(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean of RGB (0..255) over background and object pixels."""
    grey = image.astype(np.float64).mean(axis=2)
    return float(grey[mask == 0].mean()), float(grey[mask > 0].mean())


def write_reference(resolution: int) -> None:
    reference = json.loads(REFERENCE_PATH.read_text()) if REFERENCE_PATH.exists() else {}
    reference["resolution"] = resolution
    reference["centroids"] = {
        name: np.round(project(reference_centres(fields), resolution, resolution), 3).tolist()
        for name, fields in SCENES.items()}
    REFERENCE_PATH.write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {REFERENCE_PATH}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--write-reference", action="store_true",
                        help="recompute the projected centroids into the reference file")
    args = parser.parse_args(argv)
    reference = json.loads(REFERENCE_PATH.read_text())
    resolution = int(reference["resolution"])
    if args.write_reference:
        write_reference(resolution)
        return 0
    from two4two._blender.geometry import BLOCK_NAMES

    renders = render_all(resolution, args.samples)
    targets = reference.get("brightness", {}).get("scenes", {})
    worst = 0.0
    for name, (image, mask) in renders.items():
        ref = np.asarray(reference["centroids"][name])
        got = mask_centroids(mask)
        print(f"\n{name}: {SCENES[name] or 'SceneParameters() defaults'}")
        print(f"{'block':<20} {'mask row':>9} {'col':>7} {'ref row':>8} {'col':>7} "
              f"{'d row':>6} {'d col':>6}")
        for k, block in enumerate(BLOCK_NAMES):
            d = got[k] - ref[k]
            worst = max(worst, float(np.nanmax(np.abs(d))))
            print(f"{block:<20} {got[k, 0]:>9.2f} {got[k, 1]:>7.2f} {ref[k, 0]:>8.2f} "
                  f"{ref[k, 1]:>7.2f} {d[0]:>+6.2f} {d[1]:>+6.2f}")
        bg, obj = brightness(image, mask)
        line = f"brightness: background {bg:.1f}, object {obj:.1f}"
        if name in targets:
            t = targets[name]
            line += (f"   reference {t['background']:.1f} / {t['object']:.1f}  "
                     f"(diff {bg - t['background']:+.1f} / {obj - t['object']:+.1f}; "
                     f"ours before the fix {t['before_background']:.1f} / "
                     f"{t['before_object']:.1f})")
        print(line)
    print(f"\nlargest centroid offset: {worst:.2f} px ({resolution}x{resolution}, "
          f"{args.samples} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
