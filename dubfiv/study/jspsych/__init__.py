"""The study as a jsPsych 8 experiment: the page the export writes into ``public/``,
the records it stores, and what those records mean for the analysis.

``records`` is the contract shared by the page (``assets/dubfiv-study.js``), the
collector (:mod:`dubfiv.study.collector`) and the analysis
(:mod:`dubfiv.study.results`); see ``docs/jspsych.md``.
"""
