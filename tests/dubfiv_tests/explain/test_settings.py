"""One set of explanation settings for the study export and the paper figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dubfiv.errors import ParameterError
from dubfiv.explain.settings import ExplanationSettings
from dubfiv.study.build.export_config import ExportConfig
from dubfiv.workflow.figures import FigureOptions


def test_the_export_and_the_figures_share_every_explanation_setting() -> None:
    shared = {f.name for f in dataclasses.fields(ExplanationSettings)}
    for cls in (ExportConfig, FigureOptions):
        assert issubclass(cls, ExplanationSettings)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert shared <= set(fields) and all(fields[n].kw_only for n in shared)
    assert FigureOptions().rows == 5 and ExportConfig(Path("run")).rows == 6


@pytest.mark.parametrize(("change", "parameter"), [
    ({"rows": 0}, "rows"), ({"n_concepts": 0}, "n_concepts"),
    ({"concept_images": 0}, "concept_images"), ({"concepts_per_sign": 0}, "concepts_per_sign"),
    ({"concept_fit_images": 0}, "concept_fit_images"), ({"p_hi": 50.0}, "p_hi"),
    ({"p_hi": 100.5}, "p_hi"), ({"concept_method": "ica"}, "concept_method"),
    ({"concept_resolution": 0}, "concept_resolution"),
])
def test_a_bad_setting_names_its_field(change: dict, parameter: str) -> None:
    ExplanationSettings().check_explanations()
    ExplanationSettings(p_hi=100.0, concept_resolution=4).check_explanations()
    with pytest.raises(ParameterError) as info:
        ExplanationSettings(**change).check_explanations()
    assert info.value.parameter == parameter and str(info.value).startswith(parameter)
