"""The answers of a study: read, exclude, compare conditions, report.

:mod:`~dubfiv.study.results.analysis` (``dubfiv_study_results``) reads the answers
of any runtime (:mod:`~dubfiv.study.results.sources`: Qualtrics' CSV through
:mod:`~dubfiv.study.results.responses`, the jsPsych page's trial records through
:mod:`~dubfiv.study.results.record_files`, the collector's database or export) as one
kind of rows, applies the exclusion rules
(:mod:`~dubfiv.study.results.exclusions`), compares the conditions
(:mod:`~dubfiv.study.results.condition_effect`) and draws the figures
(:mod:`~dubfiv.study.results.figure`); :mod:`~dubfiv.study.results.simulate`
draws participants with a known effect (as CSV rows, or as answer plans for the
browser tests). Surveys are read through :mod:`dubfiv.study.qsf.reader` and
:mod:`dubfiv.study.qsf.columns`, records through :mod:`dubfiv.study.jspsych.records`
only.
"""
