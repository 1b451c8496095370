"""The tutorial (rendered with two4two), neutral image names, the page layout and the estimate."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dubfiv.study.build.duration import Timing, estimate, page_seconds, settle_consent
from dubfiv.study.build.material import RenderSettings
from dubfiv.study.build.names import ImageNamer, NamingError
from dubfiv.study.build.preview import render_preview
from dubfiv.study.build.tutorial import (
    CHECK_CHANGES,
    VARIATIONS,
    TutorialError,
    TutorialSettings,
    base_scene,
    build_tutorial,
    check_base_scene,
    infer_color_map,
    tutorial_scenes,
)
from dubfiv.study.content import (
    PredictionTask,
    Study,
    StudyImage,
    default_attributes,
)
from dubfiv.study.layout import attention_slots, participant_pages, plain_words
from dubfiv.study.page_html import MIN_IMAGE_PX
from dubfiv.study.qsf.writer import build_qsf

BASE_URL = "https://example.org/studies/fake"
CHANGED = ("spherical", "bending", "obj_rotation_roll", "obj_rotation_pitch",
           "obj_rotation_yaw", "position_x", "position_y", "arm_position", "obj_color",
           "bg_color")

SECRET = bytes(range(32))  # a fixed naming secret (an export draws a random one)


def _fake_render(scenes, settings, progress=None):
    """Each scene as a flat colour made from its attributes (distinct per scene)."""
    out = []
    for i, s in enumerate(scenes):
        value = [s.arm_position + s.obj_color, s.bg_color + s.spherical,
                 0.5 + (s.bending + s.obj_rotation_yaw + s.obj_rotation_pitch
                        + s.position_x + s.position_y) / 8]
        rgb = np.clip(np.round(np.asarray(value) * 120), 0, 255).astype(np.uint8)
        out.append(np.broadcast_to(rgb, (settings.resolution, settings.resolution, 3)).copy())
        if progress:
            progress(i + 1, len(scenes))
    return out


# ---------------------------------------------------------------------- scenes


def test_each_row_changes_only_its_attribute() -> None:
    settings = TutorialSettings(resolution=32)
    base = base_scene(settings).state_dict()
    attrs = {a.key: a.parameters for a in default_attributes()}
    assert set(VARIATIONS) == set(attrs) == set(CHECK_CHANGES)
    scenes = dict(tutorial_scenes(settings, list(VARIATIONS), ["bending", "obj_color"]))
    assert len(scenes) == 7 * 5 + 2 * 2
    for key, params in attrs.items():
        row = [scenes[f"tutorial/{key}_{j + 1}"].state_dict() for j in range(5)]
        for scene in row:
            changed = {a for a in CHANGED if scene[a] != base[a]}
            assert changed <= set(params), (key, changed)
        # the row shows the attribute varying: five different settings
        assert len({tuple(s[p] for p in params) for s in row}) == 5
        rgba = {tuple(s["obj_color_rgba"]) for s in row}
        assert len(rgba) == (5 if key == "obj_color" else 1)
    for i, key in enumerate(["bending", "obj_color"]):
        a = scenes[f"tutorial/check{i + 1}_a"].state_dict()
        b = scenes[f"tutorial/check{i + 1}_b"].state_dict()
        assert a == {**check_base_scene(settings).state_dict(), "id": a["id"]}
        assert {x for x in CHANGED if a[x] != b[x]} == set(CHECK_CHANGES[key])
    for scene in scenes.values():
        scene.check_values()
        assert scene.resolution == (32, 32)


def test_colour_maps_are_read_from_scenes() -> None:
    from two4two import utils
    from two4two.scene_parameters import SceneParameters

    scenes = [SceneParameters(obj_color=v, obj_color_rgba=utils.color_from_cmap("seismic", v),
                              bg_color=v, bg_color_rgba=utils.color_from_cmap("binary", v))
              for v in (0.1, 0.4, 0.9)]
    assert infer_color_map(scenes, "obj_color") == "seismic"
    assert infer_color_map(scenes, "bg_color") == "binary"
    odd = [SceneParameters(obj_color=0.3, obj_color_rgba=(0.1, 0.2, 0.3, 1.0))]
    assert infer_color_map(odd, "obj_color") == "coolwarm"


def test_tutorial_pages_and_checks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("dubfiv.study.build.tutorial.render_scenes", _fake_render)
    lines: list[str] = []
    namer = ImageNamer(SECRET)
    tut = build_tutorial(tmp_path, default_attributes(), TutorialSettings(resolution=32),
                         RenderSettings(cell_pixels=128), seed=3, namer=namer, log=lines.append)
    assert [p.title for p in tut.pages] == [f"Attribute: {a.label}"
                                            for a in default_attributes()]
    assert any("rendered 39/39" in line for line in lines)
    for page in tut.pages:
        assert (page.grid.rows, page.grid.cols) == (1, 5) and len(page.images) == 5
    assert len(tut.checks) == 2 and {c.kind for c in tut.checks} == {"comprehension"}
    labels = {a.label: a.key for a in default_attributes()}
    for chk, key in zip(tut.checks, tut.record["checked_attributes"], strict=True):
        assert labels[chk.choices[chk.correct - 1]] == key  # the right answer is the change
        assert len(chk.choices) == 4 and len(set(chk.choices)) == 4
    assert len(tut.comprehension_page.images) == 4
    # images: enlarged renders with neutral names, all distinct files
    paths = [img.path for p in [*tut.pages, tut.comprehension_page] for img in p.images]
    assert len(set(paths)) == 39 and all(re.fullmatch(r"public/[0-9a-f]{16}\.png", p)
                                         for p in paths)
    for path in paths:
        with Image.open(tmp_path / path) as im:
            assert im.size == (128, 128)
    # the seed draws the checks; the same seed gives the same tutorial
    again = build_tutorial(tmp_path / "again", default_attributes(),
                           TutorialSettings(resolution=32), RenderSettings(cell_pixels=128),
                           seed=3, namer=ImageNamer(SECRET))
    assert again.checks == tut.checks
    draws = {tuple(build_tutorial(tmp_path / f"s{s}", default_attributes(),
                                  TutorialSettings(resolution=32), RenderSettings(), seed=s)
                   .record["checked_attributes"]) for s in range(6)}
    assert len(draws) > 1


def test_tutorial_settings_are_checked(tmp_path: Path) -> None:
    for kwargs, name in (({"resolution": 8}, "tutorial_resolution"),
                         ({"samples": 0}, "tutorial_samples"),
                         ({"n_checks": 8}, "comprehension_checks")):
        with pytest.raises(TutorialError) as info:
            build_tutorial(tmp_path, default_attributes(), TutorialSettings(**kwargs),
                           RenderSettings(), seed=0)
        assert info.value.parameter == name


def test_tutorial_renders_with_two4two(tmp_path: Path) -> None:
    """The real thing (Blender Cycles): small renders, distinct and not blank."""
    start = time.perf_counter()
    settings = TutorialSettings(resolution=48, samples=8, device="cpu")
    tut = build_tutorial(tmp_path, default_attributes(), settings, RenderSettings(cell_pixels=96),
                         seed=0, namer=ImageNamer())
    seconds = time.perf_counter() - start
    arrays = {img.path: np.asarray(Image.open(tmp_path / img.path).convert("RGB"), np.float64)
              for p in [*tut.pages, tut.comprehension_page] for img in p.images}
    assert len(arrays) == 39
    for path, arr in arrays.items():
        assert arr.shape == (96, 96, 3) and arr.std() > 2, path  # an animal on a background
    # within a row the images differ (the attribute changes), e.g. the object colour row
    for page in tut.pages:
        row = [arrays[img.path] for img in page.images]
        diffs = [np.abs(row[j] - row[j + 1]).mean() for j in range(4)]
        assert min(diffs) > 0.1, (page.title, diffs)
    # a comprehension pair differs too
    pair = [arrays[img.path] for img in tut.comprehension_page.images[:2]]
    assert np.abs(pair[0] - pair[1]).mean() > 0.5
    assert seconds < 300


# ---------------------------------------------------------------------- names


def test_neutral_names() -> None:
    a, b = ImageNamer(SECRET), ImageNamer(SECRET)
    keys = [f"baseline/row{r}_bin{k}" for r in range(1, 7) for k in range(1, 6)]
    paths = [a.path(k) for k in keys]
    assert paths == [b.path(k) for k in keys]  # deterministic in the secret
    assert len(set(paths)) == len(keys)
    for path in paths:
        assert re.fullmatch(r"public/[0-9a-f]{16}\.png", path)
    assert ImageNamer(bytes(32)).path(keys[0]) != paths[0]
    assert ImageNamer().path(keys[0]) != ImageNamer().path(keys[0])  # a new random secret
    with pytest.raises(NamingError, match="twice"):
        a.path(keys[0])
    with pytest.raises(NamingError):
        ImageNamer(b"short")
    assert [e["key"] for e in a.table()["images"]] == keys
    assert a.table()["secret"] == SECRET.hex()
    assert a.keys()[keys[3]] == paths[3]


# ---------------------------------------------------------------------- layout and estimate


def _pages_in_qsf(qsf: dict, condition: str) -> int:
    """Pages a completing participant of ``condition`` sees, counted from the survey."""
    sq = {e["PrimaryAttribute"]: e["Payload"] for e in qsf["SurveyElements"]
          if e["Element"] == "SQ"}
    blocks = {b["ID"]: b for e in qsf["SurveyElements"] if e["Element"] == "BL"
              for b in e["Payload"]}
    root = next(e for e in qsf["SurveyElements"] if e["Element"] == "FL")["Payload"]["Flow"]
    count = 0
    for item in root:
        ids = []
        if item["Type"] in ("Block", "Standard"):
            ids = [item["ID"]]
        elif item["Type"] == "BlockRandomizer":
            ids = [g["Flow"][1]["ID"] for g in item["Flow"]
                   if g["Flow"][0]["EmbeddedData"][0]["Value"] == condition]
        for bid in ids:
            elements = blocks[bid]["BlockElements"]
            shown = [e for e in elements if e["Type"] == "Page Break" or "DisplayLogic" not in
                     sq[e["QuestionID"]] or sq[e["QuestionID"]]["DisplayLogic"]["0"]["0"][
                         "RightOperand"] == condition]
            count += 1 + sum(e["Type"] == "Page Break" for e in shown)
    return count


def test_estimate_counts_the_survey_pages(full_study_dir) -> None:
    study, _ = full_study_dir
    qsf = build_qsf(study, BASE_URL)
    est = estimate(study)
    for cond in study.conditions:
        assert est.per_condition[cond.key]["pages"] == _pages_in_qsf(qsf, cond.key)
        # questions: consent, device, 2 comprehension, 2 attention, 2 x 7 matrix rows, tasks
        assert est.per_condition[cond.key]["questions"] == (
            2 + 2 + 2 + 2 * len(study.attributes) + len(study.tasks))
    longest = max(v["seconds"] for v in est.per_condition.values())
    assert est.minutes == math.ceil(longest / 60)


def test_estimate_adds_the_assumed_seconds(full_study_dir) -> None:
    """One more prediction task adds one page, its words, one image and one answer."""
    study, _ = full_study_dir
    timing = Timing()
    before = estimate(study, timing).per_condition["baseline"]["seconds"]
    study.tasks.append(PredictionTask("extra", StudyImage(study.tasks[0].image.path, width=9,
                                                          height=9), 1.0, "Peaky"))
    after = estimate(study, timing).per_condition["baseline"]["seconds"]
    words = plain_words(study.prediction_question) + sum(plain_words(c)
                                                         for c in study.class_names)
    expected = (timing.per_page + words / timing.words_per_second + timing.per_image
                + timing.per_choice)
    assert after - before == pytest.approx(expected, abs=0.11)
    # the explanation images count as studied once and glanced at again above the questions
    pages = participant_pages(study, study.condition("baseline"))
    attr_page = next(p for p in pages if p.name == "attributes")
    n_images = len(study.condition("baseline").pages[0].images)
    explained = next(p for p in pages if p.name.startswith("baseline: Grid"))
    assert page_seconds(explained, timing) == pytest.approx(
        timing.per_page + explained.items[0].words / timing.words_per_second
        + n_images * timing.per_explanation_image)
    assert sum(it.images for it in attr_page.items if it.repeated) == n_images


def test_attention_checks_are_spread_over_the_tasks(full_study_dir) -> None:
    study, _ = full_study_dir
    on_attributes, slots = attention_slots(study)
    assert [c.tag for c in on_attributes] == ["attention_1"]
    assert {i: [c.tag for c in v] for i, v in slots.items()} == {2: ["attention_2"]}
    study.tasks = []
    on_attributes, slots = attention_slots(study)
    assert [c.tag for c in on_attributes] == ["attention_1", "attention_2"] and slots == {}


# ---------------------------------------------------------------------- preview


def test_preview_has_tutorial_checks_and_hides_answers(full_study_dir) -> None:
    study, _ = full_study_dir
    text = render_preview(study)
    for chk in study.checks:
        assert chk.text in text
    assert "Check <code>comprehension_1</code>" in text
    assert "return your submission" in text and "ABC123" in text
    assert study.tutorial_intro in text and "7 minutes" in text
    hidden = render_preview(study, show_answers=False)
    assert "comprehension_1</code>" not in hidden and "ABC123" not in hidden
    assert "model logit" not in hidden
    widths = [int(w) for w in re.findall(r"<img [^>]*width:(\d+)px", text)]
    assert len(widths) == len(study.images()) and min(widths) >= MIN_IMAGE_PX
    from dubfiv.study.content import Study

    again = Study.from_dict(json.loads(json.dumps(study.to_dict())))
    assert again == study and again.comprehension_page == study.comprehension_page


@pytest.mark.parametrize("timing_scale", [1.0, 7.3])
def test_the_consent_names_the_minutes_estimated_with_it(
        full_study_dir: tuple[Study, Path], timing_scale: float) -> None:
    """settle_consent: the minutes in the consent are the estimate of the survey with that
    very consent text (its words are read too), for short and long surveys."""
    study, _ = full_study_dir
    slow = Timing(**{f: getattr(Timing(), f) * timing_scale
                     for f in Timing.__dataclass_fields__})
    duration = settle_consent(study, tutorial=True, attention_checks=True, timing=slow)
    assert study.estimated_minutes == duration.minutes == estimate(study, slow).minutes
    assert f"about <b>{duration.minutes} minutes</b>" in study.consent_text
    study.consent_text = "<p>short</p>"  # a different text is estimated differently
    assert estimate(study, slow).to_dict() != duration.to_dict()
