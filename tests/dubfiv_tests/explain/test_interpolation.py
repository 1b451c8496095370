"""Counterfactual interpolations: target logits hit on re-encoding, clipping reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dubfiv.explain.bins import logit_bins
from dubfiv.explain.counterfactual import encode
from dubfiv.explain.interpolation import (
    CounterfactualInterpolation,
    WeightInterpolation,
    select_rows,
)


def test_reencoded_logits_hit_the_bin_values_float64(tiny_model: Callable) -> None:
    flow, head, images, _ = tiny_model(torch.float64)
    _, _, logits = encode(flow, head, images)
    bins = logit_bins(logits, 50, 90)
    grid = CounterfactualInterpolation(flow, head, bins, batch_size=7)(
        images[:6], indices=np.arange(10, 16), labels=np.ones(6))
    assert grid.images.shape == (6, 5, 3, 16, 16)
    np.testing.assert_array_equal(grid.targets, bins.values)
    # re-encode the returned images independently (where nothing was clipped)
    assert grid.max_deviation < 1e-3
    assert grid.max_deviation < 1e-8  # float64: far tighter than required
    unclipped = grid.clipped_fraction == 0
    assert unclipped.any()
    _, _, again = encode(flow, head, grid.images.reshape(-1, 3, 16, 16).double())
    again = again.reshape(6, 5).numpy()
    np.testing.assert_allclose(again[unclipped], np.broadcast_to(bins.values, (6, 5))[unclipped],
                               rtol=0, atol=1e-8)
    np.testing.assert_allclose(grid.original_logits, logits[:6].numpy(), rtol=0, atol=1e-12)
    assert WeightInterpolation is CounterfactualInterpolation


def test_images_in_unit_range_and_clipping_is_measured(tiny_model: Callable) -> None:
    flow, head, images, _ = tiny_model(torch.float64)
    _, _, logits = encode(flow, head, images)
    bins = logit_bins(logits * 40, 50, 99)  # far targets: pixels leave [0, 1]
    grid = CounterfactualInterpolation(flow, head, bins)(images[:4])
    assert grid.images.min() >= 0 and grid.images.max() <= 1
    # independent measurement of the clipped fraction: invert by hand
    h, zs, _ = encode(flow, head, images[:4])
    w = head.fc.weight[0]
    for t, target in enumerate(bins.values):
        step = (target - head(h)) / (w @ w)
        raw = flow.inverse(h + (step[:, None] * w).reshape(h.shape), zs, 0, head.after_layer + 1)
        outside = ((raw < 0) | (raw > 1)).flatten(1).double().mean(1).numpy()
        np.testing.assert_allclose(grid.clipped_fraction[:, t], outside, rtol=0, atol=1e-12)
    assert grid.clipped_fraction[:, [0, 4]].max() > 0


def test_select_rows_covers_the_bins_and_never_repeats() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=200)
    bins = logit_bins(logits)
    rows = select_rows(logits, bins, 10, seed=0)
    assert len(set(rows.tolist())) == 10
    assert np.all(np.diff(logits[rows]) >= 0)  # ordered by logit
    np.testing.assert_array_equal(np.bincount(bins.assign(logits[rows]), minlength=5), [2] * 5)
    np.testing.assert_array_equal(rows, select_rows(logits, bins, 10, seed=0))
    # more rows than one bin holds: the rest come from other bins, still no repeats
    few = np.array([-5.0, -4.0, -0.1, 0.0, 0.1, 0.2, 0.3, 4.0, 5.0, 6.0])
    rows = select_rows(few, logit_bins(few), 10, seed=1)
    assert sorted(rows.tolist()) == list(range(10))


def test_save_writes_png_and_json(tiny_model: Callable, tmp_path: Path) -> None:
    flow, head, images, _ = tiny_model(torch.float32)
    _, _, logits = encode(flow, head, images)
    grid = CounterfactualInterpolation(flow, head, logit_bins(logits, 50, 80))(
        images[:2], image_ids=["a", "b"])
    paths = grid.save(tmp_path)
    record = json.loads(paths["json"].read_text())
    assert [row["image_id"] for row in record["rows"]] == ["a", "b"]
    assert record["max_abs_logit_deviation"] == grid.max_deviation
    for row, measured in zip(record["rows"], grid.logits, strict=True):
        np.testing.assert_allclose(row["logits"], measured)
        np.testing.assert_allclose(row["deviation"], np.abs(measured - grid.targets))
    assert paths["png"].stat().st_size > 1000


def test_full_precision_turns_tf32_off_and_restores_the_settings() -> None:
    from dubfiv.explain.precision import full_precision

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    try:
        with full_precision():
            assert not torch.backends.cudnn.allow_tf32
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
