"""The logit-binned baseline grid: cells in their bins, no repeats, seeded, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dubfiv.explain.baseline import Baseline, BinTooSmallError, draw_binned_grid
from dubfiv.explain.bins import logit_bins


def _sample(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, size=n)
    labels = (logits + rng.normal(0, 1, size=n) > 0).astype(np.float32)
    return logits, labels


def test_cells_lie_in_their_bins_and_never_repeat() -> None:
    logits, labels = _sample()
    bins = logit_bins(logits)
    grid = Baseline.draw(logits, labels, bins, n_rows=12, seed=3,
                         indices=np.arange(1000, 1300), image_ids=[f"id{i}" for i in range(300)])
    assert grid.shape == (12, 5)
    for r in range(12):
        for k in range(5):
            assert bins.edges[k] <= grid.logits[r, k] < bins.edges[k + 1]
            p = grid.positions[r, k]
            assert grid.logits[r, k] == logits[p] and grid.labels[r, k] == labels[p]
            assert grid.indices[r, k] == 1000 + p and grid.image_ids[r][k] == f"id{p}"
    assert len(np.unique(grid.positions)) == grid.positions.size


def test_draw_is_seeded() -> None:
    logits, _ = _sample()
    bins = logit_bins(logits)
    a = draw_binned_grid(logits, bins, 10, seed=1)
    np.testing.assert_array_equal(a, draw_binned_grid(logits, bins, 10, seed=1))
    assert not np.array_equal(a, draw_binned_grid(logits, bins, 10, seed=2))


def test_too_few_images_in_a_bin_is_a_clear_error() -> None:
    logits, _ = _sample(n=40)
    bins = logit_bins(logits)
    counts = np.bincount(bins.assign(logits), minlength=5)
    with pytest.raises(BinTooSmallError, match="fewer rows or more images"):
        draw_binned_grid(logits, bins, int(counts.min()) + 1, seed=0)
    draw_binned_grid(logits, bins, int(counts.min()), seed=0)  # exactly enough: fine


def test_save_writes_png_and_a_json_record_of_every_cell(tmp_path: Path) -> None:
    logits, labels = _sample()
    grid = Baseline.draw(logits, labels, logit_bins(logits), n_rows=3, seed=0)
    grid.images = torch.rand(3, 5, 3, 16, 16)
    paths = grid.save(tmp_path / "out")
    record = json.loads(paths["json"].read_text())
    assert record["bins"]["values"] == pytest.approx(grid.bins.values.tolist())
    cells = [cell for row in record["cells"] for cell in row]
    assert len(cells) == 15
    assert {(c["row"], c["bin"]) for c in cells} == {(r, k) for r in range(3) for k in range(5)}
    for c in cells:
        assert c["logit"] == pytest.approx(logits[c["position"]])
        assert c["label"] == labels[c["position"]]
    with Image.open(paths["png"]) as image:
        assert image.size[0] > 200 and image.size[1] > 100
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp
