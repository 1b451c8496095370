"""The answers of a study: read, exclude, compare conditions, report.

:mod:`~dubfiv.study.results.analysis` (``dubfiv_study_results``) reads the CSV
(:mod:`~dubfiv.study.results.responses`), applies the exclusion rules
(:mod:`~dubfiv.study.results.exclusions`), compares the conditions
(:mod:`~dubfiv.study.results.condition_effect`) and draws the figures
(:mod:`~dubfiv.study.results.figure`); :mod:`~dubfiv.study.results.simulate`
draws participants with a known effect. Surveys are read through
:mod:`dubfiv.study.qsf.reader` and :mod:`dubfiv.study.qsf.columns` only.
"""
