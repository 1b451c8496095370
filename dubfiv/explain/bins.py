"""Logit bins: five target values from percentiles of |logit|, edges at their midpoints.

``docs/explanations.md`` ("Logit bins and targets"): for percentiles ``P_lo < P_hi`` of the absolute
logits of a data split, the bin values are ``[-P_hi, -P_lo, 0, P_lo, P_hi]``
(logits) and the bin edges are the midpoints between neighbouring values, with
``-inf`` and ``+inf`` at the ends. The baseline grid uses ``P_lo = 33.33,
P_hi = 75``; counterfactual interpolations use ``P_lo = 50`` and ``P_hi`` in
``{80, 90, 95, 99}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from dubfiv.errors import ParameterError

__all__ = [
    "BASELINE_PERCENTILES",
    "INTERPOLATION_P_HI_CHOICES",
    "INTERPOLATION_P_LO",
    "LogitBins",
    "logit_bins",
]

BASELINE_PERCENTILES = (33.33, 75.0)
"""``(P_lo, P_hi)`` of the baseline grid's bins."""
INTERPOLATION_P_LO = 50.0
"""``P_lo`` of the counterfactual interpolations."""
INTERPOLATION_P_HI_CHOICES = (80.0, 90.0, 95.0, 99.0)
"""The ``P_hi`` values ``docs/explanations.md`` names for interpolations."""


@dataclasses.dataclass(frozen=True)
class LogitBins:
    """Five logit bins.

    Attributes:
        values: ``[5]`` bin values (logits) ``[-P_hi, -P_lo, 0, P_lo, P_hi]``.
        edges: ``[6]`` bin edges (logits): ``-inf``, the 4 midpoints, ``+inf``.
        p_lo, p_hi: the percentiles (in %) of |logit| the values come from.
    """

    values: np.ndarray
    edges: np.ndarray
    p_lo: float
    p_hi: float

    def __len__(self) -> int:
        return len(self.values)

    def assign(self, logits: np.ndarray | torch.Tensor) -> np.ndarray:
        """Bin index (int64, 0..4) of each logit; a logit on an edge goes to the upper bin."""
        logits = np.asarray(torch.as_tensor(logits).detach().cpu(), dtype=np.float64)
        return np.searchsorted(self.edges[1:-1], logits, side="right").astype(np.int64)

    def labels(self, digits: int = 2) -> list[str]:
        """Column titles such as ``"-P75 = -3.21"``."""
        names = [f"-P{self.p_hi:g}", f"-P{self.p_lo:g}", "0", f"P{self.p_lo:g}",
                 f"P{self.p_hi:g}"]
        return [f"{name} = {value:.{digits}f}" if name != "0" else "0"
                for name, value in zip(names, self.values, strict=True)]

    def describe(self, logit: float) -> dict[str, Any]:
        """The bin of one logit: ``bin`` (index), ``bin_value`` and ``bin_range``
        ``[lower edge, upper edge)`` (``"-inf"``/``"inf"`` as strings at the ends)."""
        k = int(self.assign(np.array([logit]))[0])
        return {"bin": k, "bin_value": float(self.values[k]),
                "bin_range": [_edge(e) for e in self.edges[k:k + 2]]}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: values, edges (``"-inf"``/``"inf"`` as strings) and percentiles."""
        return {
            "values": [float(v) for v in self.values],
            "edges": [_edge(e) for e in self.edges],
            "p_lo": float(self.p_lo),
            "p_hi": float(self.p_hi),
        }


def _edge(edge: float) -> float | str:
    """A bin edge for JSON: the float, or ``"inf"``/``"-inf"`` at the open ends."""
    return float(edge) if np.isfinite(edge) else ("inf" if edge > 0 else "-inf")


def logit_bins(
    logits: np.ndarray | torch.Tensor, p_lo: float = BASELINE_PERCENTILES[0],
    p_hi: float = BASELINE_PERCENTILES[1],
) -> LogitBins:
    """Bins from the percentiles of ``|logits|`` (linear interpolation between order statistics).

    Args:
        logits: ``[N]`` logits of a data split.
        p_lo, p_hi: percentiles in % with ``0 < p_lo < p_hi <= 100``.

    Raises:
        ValueError: no logits, non-finite logits, or percentiles out of order.
    """
    if not 0 < p_lo < p_hi <= 100:
        raise ParameterError(f"`p_lo`/`p_hi`: percentiles must satisfy 0 < p_lo < p_hi <= 100, "
                             f"got p_lo={p_lo}, p_hi={p_hi}")
    values = np.asarray(torch.as_tensor(logits).detach().cpu(), dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("cannot compute logit bins from an empty set of logits")
    if not np.isfinite(values).all():
        raise ValueError("logits contain NaN or inf; the model or its inputs are broken")
    lo, hi = np.percentile(np.abs(values), [p_lo, p_hi])
    bin_values = np.array([-hi, -lo, 0.0, lo, hi])
    edges = np.concatenate([[-np.inf], (bin_values[1:] + bin_values[:-1]) / 2, [np.inf]])
    return LogitBins(values=bin_values, edges=edges, p_lo=float(p_lo), p_hi=float(p_hi))
