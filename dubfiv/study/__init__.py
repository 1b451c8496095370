"""User-study export: the content model, Qualtrics .qsf, HTML preview, bundle, results.

Modules (one job each):

* :mod:`dubfiv.study.content` -- dataclasses describing a study (``study.json``);
* :mod:`dubfiv.study.qualtrics` -- ``.qsf`` writer, reader, validator, CSV layout;
* :mod:`dubfiv.study.preview` -- the offline ``index.html``;
* :mod:`dubfiv.study.bundle` -- atomic folder builds and ``manifest.json``;
* :mod:`dubfiv.study.results` -- analysis of Qualtrics' CSV export;
* :mod:`dubfiv.study.export` -- the exporter (``dubfiv_export_user_study``), with
  :mod:`dubfiv.study.figures` (explanation images and records) and
  :mod:`dubfiv.study.task` (attribute answers, prediction tasks); these import torch
  and are not imported here.
"""

from dubfiv.study.content import (
    CONDITION_KEYS,
    STUDY_JSON,
    Attribute,
    Condition,
    GridLayout,
    Page,
    PredictionTask,
    Study,
    StudyError,
    StudyImage,
    default_attributes,
)

__all__ = [
    "CONDITION_KEYS",
    "STUDY_JSON",
    "Attribute",
    "Condition",
    "GridLayout",
    "Page",
    "PredictionTask",
    "Study",
    "StudyError",
    "StudyImage",
    "default_attributes",
]
