"""A small fake study (tiny PNGs made with PIL) shared by the study tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from dubfiv.study.content import (
    CheckQuestion,
    Condition,
    GridLayout,
    Page,
    PredictionTask,
    Study,
    StudyImage,
    default_attention_checks,
    default_attributes,
)

BASE_URL = "https://example.org/studies/fake"


def _png(folder: Path, rel: str, color: tuple[int, int, int], size: tuple[int, int]) -> StudyImage:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return StudyImage(rel, caption=f"caption of {rel}", alt=f"alt of {rel}",
                      width=size[0], height=size[1])


def make_study(folder: Path) -> Study:
    """Write the images into ``folder`` and return a study using them.

    Conditions: baseline (a 2x3 grid with logit-bin column labels), inn (one
    grid page, one single-image page), concepts (a figure whose file name has
    a space, to exercise URL quoting). Three prediction tasks.
    """
    folder.mkdir(parents=True, exist_ok=True)
    bins = ["logit < -2", "-2 .. 2", "logit > 2"]
    grid = [_png(folder, f"images/baseline/cell_{r}_{c}.png", (40 * c, 80 * r, 120), (12, 10))
            for r in range(2) for c in range(3)]
    inn_grid = [_png(folder, f"images/inn/row0_{c}.png", (200, 30 * c, 30), (8, 8))
                for c in range(3)]
    inn_single = _png(folder, "images/inn/overview.png", (10, 200, 10), (20, 6))
    concept = _png(folder, "images/concepts/component 1.png", (90, 90, 250), (16, 16))
    tasks = [PredictionTask(f"t{i}", _png(folder, f"images/tasks/task_{i}.png",
                                          (30 * i, 30, 30), (9, 9)),
                            model_logit=logit, true_label=label)
             for i, (logit, label) in enumerate([(2.5, "Stretchy"), (-1.0, "Peaky"),
                                                 (0.7, "Peaky")])]
    attributes = default_attributes()
    truth = {"arm_position": True, "obj_color": True, "bg_color": False, "spherical": None}
    for attr in attributes:
        attr.relevant = truth.get(attr.key, False)
    return Study(
        name="fake study",
        conditions=[
            Condition("baseline", "Example images", "<p>Images sorted by the logit.</p>",
                      [Page("Grid", "<p>Each column is a logit bin.</p>", grid,
                            GridLayout(2, 3, ["draw 1", "draw 2"], bins))]),
            Condition("inn", "Counterfactuals", "<p>Interpolations.</p>",
                      [Page("Row", "", inn_grid, GridLayout(1, 3, [], bins)),
                       Page("Overview", "<p>All rows.</p>", [inn_single])]),
            Condition("concepts", "Concepts", "<p>Concepts.</p>",
                      [Page("Component 1", "<p>Moves the logit up.</p>", [concept])]),
        ],
        attributes=attributes, tasks=tasks, image_base_url=BASE_URL, seed=3,
    )


def make_full_study(folder: Path, prolific: str | None = "ABC123") -> Study:
    """:func:`make_study` with a tutorial (two rows), a comprehension page with two
    checks, the two attention checks, five tasks and (by default) a Prolific code."""
    study = make_study(folder)
    rows = [[_png(folder, f"images/tutorial/{key}_{j}.png", (60 * j, 20, 200 - 60 * j), (10, 10))
             for j in range(3)] for key in ("arm", "colour")]
    study.tutorial_intro = "<p>The animals and their attributes.</p>"
    study.tutorial = [Page(f"Attribute {key}", f"<p>Only {key} changes.</p>", row,
                           GridLayout(1, 3, [], ["in", "middle", "out"]))
                      for key, row in zip(("arm", "colour"), rows, strict=True)]
    pair = [_png(folder, f"images/tutorial/pair_{j}.png", (200, 200, 40 * j), (10, 10))
            for j in range(4)]
    study.comprehension_page = Page("Check", "<p>Two pairs.</p>", pair,
                                    GridLayout(2, 2, ["pair A", "pair B"], []))
    study.checks = [
        CheckQuestion("comprehension_1", "comprehension", "<p>Pair A differs in?</p>",
                      ["arm position", "colour", "position"], 2),
        CheckQuestion("comprehension_2", "comprehension", "<p>Pair B differs in?</p>",
                      ["colour", "arm position"], 1),
        *default_attention_checks()]
    study.tasks += [PredictionTask(f"t{i}", _png(folder, f"images/tasks/task_{i}.png",
                                                 (10, 30 * i, 30), (9, 9)), 0.5 - i, "Peaky")
                    for i in (3, 4)]
    study.prolific_completion_code = prolific
    study.estimated_minutes = 7
    return study


@pytest.fixture()
def full_study_dir(tmp_path: Path) -> tuple[Study, Path]:
    folder = tmp_path / "full_study"
    return make_full_study(folder), folder


@pytest.fixture()
def base_url() -> str:
    return BASE_URL


@pytest.fixture()
def study_dir(tmp_path: Path) -> tuple[Study, Path]:
    folder = tmp_path / "study"
    return make_study(folder), folder
