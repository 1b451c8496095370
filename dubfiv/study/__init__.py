"""User-study export: the content model, Qualtrics .qsf, HTML preview, bundle, results.

Modules (one job each):

* :mod:`dubfiv.study.content` -- dataclasses describing a study (``study.json``);
* :mod:`dubfiv.study.qsf.writer` -- ``.qsf`` writer, reader, validator, CSV layout;
* :mod:`dubfiv.study.build.preview` -- the offline ``index.html``;
* :mod:`dubfiv.study.build.bundle` -- atomic folder builds and ``manifest.json``;
* :mod:`dubfiv.study.results.analysis` -- analysis of Qualtrics' CSV export;
* :mod:`dubfiv.study.layout` -- which page shows what (survey, preview, estimate);
* :mod:`dubfiv.study.build.duration` -- the survey's duration estimate;
* :mod:`dubfiv.study.build.names` -- neutral names of the hosted images (``public/``);
* :mod:`dubfiv.study.build.export` -- the exporter (``dubfiv_export_user_study``), with
  :mod:`dubfiv.study.build.material` (explanation images and records),
  :mod:`dubfiv.study.build.task` (attribute answers, prediction tasks) and
  :mod:`dubfiv.study.build.tutorial` (the tutorial rendered with two4two); these import
  torch or two4two and are not imported here.
"""

from dubfiv.study.content import (
    CONDITION_KEYS,
    STUDY_JSON,
    Attribute,
    CheckQuestion,
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
    "CheckQuestion",
    "Condition",
    "GridLayout",
    "Page",
    "PredictionTask",
    "Study",
    "StudyError",
    "StudyImage",
    "default_attributes",
]
