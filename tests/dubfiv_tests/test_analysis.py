"""``Analysis`` on a tiny trained run: loading, the on-disk cache, the summary, errors.

The integration test on the shared small run is ``tests/test_notebook.py`` (it runs the
example notebook and checks what it wrote, sharing one pass over the data).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dubfiv.analysis import Analysis, AnalysisError, latest_run
from dubfiv.explain import cache as split_cache
from dubfiv.explain.counterfactual import encode
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import CHECKPOINT, train


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tiny experiment on a fake dataset (seconds to train)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("tiny")
    write_fake_two4two(base / "fake", {"train": 32, "validation": 40, "test": 24}, image_size=16)
    config = tiny_experiment(base, n_train_samples=80, val_every_samples=0,
                             checkpoint_every_samples=0, sample_every_samples=0)
    return train(config, base / "out", device="cpu", progress=False)


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the split of every call to the compute function of the cache."""
    calls: list[str] = []
    original = split_cache.compute_split_data

    def counting(*args: Any, **kwargs: Any) -> split_cache.SplitData:
        result = original(*args, **kwargs)
        calls.append(result.split)
        return result

    monkeypatch.setattr(split_cache, "compute_split_data", counting)
    return calls


def _load(run_dir: Path, **kwargs: Any) -> Analysis:
    return Analysis.from_checkpoint(run_dir, device="cpu", progress=False,
                                    output_dir=run_dir / "explanations", **kwargs)


def test_cache_is_reused_and_rebuilt_when_the_checkpoint_changes(
    run_copy: Path, counter: list[str]
) -> None:
    first = _load(run_copy)
    assert sorted(counter) == ["test", "validation"]
    assert first.cache_reused == {"validation": False, "test": False}
    assert len(first.treatment) == 40 and len(first.task) == 24

    second = _load(run_copy)
    assert len(counter) == 2  # nothing recomputed
    assert second.cache_reused == {"validation": True, "test": True}
    for split in ("validation", "test"):
        a, b = first.data[split], second.data[split]
        np.testing.assert_array_equal(a.activations, b.activations)
        np.testing.assert_array_equal(a.logits, b.logits)
        np.testing.assert_array_equal(a.indices, b.indices)
        assert a.image_ids == b.image_ids

    # a checkpoint with another head bias: recomputed, logits shift by exactly that much
    state = torch.load(run_copy / CHECKPOINT, weights_only=True)
    state["classifiers"][0]["fc.bias"] += 1.5
    torch.save(state, run_copy / CHECKPOINT)
    third = _load(run_copy)
    assert len(counter) == 4 and third.cache_reused == {"validation": False, "test": False}
    np.testing.assert_allclose(third.treatment.logits, first.treatment.logits + 1.5, atol=1e-5)
    np.testing.assert_array_equal(third.treatment.activations, first.treatment.activations)
    # other request parameters have their own cache entry
    _load(run_copy, n_samples=10, seed=1)
    assert len(counter) == 6
    assert len(list((run_copy / "analysis_cache").glob("*.npz"))) == 4


def test_corrupt_cache_is_recomputed(run_copy: Path, counter: list[str]) -> None:
    _load(run_copy)
    for path in (run_copy / "analysis_cache").glob("*.npz"):
        path.write_bytes(b"not an npz")
    again = _load(run_copy)
    assert len(counter) == 4 and not any(again.cache_reused.values())


def test_fingerprint_sees_content_changes_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "models.torch"
    payload = bytearray(np.random.default_rng(0).bytes(3 << 20))
    path.write_bytes(payload)
    stat = path.stat()
    before = split_cache.checkpoint_fingerprint(path)
    payload[-10] ^= 0xFF  # last MiB
    path.write_bytes(payload)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert split_cache.checkpoint_fingerprint(path) != before
    payload[-10] ^= 0xFF
    path.write_bytes(payload)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert split_cache.checkpoint_fingerprint(path) == before
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: invalid
    assert split_cache.checkpoint_fingerprint(path) != before


