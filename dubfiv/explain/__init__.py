"""Explanations: counterfactual interpolations, the example-grid baseline, concepts.

Modules (import them directly; this package imports nothing on its own):

* :mod:`.counterfactual` -- move activations along the head's weight, invert;
* :mod:`.bins` -- logit bins from percentiles of |logit|;
* :mod:`.interpolation` -- counterfactual interpolation grids (``WeightInterpolation``);
* :mod:`.baseline` -- the logit-binned grid of real images (``Baseline``);
* :mod:`.concepts` / :mod:`.concept_report` -- concept directions, JVP importance, figures;
* :mod:`.cache` -- per-split analysis data cached beside a run;
* :mod:`.figures` / :mod:`.records` -- the shared image grid and atomic PNG/JSON writes.

:class:`dubfiv.analysis.Analysis` ties them to a run directory.
"""
