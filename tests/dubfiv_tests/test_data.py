"""Data: splits on disk, deterministic resumable order, dequantisation and label noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dubfiv import data
from dubfiv.testing import write_fake_two4two


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("datasets")
    write_fake_two4two(base / "fake", {"train": 40, "validation": 10}, image_size=16, seed=3)
    return base


def test_open_split_items(fake_root: Path) -> None:
    split = data.open_split(fake_root, "fake", "train", ["obj_name"])
    assert len(split) == 40
    image, labels = split[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
    assert labels.shape == (1,)
    lines = (fake_root / "fake" / "train" / "parameters.jsonl").read_text().splitlines()
    import json

    names = [json.loads(line)["obj_name"] for line in lines]
    got = [int(split[i][1][0]) for i in range(len(split))]
    assert got == [{"peaky": 0, "stretchy": 1}[n] for n in names]
    data.check_image_shape(split, (3, 16, 16), "x")
    with pytest.raises(data.DatasetError, match="model expects"):
        data.check_image_shape(split, (3, 32, 32), "x")


def test_missing_split_names_the_path(fake_root: Path) -> None:
    with pytest.raises(data.DatasetError) as info:
        data.open_split(fake_root, "fake", "test", ["obj_name"])
    assert str(fake_root / "fake" / "test") in str(info.value)
    with pytest.raises(data.DatasetError, match="not found"):
        data.open_split(fake_root / "nowhere", "fake", "train", ["obj_name"])


def test_fake_dataset_class_is_linearly_visible(fake_root: Path) -> None:
    root = write_fake_two4two(fake_root / "big", {"train": 200}, image_size=16, seed=0)
    split = data.open_split(root.parent, "big", "train", ["obj_name"])
    x = torch.stack([split[i][0] for i in range(len(split))]).float()
    y = torch.stack([split[i][1][0] for i in range(len(split))])
    # brightness of the left half minus the right half separates the classes
    left, right = x[..., :8].mean(dim=(1, 2, 3)), x[..., 8:].mean(dim=(1, 2, 3))
    assert ((right > left).float() == y).float().mean() > 0.95


@pytest.mark.parametrize(("n", "batch"), [(10, 5), (10, 4), (7, 3), (3, 8)])
def test_global_batches_are_epoch_permutations(n: int, batch: int) -> None:
    steps = 4 * n
    got = torch.cat([data.global_batch_indices(9, k, batch, n) for k in range(steps)])
    # independent construction: concatenate the epoch permutations
    n_epochs = steps * batch // n + 1
    stream = torch.cat([data.epoch_permutation(9, e, n) for e in range(n_epochs)])
    assert torch.equal(got, stream[: steps * batch])
    for e in range(steps * batch // n):
        assert sorted(stream[e * n:(e + 1) * n].tolist()) == list(range(n))
    # different seeds, different orders; epochs differ from each other
    assert not torch.equal(data.epoch_permutation(9, 0, 50), data.epoch_permutation(10, 0, 50))
    assert not torch.equal(data.epoch_permutation(9, 0, 50), data.epoch_permutation(9, 1, 50))


def test_sampler_ranks_and_resume() -> None:
    full = list(data.StepBatchSampler(23, 6, seed=1, start_step=0, end_step=12))
    resumed = list(data.StepBatchSampler(23, 6, seed=1, start_step=5, end_step=12))
    assert resumed == full[5:]
    ranks = [list(data.StepBatchSampler(23, 6, 1, 0, 12, rank=r, world_size=3)) for r in range(3)]
    for k in range(12):
        assert ranks[0][k] + ranks[1][k] + ranks[2][k] == full[k]
    with pytest.raises(ValueError, match="divisible"):
        data.rank_slice(6, 0, 4)


def test_train_loader_is_deterministic(fake_root: Path) -> None:
    split = data.open_split(fake_root, "fake", "train", ["obj_name"])
    a = [b for b, _ in data.train_loader(split, 8, seed=2, start_step=0, end_step=7)]
    b = [b for b, _ in data.train_loader(split, 8, seed=2, start_step=3, end_step=7)]
    assert len(a) == 7 and all(x.shape == (8, 3, 16, 16) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a[3:], b, strict=True))


def test_dequantization_noise() -> None:
    shape = (6, 3, 4, 4)
    noise = data.dequantization_noise(0, 7, shape)
    assert noise.shape == shape and noise.min() >= 0 and noise.max() < 1 / 256
    assert torch.equal(noise, data.dequantization_noise(0, 7, shape))
    assert not torch.equal(noise, data.dequantization_noise(0, 8, shape))
    parts = [data.dequantization_noise(0, 7, shape, data.rank_slice(6, r, 2)) for r in range(2)]
    assert torch.equal(torch.cat(parts), noise)
    # roughly uniform: mean 1/512, variance (1/256)^2/12
    big = data.dequantization_noise(1, 0, (100_000,))
    assert big.mean().item() == pytest.approx(1 / 512, rel=0.02)
    assert big.var().item() == pytest.approx((1 / 256) ** 2 / 12, rel=0.03)
    x = torch.tensor([0, 128, 255], dtype=torch.uint8)
    assert torch.allclose(data.to_unit(x), torch.tensor([0.0, 128 / 255, 1.0]))
    assert torch.equal(data.dequantize(torch.zeros(3), torch.ones(3)), torch.ones(3))


def test_label_noise_rate() -> None:
    n, p = 100_000, 0.3
    uniform, bits = data.label_noise_draws(0, 0, n, head=0)
    labels = torch.zeros(n)
    noisy = data.apply_label_noise(labels, p, uniform, bits)
    # a label flips when it is replaced (p) and the random bit differs (1/2)
    rate = noisy.mean().item()
    sigma = np.sqrt(p / 2 * (1 - p / 2) / n)
    assert abs(rate - p / 2) < 5 * sigma
    assert torch.equal(data.apply_label_noise(labels, 0.0, uniform, bits), labels)
    other = data.label_noise_draws(0, 0, n, head=1)[0]
    assert not torch.equal(uniform, other)


def test_eval_indices() -> None:
    assert data.eval_indices(10, 0) == list(range(10))
    assert data.eval_indices(10, 4) == [0, 1, 2, 3]
    shards = [data.eval_indices(10, 7, r, 3) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(7))