def test_sample_is_deterministic_and_without_repeats() -> None:
    a = split_cache.sample_indices(1000, 300, seed=4)
    np.testing.assert_array_equal(a, split_cache.sample_indices(1000, 300, seed=4))
    assert len(np.unique(a)) == 300 and np.all(np.diff(a) > 0) and a.max() < 1000
    assert not np.array_equal(a, split_cache.sample_indices(1000, 300, seed=5))
    np.testing.assert_array_equal(split_cache.sample_indices(50, 300, seed=4), np.arange(50))


def test_data_summary_and_encode_agree_with_the_model(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    analysis = _load(run_copy, n_samples=16)
    data = analysis.treatment
    assert len(data) == 16
    images = analysis.images("treatment", data.indices)
    assert images.shape == (16, 3, 16, 16) and 0 <= images.min() and images.max() <= 1
    h, zs, logits = encode(analysis.flow, analysis.head, images)
    np.testing.assert_allclose(data.activations, h.flatten(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(data.logits, logits.numpy(), atol=1e-6)
    h2, zs2, logits2 = analysis.encode("validation", np.arange(3))
    torch.testing.assert_close(h2, h[:3])
    torch.testing.assert_close(logits2, logits[:3])
    assert set(zs2) == set(zs) == {7}

    labels = np.array([analysis.open("validation")[int(i)][1][0] for i in data.indices])
    np.testing.assert_array_equal(data.labels, labels)
    summary = analysis.summary()
    printed = capsys.readouterr().out
    assert summary["splits"]["validation"]["accuracy"] == pytest.approx(
        np.mean((data.logits > 0) == (labels > 0.5)))
    assert summary["n_layers"] == len(analysis.flow) == 17
    assert summary["head"]["after_layer"] == 13 and summary["head"]["in_features"] == 384
    assert summary["n_parameters_flow"] == sum(p.numel() for p in analysis.flow.parameters())
    assert summary["bins"]["baseline"]["values"] == pytest.approx(
        analysis.bins().values.tolist())
    assert "accuracy" in printed and "after layer 13" in printed and "P50/P90" in printed


def test_image_records_are_the_sample_with_its_scene_and_bin(run_copy: Path) -> None:
    """The finished records the study material asks for: the sample's logit and label,
    the dataset's scene parameters, the class names, and the logit's bin."""
    analysis = _load(run_copy, n_samples=16)
    data, bins = analysis.treatment, analysis.bins()
    dataset = analysis.open("validation")
    for position in (0, 7, 15):
        record = analysis.sample_record("treatment", position, bins)
        index = int(data.indices[position])
        assert record["split"] == "validation" and record["position"] == position
        assert record["index"] == index and record["image_id"] == data.image_ids[position]
        assert record["logit"] == pytest.approx(float(data.logits[position]))
        assert record["label"] == float(dataset[index][1][0])
        assert record["label_name"] == ("stretchy" if record["label"] == 1.0 else "peaky")
        assert record["model_prediction"] == ("stretchy" if record["logit"] > 0 else "peaky")
        scene = dataset.params[index].state_dict()
        assert record["scene"]["id"] == scene["id"] == record["image_id"]
        assert not any(k.startswith("_") for k in record["scene"])
        k = int(np.searchsorted(bins.edges[1:-1], record["logit"], side="right"))
        assert record["bin"] == k and record["bin_value"] == float(bins.values[k])
        low, high = record["bin_range"]
        assert (low == "-inf" or low <= record["logit"]) and (high == "inf"
                                                              or record["logit"] < high)
    assert "bin" not in analysis.image_record("validation", 0, "x", -1.0, 0.0)
    assert json.loads(json.dumps(record)) == record  # JSON-ready as it is


def test_missing_dataset_and_bad_head_are_clear_errors(run_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="`dataset_dir`"):
        _load(run_copy, dataset_dir=tmp_path / "nowhere")
    with pytest.raises(AnalysisError, match="head 3"):
        _load(run_copy, head=3)
    with pytest.raises(AnalysisError, match="no run directories"):
        latest_run(tmp_path / "empty")
    assert latest_run(run_copy.parent) == run_copy
