"""From a trained run to a study folder (``dubfiv_export_user_study``).

:mod:`~dubfiv.study.build.export` runs the steps: the explanation material of
each condition (:mod:`~dubfiv.study.build.material`), the tutorial
(:mod:`~dubfiv.study.build.tutorial`), the attribute answers and prediction
tasks (:mod:`~dubfiv.study.build.task`), neutral image names
(:mod:`~dubfiv.study.build.names`), the duration estimate
(:mod:`~dubfiv.study.build.duration`), the preview
(:mod:`~dubfiv.study.build.preview`), the README
(:mod:`~dubfiv.study.build.readme`) and the atomic folder
(:mod:`~dubfiv.study.build.bundle`).
"""
