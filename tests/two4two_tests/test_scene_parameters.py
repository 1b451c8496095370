"""SceneParameters: defaults, ranges, statuses, cloning, JSON round trips."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid

import matplotlib
import pytest

from two4two.scene_parameters import (
    SAMPLED_ATTRIBUTES,
    SceneParameters,
    load_jsonl,
    write_jsonl,
)


@dataclasses.dataclass
class TaggedSceneParameters(SceneParameters):
    """A subclass with an extra field, for the round-trip test."""

    tag: str = "none"


def test_defaults_match_the_spec() -> None:
    p = SceneParameters()
    expected = {
        "obj_name": "peaky", "labeling_error": False, "spherical": 0.5, "bending": 0.0,
        "obj_rotation_roll": 0.0, "obj_rotation_pitch": 0.0, "obj_rotation_yaw": 0.0,
        "fliplr": False, "position_x": 0.0, "position_y": 0.0, "arm_position": 0.0,
        "obj_color": 0.5, "bg_color": 0.45, "resolution": (128, 128), "original_id": None,
    }
    for name, value in expected.items():
        assert getattr(p, name) == value, name
    assert uuid.UUID(p.id).version == 4
    assert SceneParameters().id != p.id
    # upstream's defaults: seismic for the object, binary for the background
    assert p.obj_color_rgba == pytest.approx(tuple(matplotlib.colormaps["seismic"](0.5)))
    assert p.bg_color_rgba == pytest.approx(tuple(matplotlib.colormaps["binary"](0.45)))
    assert all(p.get_status(a) == "default" for a in SAMPLED_ATTRIBUTES)
    p.check_values()


def test_default_animals() -> None:
    peaky, stretchy = SceneParameters.default_peaky(), SceneParameters.default_stretchy()
    assert (peaky.obj_name, peaky.arm_position, peaky.obj_name_as_int) == ("peaky", 0.0, 0)
    assert (stretchy.obj_name, stretchy.arm_position, stretchy.obj_name_as_int) == (
        "stretchy", 1.0, 1)
    peaky.check_values()
    stretchy.check_values()


RANGES = {
    "spherical": (0.0, 1.0), "arm_position": (0.0, 1.0), "obj_color": (0.0, 1.0),
    "bg_color": (0.0, 1.0), "bending": (-math.pi / 8, math.pi / 8),
    "obj_rotation_roll": (-math.pi / 3, math.pi / 3),
    "obj_rotation_pitch": (-math.pi / 3, math.pi / 3),
    "obj_rotation_yaw": (-math.pi, math.pi), "position_x": (-3.0, 3.0),
    "position_y": (-3.0, 3.0),
}


@pytest.mark.parametrize("attr", sorted(RANGES))
def test_check_values_accepts_the_ends_and_rejects_outside(attr: str) -> None:
    low, high = RANGES[attr]
    for ok in (low, high, (low + high) / 2):
        SceneParameters(**{attr: ok}).check_values()
    for bad in (low - 1e-6, high + 1e-6, float("nan")):
        with pytest.raises(ValueError, match=attr) as info:
            SceneParameters(**{attr: bad}).check_values()
        assert f"{low:.6g}" in str(info.value) and f"{high:.6g}" in str(info.value)


def test_check_values_rejects_bad_class_and_flags() -> None:
    with pytest.raises(ValueError, match="obj_name"):
        SceneParameters(obj_name="cat").check_values()
    with pytest.raises(ValueError, match="fliplr"):
        SceneParameters(fliplr=1).check_values()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resolution"):
        SceneParameters(resolution=(0, 4)).check_values()


def test_statuses() -> None:
    p = SceneParameters()
    p.mark_sampled("spherical")
    assert p.get_status("spherical") == "sampled"
    p.mark_sampled("spherical")
    assert p.get_status("spherical") == "resampled"
    p.mark_sampled("spherical")
    assert p.get_status("spherical") == "resampled"
    p.mark_custom("bending")
    assert p.get_status("bending") == "custom"
    p.mark_sampled("bending")
    assert p.get_status("bending") == "sampled"
    assert p.get_status("obj_color") == "default"
    with pytest.raises(KeyError, match="nonsense"):
        p.get_status("nonsense")
    with pytest.raises(ValueError, match="status"):
        SceneParameters(_attributes_status={"spherical": "guessed"})


def test_clone() -> None:
    original = SceneParameters(spherical=0.2)
    original.mark_sampled("spherical")
    clone = original.clone()
    assert clone.id != original.id and clone.original_id == original.id
    assert clone.is_clone_of(original) and clone.is_cloned()
    assert not original.is_clone_of(clone) and not original.is_cloned()
    assert dataclasses.replace(clone, id=original.id, original_id=None) == original
    clone.mark_sampled("spherical")  # deep copy: the original's statuses are untouched
    assert original.get_status("spherical") == "sampled"
    with pytest.raises(ValueError, match="already a clone"):
        clone.clone()
    exact = clone.clone(create_new_id=False)
    assert exact == clone and exact is not clone


def test_label_and_files() -> None:
    p = SceneParameters(obj_name="stretchy")
    assert p.state_dict()["label"] == "stretchy"
    p.labeling_error = True
    assert p.state_dict()["label"] == "peaky"
    assert p.filename == f"{p.id}.png" and p.mask_filename == f"{p.id}_mask.png"


def test_json_round_trip() -> None:
    p = SceneParameters(obj_name="stretchy", spherical=0.3, bending=-0.1, fliplr=True,
                        obj_color_rgba=(0.1, 0.2, 0.3, 1.0), resolution=(32, 48))
    p.mark_sampled("spherical")
    p.mark_sampled("spherical")
    p.mark_custom("bending")
    state = json.loads(json.dumps(p.state_dict()))
    assert state["__module__"] == "two4two.scene_parameters"
    assert state["__name__"] == "SceneParameters"
    loaded = SceneParameters.load(state)
    assert loaded == p
    assert type(loaded) is SceneParameters
    assert loaded.resolution == (32, 48) and isinstance(loaded.obj_color_rgba, tuple)
    assert loaded.get_status("spherical") == "resampled"


def test_json_round_trip_of_a_subclass() -> None:
    p = TaggedSceneParameters(tag="hello", arm_position=0.7).clone()
    state = json.loads(json.dumps(p.state_dict()))
    assert state["__name__"] == "TaggedSceneParameters"
    loaded = SceneParameters.load(state)
    assert type(loaded) is TaggedSceneParameters
    assert loaded == p and loaded.tag == "hello" and loaded.original_id == p.original_id


def test_load_errors() -> None:
    state = SceneParameters().state_dict()
    with pytest.raises(ValueError, match=r"no_such_module\.Foo"):
        SceneParameters.load({**state, "__module__": "no_such_module", "__name__": "Foo"})
    with pytest.raises(ValueError, match="not a SceneParameters"):
        SceneParameters.load({**state, "__module__": "json", "__name__": "JSONDecoder"})
    with pytest.raises(ValueError, match="wings"):
        SceneParameters.load({**state, "wings": 2})


def test_jsonl_round_trip_and_truncated_last_line(tmp_path) -> None:
    scenes = [SceneParameters(spherical=i / 10) for i in range(5)]
    path = write_jsonl(tmp_path / "parameters.jsonl", scenes)
    assert load_jsonl(path) == scenes
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # cut into the last line
    assert load_jsonl(path) == scenes[:4]
    path.write_bytes(data[:-1])  # only the final newline is missing: the line is complete
    assert load_jsonl(path) == scenes
    lines = data.decode().splitlines()
    lines[1] = lines[1][:30]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        load_jsonl(path)
    with pytest.raises(FileNotFoundError, match=r"nothing\.jsonl"):
        load_jsonl(tmp_path / "nothing.jsonl")


def test_importing_the_generator_needs_neither_bpy_nor_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, two4two, two4two.dataset, two4two.cli_tool, two4two.blender, "
            "dubfiv.data_generation\n"
            "two4two.render\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('bpy', 'torch'))\n"
            "assert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
