"""User studies: build one from a trained run, run it as a survey, analyse the answers.

The folders follow the workflow; each wing imports the shared core and the
wings before it, never one after it:

* shared core -- :mod:`~dubfiv.study.content` (the data model, ``study.json``),
  :mod:`~dubfiv.study.layout` (which page shows what) and
  :mod:`~dubfiv.study.page_html` (a page as HTML);
* :mod:`dubfiv.study.build` -- from a run to a study folder: the explanation
  material (``material``), the tutorial, the tasks, neutral image names, the
  duration estimate, the offline preview, the atomic bundle and the exporter
  (``dubfiv_export_user_study``); these import torch or two4two;
* :mod:`dubfiv.study.qsf` -- the study as a Qualtrics survey: ``writer``
  (``study.qsf``), ``reader`` (parse and validate), ``columns`` (where each
  answer lands in Qualtrics' CSV export), ``image_urls`` and ``responses_csv``
  (a CSV export written from rows, for tests and simulations);
* :mod:`dubfiv.study.results` -- the answers: reading the CSV (``responses``),
  the exclusion rules, the condition effect, the analysis and its figure, and
  simulated participants. It reads surveys through ``qsf.reader`` and
  ``qsf.columns`` and never imports the writer.
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
