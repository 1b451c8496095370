"""A study as a Qualtrics survey file (``.qsf``) and Qualtrics' CSV export of responses.

Import the modules themselves: :mod:`~dubfiv.study.qsf.writer` builds the
survey; :mod:`~dubfiv.study.qsf.reader` parses and validates one;
:mod:`~dubfiv.study.qsf.columns` says where each answer lands in the CSV export
(what the analysis reads); :mod:`~dubfiv.study.qsf.image_urls` repoints the
images; :mod:`~dubfiv.study.qsf.responses_csv` writes a CSV export from rows.
This package module imports none of them, so that reading a survey never loads
the writer. Facts about the format: ``docs/qualtrics.md``.
"""
