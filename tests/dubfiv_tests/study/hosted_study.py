"""A fake study as the export hosts it (images under ``public/`` with neutral names), and
the local jsPsych install that the page's browser tests load (never a CDN)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dubfiv.study.build.names import ImageNamer
from dubfiv.study.content import Study

REPO = Path(__file__).resolve().parents[3]
NODE_MODULES = REPO / ".cache" / "jspsych" / "node_modules"
"""The local jsPsych install ``./dev test`` makes (npm ci from dubfiv/study/jspsych/npm)."""

__all__ = ["NODE_MODULES", "host_study", "require_node_modules"]


def require_node_modules() -> Path:
    """The local jsPsych install, or skip."""
    if not (NODE_MODULES / "jspsych" / "package.json").is_file():
        pytest.skip(f"no local jsPsych install at {NODE_MODULES} (./dev test makes it: "
                    "npm ci --prefix .cache/jspsych with dubfiv/study/jspsych/npm/package*.json)")
    return NODE_MODULES


def host_study(study: Study, folder: Path) -> Study:
    """Move the study's images into ``folder/public`` under neutral names (an
    :class:`ImageNamer`, whose private table goes to ``records/``), as the export does;
    captions and alt texts become neutral too (the fake study's name the files)."""
    namer = ImageNamer()
    moved: dict[str, str] = {}
    for i, img in enumerate(study.images()):
        if img.path not in moved:
            new = namer.path(img.path.removeprefix("images/").removesuffix(".png"))
            (folder / new).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / img.path, folder / new)
            moved[img.path] = new
        img.path = moved[img.path]
        img.alt, img.caption = f"picture {i + 1}", (f"note {i + 1}" if i % 3 == 0 else "")
    shutil.rmtree(folder / "images")
    study.public_dir = "public"
    for k, task in enumerate(study.tasks):  # logits that cannot appear by chance
        task.model_logit = (1.23456789 + k) * (-1) ** k
    namer.write(folder)
    study.check(folder)
    return study
