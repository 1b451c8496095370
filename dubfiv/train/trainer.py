"""The training loop: init, steps, validation, samples, checkpoints, resume.

Loss per step (``docs/flow.md``): mean bits/dim of the dequantised batch plus, for
each head, ``loss_weight * BCE(logits, noisy labels)``, one backward pass (so a
head's parameters, too, get ``loss_weight`` times its BCE gradient: with the
paper's weight 1e-4 and head SGD lr 0.1 the head's effective step is 1e-5).
The flow has its own optimiser (``train.optimizer``), each head its own
(``classifiers[i].optimizer``);
learning rates follow the schedules of :mod:`dubfiv.schedules` as functions of
the samples seen before the step.

The checkpoint ``models/models.torch`` is a dict with the released layout's keys
``model_state``, ``classifiers`` (head state dicts), ``optimizer`` (the flow's),
``history``, ``image_sampler`` (fixed validation images), ``experiment`` (the
config as a plain dict) and ``output_dir``, plus what resuming needs:
``classifier_optimizers``, ``grad_scaler``, ``step``, ``samples_seen`` and
``pending`` (the partial history record). All randomness of a step is a
function of ``(seed, step)`` (:mod:`dubfiv.data`), so no RNG state is needed.

Checkpoints: at step 0 (after the init and the inverse check), every
``checkpoint_every_samples`` and ``checkpoint_every_minutes``, on a stop signal
(:mod:`dubfiv.train.signals`; the step's all-reduce carries it, so all processes
stop at the same step) and at the end.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from time import monotonic
from typing import Any

import torch
from tqdm import tqdm

from dubfiv import data as D
from dubfiv.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from dubfiv.config import ExperimentConfig, to_dict, validate
from dubfiv.losses import head_bce
from dubfiv.rundir import CHECKPOINT, IMAGES
from dubfiv.schedules import set_learning_rate
from dubfiv.train import distributed as dist_utils
from dubfiv.train.distributed import DistContext
from dubfiv.train.errors import (
    CheckpointWriteError,
    InverseCheckError,
    NonFiniteLossError,
    TrainingError,
    TrainingStopped,
)
from dubfiv.train.evaluate import evaluation_sums, sums_to_record
from dubfiv.train.loggers import ExperimentLogger
from dubfiv.train.model import build_model, check_inverse, make_optimizer
from dubfiv.train.plots import plot_history, save_image_grid
from dubfiv.train.signals import Control, StopSignals, signal_name

__all__ = ["CHECKPOINT_FORMAT", "INVERSE_TOLERANCE", "Trainer"]

INVERSE_TOLERANCE = 1e-3
"""Largest ``|x - inverse(forward(x))|`` accepted before training (images in [0, 1])."""
N_DISPLAY = 16


def _crossed(before: int, after: int, every: int) -> bool:
    return every > 0 and after // every > before // every


class Trainer:
    """Trains one experiment in one process of a (possibly distributed) run.

    Args:
        config: the experiment.
        context: this process's rank, world size and device.
        run_dir: the run directory (``None`` on processes other than rank 0: they write nothing).
        amp: mixed precision (see :meth:`_amp_dtype`).
        log: the run's logger; ``experiment_logger`` receives the scalars.
        progress: show a tqdm bar (rank 0 only).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        context: DistContext,
        run_dir: Path | None,
        amp: bool = False,
        log: logging.Logger | None = None,
        experiment_logger: ExperimentLogger | None = None,
        progress: bool = True,
    ) -> None:
        self.config, self.ctx, self.run_dir = config, context, run_dir
        self.log = log or logging.getLogger("dubfiv.train")
        self.experiment_logger = experiment_logger or ExperimentLogger()
        self.progress = progress
        validate(config)
        tc = config.train
        self.part = D.rank_slice(tc.batch_size, context.rank, context.world_size)
        self.n_steps = tc.n_train_samples // tc.batch_size
        if self.n_steps < 1:
            raise TrainingError(
                f"train.n_train_samples = {tc.n_train_samples} is less than one batch "
                f"(train.batch_size = {tc.batch_size})."
            )
        self.label_names = list(dict.fromkeys(c.label for c in config.classifiers)) or ["obj_name"]
        self.label_index = [self.label_names.index(c.label) for c in config.classifiers]
        self.input_shape = (config.model.in_channels, config.model.image_size,
                            config.model.image_size)
        self.train_data = D.open_split(tc.dataset_dir, tc.dataset, "train", self.label_names)
        self.val_data = D.open_split(tc.dataset_dir, tc.dataset, "validation", self.label_names)
        for split, name in ((self.train_data, "train"), (self.val_data, "validation")):
            D.check_image_shape(split, self.input_shape,
                                str(D.split_dir(tc.dataset_dir, tc.dataset, name)))
        torch.manual_seed(tc.seed)
        self.module = build_model(config).to(context.device)
        self.ddp: torch.nn.Module | None = None
        self.flow_optimizer = make_optimizer(self.module.flow.parameters(), tc.optimizer)
        self.head_optimizers = [make_optimizer(h.parameters(), c.optimizer)
                                for h, c in zip(self.module.heads, config.classifiers, strict=True)]
        self.amp_dtype = self._amp_dtype(amp)
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None)
        self.step = 0
        self.history: dict[str, Any] = {"train": [], "validation": [], "checkpoints": [],
                                        "train_seconds": 0.0}
        self.pending = torch.zeros(self._n_stats(), dtype=torch.float64)
        self.pending_steps = 0
        self.log_every = max(1, self.n_steps // 500)
        self.signals = StopSignals()
        self.control = Control()
        self._last_written = {"validated": -1, "sampled": -1}  # steps of the last ones
        self._clock = self._last_checkpoint = monotonic()
        self._dirty = True  # state changed since the last checkpoint

    # ------------------------------------------------------------------ setup

    def _amp_dtype(self, amp: bool) -> torch.dtype | None:
        """``--amp``: bfloat16 autocast where supported (CPU, recent CUDA), else float16
        with gradient scaling; ``None`` without ``--amp``."""
        if not amp:
            return None
        if self.ctx.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.ctx.device.type, dtype=self.amp_dtype or torch.bfloat16,
                              enabled=self.amp_dtype is not None)

    def _n_stats(self) -> int:
        # loss*n, bpd sum, n, non-finite count, per head: bce*n, correct
        return 4 + 2 * len(self.config.classifiers)

    def _load_images(self, split: torch.utils.data.Dataset, indices: list[int]) -> tuple:
        items = [split[i] for i in indices]
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    def initialize(self) -> None:
        """Data-dependent ActNorm init on ``n_init_samples`` images, then the inverse check.

        Every process uses the same images (the start of epoch 0), so all start equal.
        """
        tc = self.config.train
        n = min(tc.n_init_samples, len(self.train_data))  # type: ignore[arg-type]
        order = D.epoch_permutation(tc.seed, 0, len(self.train_data))  # type: ignore[arg-type]
        images, _ = self._load_images(self.train_data, order[:max(n, 1)].tolist())
        x = D.to_unit(images)
        if tc.dequantize:
            x = D.dequantize(x, D.dequantization_noise(tc.seed, 0, x.shape, stream=D.STREAM_INIT))
        self.module.flow.data_init(x.to(self.ctx.device))
        self.log.info("data-dependent init on %d training images", x.shape[0])
        self.check_inverse(x[:8].to(self.ctx.device))

    def check_inverse(self, x: torch.Tensor) -> None:
        """Raise :class:`InverseCheckError` unless the flow inverts ``x`` to 1e-3."""
        error, layer = check_inverse(self.module.flow, x, INVERSE_TOLERANCE)
        if error <= INVERSE_TOLERANCE and math.isfinite(error):
            self.log.info("inverse check passed: max |x - inverse(forward(x))| = %.2e", error)
            return
        where = (f"; the first layer that does not invert is {layer} "
                 f"({type(self.module.flow.layers[layer]).__name__})" if layer is not None else "")
        raise InverseCheckError(
            f"the flow does not invert: max |x - inverse(forward(x))| = {error:.3g} > "
            f"{INVERSE_TOLERANCE:g} on the initialisation images{where}. Check the model "
            "config (model.layers) and the data (images in [0, 1])."
        )

    def wrap(self) -> None:
        """Wrap the module in DistributedDataParallel (syncs rank 0's state to all)."""
        self.ddp = dist_utils.wrap_ddp(self.module, self.ctx)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint (see the module docstring); plain containers and tensors only."""
        n = min(N_DISPLAY, len(self.val_data))  # type: ignore[arg-type]
        images, labels = self._load_images(self.val_data, list(range(n)))
        history = dict(self.history)
        history["train_seconds"] = self.history["train_seconds"] + monotonic() - self._clock
        return {
            "format": CHECKPOINT_FORMAT,
            "model_state": self.module.flow.state_dict(),
            "classifiers": [head.state_dict() for head in self.module.heads],
            "optimizer": self.flow_optimizer.state_dict(),
            "classifier_optimizers": [opt.state_dict() for opt in self.head_optimizers],
            "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "history": history,
            "image_sampler": {"images": images, "labels": labels,
                              "label_names": list(self.label_names)},
            "experiment": to_dict(self.config),
            "output_dir": str(self.run_dir) if self.run_dir is not None else None,
            "step": self.step,
            "samples_seen": self.step * self.config.train.batch_size,
            "pending": {"sums": self.pending.clone(), "steps": self.pending_steps},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint written by :meth:`state_dict` (to continue training)."""
        device = self.ctx.device
        self.module.flow.load_state_dict(state["model_state"])
        for head, head_state in zip(self.module.heads, state["classifiers"], strict=True):
            head.load_state_dict(head_state)
        self.module.to(device)
        self.flow_optimizer.load_state_dict(state["optimizer"])
        for opt, opt_state in zip(self.head_optimizers, state["classifier_optimizers"],
                                  strict=True):
            opt.load_state_dict(opt_state)
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        self.history = state["history"]
        self.step = int(state["step"])
        self.pending = state["pending"]["sums"].clone().to(torch.float64)
        self.pending_steps = int(state["pending"]["steps"])
        self._clock = self._last_checkpoint = monotonic()
        self._dirty = False

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT

    def write_checkpoint(self) -> None:
        """Atomically write the checkpoint (rank 0) after checking the processes agree.

        Raises:
            CheckpointWriteError: the write failed (full disk, read-only folder); the
                previous checkpoint is kept and no temporary file is left.
        """
        self._check_in_sync()
        if self.run_dir is not None:
            samples = self.step * self.config.train.batch_size
            self.history["checkpoints"].append(samples)
            try:
                save_checkpoint(self.state_dict(), self.run_dir / CHECKPOINT)
            except OSError as error:
                self.history["checkpoints"].pop()
                raise CheckpointWriteError.of(error, self.run_dir / CHECKPOINT, self.run_dir,
                                              self.history["checkpoints"][-1:]) from error
            self.log.info("checkpoint at %d samples: %s", samples, self.run_dir / CHECKPOINT)
        self._dirty = False
        self._last_checkpoint = monotonic()
        dist_utils.barrier(self.ctx)

    def _check_in_sync(self) -> None:
        if not self.ctx.distributed:
            return
        sums = torch.stack([p.detach().double().sum() for p in self.module.parameters()]).cpu()
        low, high = dist_utils.all_reduce_min_max(sums, self.ctx)
        if not torch.equal(low, high):
            raise TrainingError("the processes' parameters differ; the distributed run is broken.")
        self.log.info("parameters identical on all %d processes", self.ctx.world_size)

    # ------------------------------------------------------------------ steps

    def train_step(self, step: int, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimisation step on this process's part of global batch ``step``.

        Returns the statistics summed over all processes (float64, see :meth:`_n_stats`);
        the same all-reduce sets :attr:`control` (stop, checkpoint due).

        Raises:
            NonFiniteLossError: the loss is NaN or infinite on any process (no update made).
        """
        tc = self.config.train
        device = self.ctx.device
        x = D.to_unit(images).to(device, non_blocking=True)
        if tc.dequantize:
            noise = D.dequantization_noise(tc.seed, step, (tc.batch_size, *x.shape[1:]), self.part)
            x = D.dequantize(x, noise)
        labels = labels.to(device).float()
        with self._autocast():
            bpd, logits = (self.ddp or self.module)(x)
        bpd = bpd.float()
        loss = bpd.mean()
        bces, corrects = [], []
        for i, head in enumerate(self.config.classifiers):
            y = labels[:, self.label_index[i]]
            uniform, bits = D.label_noise_draws(tc.seed, step, tc.batch_size, i, self.part)
            bce = head_bce(logits[:, i].float(), D.apply_label_noise(y, head.label_noise,
                                                                     uniform, bits))
            loss = loss + head.loss_weight * bce
            bces.append(bce.detach() * x.shape[0])
            corrects.append(((logits[:, i].detach() > 0).float() == y).sum())
        samples = step * tc.batch_size
        set_learning_rate(self.flow_optimizer, tc.optimizer, samples, tc.n_train_samples)
        for opt, head in zip(self.head_optimizers, self.config.classifiers, strict=True):
            set_learning_rate(opt, head.optimizer, samples, tc.n_train_samples)
        optimizers = [self.flow_optimizer, *self.head_optimizers]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        n = torch.tensor(float(x.shape[0]), device=device)
        local = torch.stack([loss.detach() * n, bpd.detach().sum(), n,
                             (~torch.isfinite(loss.detach())).float(), *bces, *corrects])
        control = Control.local(self.signals.received, self._checkpoint_due())
        summed = dist_utils.all_reduce_sum(torch.cat([local.double().cpu(), control]), self.ctx)
        stats = summed[:self._n_stats()]
        self.control = Control.agreed(summed[self._n_stats():])
        if stats[3] > 0:
            raise self._non_finite(step, float(local[0] / n))
        if tc.max_grad_norm > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.flow_optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.flow.parameters(), tc.max_grad_norm)
        for opt in optimizers:
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
        if self.scaler is not None:
            self.scaler.update()
        return stats

    def _checkpoint_due(self) -> bool:
        """Rank 0: ``checkpoint_every_minutes`` have passed since the last checkpoint."""
        minutes = self.config.train.checkpoint_every_minutes
        return (self.ctx.is_main and minutes > 0
                and monotonic() - self._last_checkpoint >= minutes * 60.0)

    def _non_finite(self, step: int, value: float) -> NonFiniteLossError:
        samples = step * self.config.train.batch_size
        path = self.checkpoint_path
        if path is not None and path.is_file():
            kept = (f"the last good checkpoint {path} "
                    f"({self.history['checkpoints'][-1] if self.history['checkpoints'] else '?'}"
                    " samples) is kept")
        else:
            kept = "no checkpoint had been written yet"
        return NonFiniteLossError(
            f"non-finite loss ({value}) at step {step} ({samples} samples seen); training "
            f"stopped without saving this state and {kept}. Lower train.optimizer.lr or set "
            "train.max_grad_norm, and check the data.", step=step, samples=samples)

    def _record(self) -> dict[str, float]:
        sums, steps = self.pending, max(self.pending_steps, 1)
        n = max(float(sums[2]), 1.0)
        tc = self.config.train
        samples = self.step * tc.batch_size
        record = {"step": self.step, "samples": samples, "loss": float(sums[0]) / n,
                  "bits_per_dim": float(sums[1]) / n, "steps": steps,
                  "lr": self.flow_optimizer.param_groups[0]["lr"]}
        k = len(self.config.classifiers)
        for i in range(k):
            record[f"head_{i}_bce"] = float(sums[4 + i]) / n
            record[f"head_{i}_accuracy"] = float(sums[4 + k + i]) / n
            record[f"head_{i}_lr"] = self.head_optimizers[i].param_groups[0]["lr"]
        return record

    # ------------------------------------------------------------------ evaluation and images

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Bits/dim and head accuracy (clean labels) on ``n_val_samples`` validation images."""
        tc = self.config.train
        indices = D.eval_indices(len(self.val_data), tc.n_val_samples,  # type: ignore[arg-type]
                                 self.ctx.rank, self.ctx.world_size)
        sums = evaluation_sums(self.module, self.val_data, indices, tc, self.label_index,
                               self.ctx.device, tc.batch_size // self.ctx.world_size,
                               self._autocast)
        sums = dist_utils.all_reduce_sum(sums, self.ctx)
        record = {"step": self.step, "samples": self.step * tc.batch_size,
                  **sums_to_record(sums, len(self.config.classifiers))}
        self.history["validation"].append(record)
        self._dirty = True
        self.experiment_logger.log({f"validation/{key}": value for key, value in record.items()
                                    if key not in ("step", "samples")}, record["samples"])
        self.log.info("validation at %d samples: %s", record["samples"], _fmt(record))
        return record

    def write_samples(self) -> None:
        """Rank 0: a grid of generated images at ``sample_temperature``."""
        if self.run_dir is None:
            return
        tc = self.config.train
        generator = torch.Generator(device=self.ctx.device)
        generator.manual_seed(D.step_seed(tc.seed, self.step, D.STREAM_SAMPLES))
        images = self.module.flow.sample(N_DISPLAY, tc.sample_temperature, self.input_shape,
                                         generator=generator)
        samples = self.step * tc.batch_size
        save_image_grid(images, self.run_dir / IMAGES / f"samples_{samples:010d}.png")

    def write_plots(self) -> None:
        """Rank 0: loss curves as ``images/loss_curves.png``."""
        if self.run_dir is not None:
            plot_history(self.history, self.run_dir / IMAGES / "loss_curves.png",
                         len(self.config.classifiers))

    # ------------------------------------------------------------------ the loop

    def fit(self, stop_after_samples: int | None = None) -> dict[str, Any]:
        """Train to ``n_train_samples`` (or until ``stop_after_samples``, then checkpoint).

        Returns the last validation record (empty if the run stopped early).

        Raises:
            TrainingStopped: a stop signal arrived (:mod:`dubfiv.train.signals`); the
                checkpoint of the step it finished was written.
        """
        tc = self.config.train
        batch = tc.batch_size
        end_step = self.n_steps
        if stop_after_samples is not None:
            end_step = min(end_step, max(self.step, math.ceil(stop_after_samples / batch)))
        if self.step >= self.n_steps:
            self.log.info("already trained for %d samples; nothing to do", self.step * batch)
            return self.history["validation"][-1] if self.history["validation"] else {}
        if self.step == 0 and self._dirty:
            self.write_checkpoint()  # the start checkpoint: from here on a kill can resume
        loader = D.train_loader(self.train_data, batch, tc.seed, self.step, end_step,
                                self.ctx.rank, self.ctx.world_size, tc.num_workers,
                                pin_memory=self.ctx.device.type == "cuda")
        bar = tqdm(total=self.n_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self.ctx.is_main and self.progress), desc="training")
        self.log.info("training steps %d..%d of %d (batch %d, %d processes)", self.step,
                      end_step, self.n_steps, batch, self.ctx.world_size)
        self._last_written = {"validated": -1, "sampled": -1}
        self.control = Control()
        try:
            for images, labels in loader:
                if self.step == 0 and self.run_dir is not None:
                    save_image_grid(D.to_unit(images[:N_DISPLAY]),
                                    self.run_dir / IMAGES / "training_images.png")
                stats = self.train_step(self.step, images, labels)
                self._after_step(stats, bar)
                if self.control.stop and self.step < self.n_steps:
                    raise self._stopped()
        finally:
            bar.close()
        if self.step < self.n_steps:
            if self._dirty:
                self.write_checkpoint()
            self.log.info("stopped at %d samples; continue with --resume %s", self.step * batch,
                          self.run_dir)
            return {}
        return self._finish()

    def _after_step(self, stats: torch.Tensor, bar: tqdm) -> None:
        """Account step ``self.step`` (its summed ``stats``), then validate, sample and
        checkpoint where due."""
        tc = self.config.train
        before = self.step * tc.batch_size
        self.step += 1
        after = self.step * tc.batch_size
        self.pending += stats
        self.pending_steps += 1
        self._dirty = True
        if self.step % self.log_every == 0 or self.step == self.n_steps:
            record = self._record()
            self.history["train"].append(record)
            self.experiment_logger.log({f"train/{key}": value for key, value in record.items()
                                        if key not in ("step", "samples")}, after)
            self.pending.zero_()
            self.pending_steps = 0
        n = max(float(stats[2]), 1.0)
        postfix = {"loss": f"{float(stats[0]) / n:.3f}", "bpd": f"{float(stats[1]) / n:.3f}"}
        if self.config.classifiers:
            postfix["acc"] = f"{float(stats[4 + len(self.config.classifiers)]) / n:.2f}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
        if _crossed(before, after, tc.val_every_samples):
            self.validate()
            self._last_written["validated"] = self.step
            self.write_plots()
        if _crossed(before, after, tc.sample_every_samples) and self.ctx.is_main:
            self.write_samples()
            self._last_written["sampled"] = self.step
        stopping = self.control.stop and self.step < self.n_steps
        if (_crossed(before, after, tc.checkpoint_every_samples) or stopping
                or (self.control.checkpoint_due and self._dirty)):
            self.write_checkpoint()

    def _stopped(self) -> TrainingStopped:
        number = self.control.signal_number
        name = signal_name(number)
        samples = self.step * self.config.train.batch_size
        self.log.info("stopped by %s at %d samples; checkpoint written; continue with "
                      "dubfiv_train --resume %s", name, samples, self.run_dir)
        return TrainingStopped(
            f"stopped by {name} at {samples} samples; checkpoint written; continue with "
            f"`resume` {self.run_dir}", number, name, samples, self.run_dir)

    def _finish(self) -> dict[str, Any]:
        """After the last step: validate, sample, plot and checkpoint where not done yet."""
        tc = self.config.train
        done = self._last_written
        record = (self.validate() if done["validated"] != self.step
                  else self.history["validation"][-1])
        if tc.sample_every_samples > 0 and done["sampled"] != self.step and self.ctx.is_main:
            self.write_samples()
        self.write_plots()
        if self._dirty:
            self.write_checkpoint()
        self.log.info("finished: %s", _fmt(record))
        return record


def _fmt(record: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in record.items())
