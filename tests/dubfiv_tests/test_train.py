"""Training on a fake Two4Two dataset: learning, run directory, resume, NaN stop, checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dubfiv import config as cfg
from dubfiv import data as D
from dubfiv import losses
from dubfiv.testing import tiny_experiment, write_fake_two4two
from dubfiv.train import (
    CHECKPOINT,
    EXPERIMENT,
    InverseCheckError,
    NonFiniteLossError,
    Trainer,
    TrainingError,
    load_checkpoint,
    resume,
    train,
)
from dubfiv.train.distributed import DistContext
from dubfiv.train.model import FlowWithHeads, build_model


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("datasets")
    write_fake_two4two(base / "fake", {"train": 96, "validation": 64}, image_size=16, seed=1)
    return base


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def _run(config: cfg.ExperimentConfig, out: Path, **kwargs: object) -> Path:
    return train(config, out, device="cpu", progress=False, **kwargs)  # type: ignore[arg-type]


def test_training_lowers_bits_per_dim_and_beats_chance(datasets: Path, tmp_path: Path) -> None:
    config = tiny_experiment(datasets, n_train_samples=1600, val_every_samples=0,
                             checkpoint_every_samples=0, sample_every_samples=0)
    trainer = Trainer(config, DistContext(), None, progress=False)
    trainer.initialize()
    before = trainer.validate()
    trainer.fit()
    after = trainer.history["validation"][-1]
    assert after["samples"] == 1600 and after["n"] == 64
    # a clear drop in bits/dim (dequantised 8-bit images: uniform would be 8)
    assert after["bits_per_dim"] < before["bits_per_dim"] - 0.3
    # 64 validation images: P(accuracy >= 0.8 | chance) = P(Bin(64, 0.5) >= 52) < 1e-6
    assert after["head_0_accuracy"] >= 0.8
    train_records = trainer.history["train"]
    assert train_records[-1]["bits_per_dim"] < train_records[0]["bits_per_dim"]


def test_run_directory_layout(datasets: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "exp.toml"
    config = tiny_experiment(datasets)
    cfg.save_experiment(config, config_file)
    run_dir = _run(config, tmp_path / "runs", config_files=[config_file])
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("tiny_")
    assert (run_dir / "exp.toml").read_text() == config_file.read_text()
    assert cfg.load_experiment(run_dir / EXPERIMENT) == config
    log = (run_dir / "train.log").read_text()
    assert "inverse check passed" in log and "validation at 400 samples" in log
    images = sorted(p.name for p in (run_dir / "images").iterdir())
    assert {"training_images.png", "loss_curves.png", "samples_0000000400.png"} <= set(images)
    assert not list((run_dir / "models").glob(".*tmp"))
    state = torch.load(run_dir / CHECKPOINT, weights_only=True)  # plain data only
    for key in ("model_state", "classifiers", "optimizer", "history", "image_sampler",
                "experiment", "output_dir"):
        assert key in state, key
    assert state["classifiers"][0]["fc.weight"].shape == (1, 384)
    assert state["samples_seen"] == 400 and state["output_dir"] == str(run_dir)
    assert cfg.from_dict(cfg.ExperimentConfig, state["experiment"]) == config
    assert [r["samples"] for r in state["history"]["validation"]] == [200, 400]
    assert state["history"]["checkpoints"] == [0, 200, 400]  # the start checkpoint first


def _compare_states(a: dict, b: dict) -> None:
    for key in ("model_state",):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), name
    for ha, hb in zip(a["classifiers"], b["classifiers"], strict=True):
        for name in ha:
            assert torch.equal(ha[name], hb[name])
    for oa, ob in ((a["optimizer"], b["optimizer"]),
                   (a["classifier_optimizers"][0], b["classifier_optimizers"][0])):
        assert oa["param_groups"] == ob["param_groups"]
        for index, sa in oa["state"].items():
            for name, value in sa.items():
                other = ob["state"][index][name]
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(other))
    assert a["history"]["train"] == b["history"]["train"]
    assert a["history"]["validation"] == b["history"]["validation"]


def test_resume_equals_uninterrupted(datasets: Path, tmp_path: Path) -> None:
    # 50 steps; log every step; validation/checkpoints every 120 samples (not at the stop)
    config = tiny_experiment(datasets, n_train_samples=400, val_every_samples=120,
                             checkpoint_every_samples=120, sample_every_samples=0)
    full = _run(config, tmp_path / "full")
    part = _run(config, tmp_path / "part", stop_after_samples=176)
    stopped = load_checkpoint(part / CHECKPOINT)
    assert stopped["samples_seen"] == 176 and stopped["step"] == 22
    assert resume(part, device="cpu", progress=False) == part
    a, b = load_checkpoint(full / CHECKPOINT), load_checkpoint(part / CHECKPOINT)
    assert a["samples_seen"] == b["samples_seen"] == 400
    _compare_states(a, b)
    assert "resumed from" in (part / "train.log").read_text()
    # resuming a finished run is a no-op
    resume(part, device="cpu", progress=False)
    _compare_states(b, load_checkpoint(part / CHECKPOINT))


def test_non_finite_loss_stops_and_keeps_last_checkpoint(
    datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_experiment(datasets, n_train_samples=400, val_every_samples=0,
                             checkpoint_every_samples=80, sample_every_samples=0)
    real = losses.bits_per_dim
    calls = {"n": 0}

    def poisoned(*args: object, **kwargs: object) -> torch.Tensor:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] > 25:  # training step 25 (0-based) goes wrong
                return out * float("nan")
        return out

    monkeypatch.setattr(losses, "bits_per_dim", poisoned)
    with pytest.raises(NonFiniteLossError) as info:
        _run(config, tmp_path / "runs")
    message = str(info.value)
    assert "step 25" in message and "200 samples" in message and "160 samples" in message
    assert info.value.step == 25
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = load_checkpoint(run_dir / CHECKPOINT)
    assert state["samples_seen"] == 160
    assert all(torch.isfinite(v).all() for v in state["model_state"].values())
    assert "non-finite loss" in (run_dir / "train.log").read_text()
    assert not list((run_dir / "models").glob(".*tmp"))


def test_inverse_check_names_the_broken_layer(datasets: Path) -> None:
    trainer = Trainer(tiny_experiment(datasets), DistContext(), None, progress=False)
    layer = trainer.module.flow.layers[5]
    monkey_inverse = layer.inverse
    layer.inverse = lambda y: monkey_inverse(y) + 0.1  # type: ignore[method-assign]
    with pytest.raises(InverseCheckError, match=r"first layer that does not invert is 5 \(Inv"):
        trainer.initialize()


def _grads(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                      for p in module.parameters()])


@pytest.mark.parametrize("backprop", [True, False])
def test_head_gradients(datasets: Path, backprop: bool) -> None:
    """The head loss reaches the flow iff ``backpropagate_loss``; the head always learns."""
    base = tiny_experiment(datasets)
    head_config = dataclasses.replace(base.classifiers[0], backpropagate_loss=backprop)
    torch.manual_seed(0)
    module = build_model(dataclasses.replace(base, classifiers=[head_config])).double()
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    module.flow.data_init(x)
    # independent: autograd on the explicit objective
    module.zero_grad()
    out = module.flow(x, capture=(13,))
    bpd = losses.bits_per_dim(out.h, out.zs, out.logdet, 3 * 16 * 16)
    logits = module.heads[0](out.activations[13] if backprop else out.activations[13].detach())
    (bpd.mean() + 0.3 * logits.square().mean()).backward()
    flow_expected, head_expected = _grads(module.flow), _grads(module.heads)
    module.zero_grad()
    bpd, logits = module(x)
    assert logits.dtype == torch.float64
    (bpd.mean() + 0.3 * logits.square().mean()).backward()
    assert torch.equal(_grads(module.flow), flow_expected)
    assert torch.equal(_grads(module.heads), head_expected) and head_expected.abs().sum() > 0
    module.zero_grad()
    bpd, _ = module(x)
    bpd.mean().backward()
    assert torch.equal(_grads(module.flow), flow_expected) != backprop
    assert isinstance(module, FlowWithHeads)


def test_step_loss_matches_an_independent_computation(datasets: Path) -> None:
    config = tiny_experiment(datasets)
    trainer = Trainer(config, DistContext(), None, progress=False)
    trainer.initialize()
    images, labels = next(iter(D.train_loader(trainer.train_data, 8, config.train.seed, 3, 4)))
    # independent: float64 copy of the model, noise and label noise drawn by hand
    model = build_model(config).double()
    model.load_state_dict(trainer.module.state_dict())
    gen = torch.Generator().manual_seed(D.step_seed(config.train.seed, 3, D.STREAM_DEQUANTIZE))
    x = images.double() / 255 + torch.rand(images.shape, generator=gen).double() / 256
    gen = torch.Generator().manual_seed(D.step_seed(config.train.seed, 3, D.STREAM_LABEL_NOISE, 0))
    u, bits = torch.rand(8, generator=gen), torch.randint(0, 2, (8,), generator=gen).double()
    y = torch.where(u < 0.1, bits, labels[:, 0].double())
    with torch.no_grad():
        bpd, logits = model(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y)
    expected = bpd.mean() + 0.1 * bce
    stats = trainer.train_step(3, images, labels)
    assert float(stats[0] / stats[2]) == pytest.approx(float(expected), rel=1e-5)
    assert float(stats[1] / stats[2]) == pytest.approx(float(bpd.mean()), rel=1e-5)


def test_amp_on_cpu_trains_with_bfloat16(datasets: Path, tmp_path: Path) -> None:
    config = tiny_experiment(datasets, n_train_samples=64, val_every_samples=0,
                             checkpoint_every_samples=0, sample_every_samples=0)
    trainer = Trainer(config, DistContext(), None, amp=True, progress=False)
    assert trainer.amp_dtype == torch.bfloat16 and trainer.scaler is None
    trainer.initialize()
    record = trainer.fit()
    assert record["samples"] == 64 and 0 < record["bits_per_dim"] < 20


def test_setup_errors(datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(D.DatasetError, match="not found"):
        _run(tiny_experiment(tmp_path / "nothing"), tmp_path / "runs")
    with pytest.raises(D.DatasetError, match="model expects"):
        _run(tiny_experiment(datasets, image_size=32), tmp_path / "runs")
    with pytest.raises(TrainingError, match="less than one batch"):
        _run(tiny_experiment(datasets, n_train_samples=4), tmp_path / "runs")
    with pytest.raises(ValueError, match="divisible"):
        Trainer(tiny_experiment(datasets, batch_size=7), DistContext(world_size=2), None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(TrainingError, match="pip install tensorboard"):
        _run(tiny_experiment(datasets, logger="tensorboard"), tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_small_config_learns_on_rendered_two4two(small_run: Path) -> None:
    """The small config's full budget on the rendered small Two4Two dataset (the shared run
    fixture): bits/dim falls by more than half a bit and the head beats chance on the
    validation split (>= 0.6 on 150 images; P(>= 0.6 | p = 0.5) is about 0.009)."""
    from dubfiv.runs import load_run

    history = load_run(small_run, device="cpu").history
    first = history["train"][0]["bits_per_dim"]
    last = history["validation"][-1]
    assert last["bits_per_dim"] < first - 0.5
    assert last["head_0_accuracy"] >= 0.6


def test_adam_is_fused_and_steps_as_torch_adam_does() -> None:
    """make_optimizer's Adam is the fused kernel where torch has one, and its steps are
    those of the plain torch.optim.Adam (float64, with weight decay)."""
    from dubfiv.config import OptimizerConfig
    from dubfiv.train.model import make_optimizer

    config = OptimizerConfig(lr=0.01, weight_decay=0.1, betas=[0.8, 0.99])
    torch.manual_seed(0)
    ours = torch.nn.Parameter(torch.randn(64, dtype=torch.float64))
    plain = torch.nn.Parameter(ours.detach().clone())
    start = ours.detach().clone()
    optimizers = [(ours, make_optimizer([ours], config)),
                  (plain, torch.optim.Adam([plain], lr=0.01, betas=(0.8, 0.99),
                                           weight_decay=0.1))]
    assert optimizers[0][1].param_groups[0]["fused"]
    for _ in range(25):
        for param, optimizer in optimizers:
            optimizer.zero_grad()
            (param.square().sum() + param.sin().sum()).backward()
            optimizer.step()
    torch.testing.assert_close(ours, plain, rtol=0, atol=1e-12)
    assert (ours - start).abs().min() > 1e-3  # every parameter moved
