"""How the three explanations are drawn: one set of settings for every place that draws them.

The study export (:class:`dubfiv.study.build.export.ExportConfig`) and the
paper figures (:class:`dubfiv.workflow.figures.FigureOptions`) both derive from
:class:`ExplanationSettings`, so a setting has one name, one meaning and one
check wherever the baseline grid, the counterfactual interpolations or the
concepts are made (:class:`dubfiv.analysis.Analysis`).
"""

from __future__ import annotations

import dataclasses

from dubfiv.errors import ParameterError
from dubfiv.explain.bins import INTERPOLATION_P_LO

__all__ = ["CONCEPT_METHODS", "ExplanationSettings"]

CONCEPT_METHODS = ("nmf", "pca")
"""The factorisations :meth:`dubfiv.analysis.Analysis.concepts` can fit."""


@dataclasses.dataclass(kw_only=True)
class ExplanationSettings:
    """Settings of the baseline grid, the counterfactual interpolations and the concepts.

    Attributes:
        seed: seed of every random draw (images, tasks, concept fits).
        rows: rows of the baseline grid and of the interpolations.
        p_hi: percentile of |logit| of the outer interpolation targets, in
            ``(INTERPOLATION_P_LO, 100]`` (``docs/explanations.md``: 80, 90, 95 or 99).
        concept_method: ``"nmf"`` (on the signed parts) or ``"pca"``.
        n_concepts: concepts fitted.
        concepts_per_sign: concepts shown per sign of their effect on the logit.
        concept_images: images shown per concept.
        concept_fit_images: training images the concepts are fitted on.
        concept_eval_images: validation/test images of the ranking.
        concept_resolution: side of the layer the concepts are fitted at
            (``None``: 8 where the network has such a layer, else 4).
    """

    seed: int = 0
    rows: int = 6
    p_hi: float = 90.0
    concept_method: str = "nmf"
    n_concepts: int = 8
    concepts_per_sign: int = 2
    concept_images: int = 6
    concept_fit_images: int = 1000
    concept_eval_images: int = 1000
    concept_resolution: int | None = None

    def check_explanations(self) -> None:
        """Raise :class:`ParameterError` (``parameter``: the field) for a value that
        cannot be drawn; the message starts with the field's name."""
        if self.concept_method not in CONCEPT_METHODS:
            raise ParameterError(f"concept_method {self.concept_method!r} must be one of "
                                 f"{', '.join(CONCEPT_METHODS)}", "concept_method")
        for name in ("rows", "n_concepts", "concepts_per_sign", "concept_images",
                     "concept_fit_images", "concept_eval_images"):
            value = getattr(self, name)
            if value < 1:
                raise ParameterError(f"{name} must be at least 1, got {value}", name)
        if not INTERPOLATION_P_LO < self.p_hi <= 100:
            raise ParameterError(f"p_hi must be in ({INTERPOLATION_P_LO:g}, 100], got "
                                 f"{self.p_hi}", "p_hi")
        if self.concept_resolution is not None and self.concept_resolution < 1:
            raise ParameterError(f"concept_resolution must be at least 1, got "
                                 f"{self.concept_resolution}", "concept_resolution")
