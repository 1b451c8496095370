"""Logit bins: percentile values, midpoint edges, assignment."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dubfiv.explain.bins import BASELINE_PERCENTILES, logit_bins


def _percentile_by_hand(values: np.ndarray, p: float) -> float:
    """Linear interpolation between order statistics at rank p/100 * (n - 1)."""
    ordered = sorted(abs(float(v)) for v in values)
    rank = p / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


@pytest.mark.parametrize(("p_lo", "p_hi"), [BASELINE_PERCENTILES, (50, 80), (50, 99)])
def test_values_are_signed_percentiles_of_abs_logits(p_lo: float, p_hi: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0.5, 3.0, size=101)
    bins = logit_bins(torch.from_numpy(logits), p_lo, p_hi)
    lo, hi = _percentile_by_hand(logits, p_lo), _percentile_by_hand(logits, p_hi)
    np.testing.assert_allclose(bins.values, [-hi, -lo, 0.0, lo, hi], rtol=0, atol=1e-12)
    assert bins.edges[0] == -np.inf and bins.edges[-1] == np.inf
    np.testing.assert_allclose(bins.edges[1:-1], [(-hi - lo) / 2, -lo / 2, lo / 2, (lo + hi) / 2])


def test_assign_puts_each_logit_between_its_edges() -> None:
    bins = logit_bins(np.array([-4.0, -2.0, -1.0, 1.0, 2.0, 4.0]), 40, 80)
    logits = np.concatenate([np.linspace(-10, 10, 401), bins.edges[1:-1]])
    assigned = bins.assign(logits)
    for logit, k in zip(logits, assigned, strict=True):
        assert bins.edges[k] <= logit < bins.edges[k + 1]
    # a logit exactly on an edge goes to the upper bin; each value lies in its own bin
    np.testing.assert_array_equal(bins.assign(bins.edges[1:-1]), [1, 2, 3, 4])
    np.testing.assert_array_equal(bins.assign(bins.values), [0, 1, 2, 3, 4])


def test_record_is_strict_json_and_labels_name_the_percentiles() -> None:
    bins = logit_bins(np.arange(-5.0, 6.0))
    record = json.loads(json.dumps(bins.to_dict(), allow_nan=False))
    assert record["edges"][0] == "-inf" and record["edges"][-1] == "inf"
    assert record["p_lo"] == 33.33 and record["p_hi"] == 75.0
    assert bins.labels()[0].startswith("-P75 = ") and bins.labels()[2] == "0"


@pytest.mark.parametrize(("logits", "p_lo", "p_hi", "match"), [
    ([], 33.33, 75, "empty"),
    ([1.0, float("nan")], 33.33, 75, "NaN"),
    ([1.0, 2.0], 75, 50, "p_lo < p_hi"),
    ([1.0, 2.0], 0, 50, "p_lo < p_hi"),
])
def test_bad_input_is_a_clear_error(logits: list, p_lo: float, p_hi: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        logit_bins(np.array(logits), p_lo, p_hi)
