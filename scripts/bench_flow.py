#!/usr/bin/env python
"""Benchmark the invertible network: training throughput, peak memory, inversion time.

For each model (the small CPU config and the paper's config at 128x128) it prints
forward+backward samples/s (bits/dim loss, train mode; also the process CPU
seconds per step, which is less sensitive to other load), the peak memory of that
loop, and the time of one full inversion (eval mode, no gradients; the first call
computes and caches the 1x1 convs' inverses, the second reuses them). Each model
runs in a fresh subprocess so that peak memory (CUDA: max allocated; CPU: peak
resident set size of the process) is its own.

With ``--profile`` a step is a whole training step (forward, bits/dim, backward
and an Adam step, as the trainer takes it) and the worker times it twice over,
alternating step by step in one process: "before" with the flow's training
shortcuts off (``SequentialFlow.fold_actnorm = False``,
``CouplingNet.channels_last_min_pixels = 0``: every layer as written, in the default
memory layout) and "after" with the code's defaults. From ``torch.profiler`` it
reports the share of a step spent outside the convolutions: the time of the
outermost operators whose name contains ``conv`` (``aten::convolution`` and
``ConvolutionBackward0`` with everything they call) is the convolution time; the
rest of the step (elementwise passes, 1x1 convs applied as matrix products,
concatenations, log-determinants, the optimiser, Python) is the non-convolution
time. The table gives both per step and the ratio of the non-convolution time
before / after. ``--adam`` picks the optimiser of the step: ``fused`` (one kernel
for all parameters, what the trainer builds where torch has it) or torch's
``default`` (one loop per parameter).

Examples::

    python scripts/bench_flow.py                       # both models, eager, CPU
    python scripts/bench_flow.py --models small --compile layers
    python scripts/bench_flow.py --device cuda         # batch 40 for the paper model
    python scripts/bench_flow.py --invconv-mode weight # the 1x1 convs without the
                                                       # factored path (for before/after)
    python scripts/bench_flow.py --profile --threads 2 --steps 10
    python scripts/bench_flow.py --profile --models paper --blocks 4  # shallower paper model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from dubfiv import config as cfg
from dubfiv.flow import CouplingNet, InvConv1x1, SequentialFlow, build_flow
from dubfiv.losses import bits_per_dim

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"small": ROOT / "config" / "small_model.toml", "paper": ROOT / "config" / "model.toml"}


class BenchError(Exception):
    """A user error (missing config, no CUDA, ...)."""


def load_model(name: str, blocks: int = 0) -> cfg.ModelConfig:
    """The model of config ``name``; ``blocks > 0`` sets every group's ``n_blocks``."""
    path = CONFIGS[name]
    if not path.exists():
        raise BenchError(f"{path} not found; run from a checkout that has config/*.toml")
    model = cfg.load_experiment(path).model
    if blocks > 0:
        layers = [dataclasses.replace(layer, n_blocks=blocks) if hasattr(layer, "n_blocks")
                  else layer for layer in model.layers]
        model = dataclasses.replace(model, layers=layers)
    return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compile(flow: SequentialFlow, mode: str) -> tuple[object, str]:
    """The callable to benchmark and a note on what was compiled (eager on failure)."""
    if mode == "none":
        return flow, "eager"
    try:
        if mode == "whole":
            return torch.compile(flow), "compiled (whole flow)"
        for layer in flow.layers:  # mode == "layers": one compiled forward per layer
            layer.compile()
        return flow, "compiled (per layer)"
    except Exception as error:  # any compile failure falls back to eager
        return flow, f"eager (compile failed: {type(error).__name__})"


def conv_time_share(prof: Any, step_name: str) -> dict[str, Any]:
    """Split the profiled steps (``record_function(step_name)``) into convolution time
    and the rest.

    Convolution time: the total CPU time of the outermost events whose name contains
    ``conv`` (forward and ``ConvolutionBackward0``, with what they call). Also the
    optimiser's share (``Optimizer.step*``) and the non-convolution operators with
    the most self time.

    Returns:
        ``{"conv_share", "optimizer_share", "profiled_step_s", "top": [(name, share)]}``,
        shares of the profiled step time.
    """
    totals = {"step": 0.0, "conv": 0.0, "optimizer": 0.0}
    self_times: dict[str, float] = {}
    n_steps = 0

    def walk(event: Any, in_conv: bool, in_opt: bool) -> None:
        is_conv = "conv" in event.name.lower()
        is_opt = event.name.startswith("Optimizer.step")
        if is_conv and not in_conv:
            totals["conv"] += event.cpu_time_total
        if is_opt and not in_opt:
            totals["optimizer"] += event.cpu_time_total
        if not (in_conv or is_conv):
            key = ("optimizer: " if in_opt or is_opt else "") + event.name
            self_times[key] = self_times.get(key, 0.0) + event.self_cpu_time_total
        for child in event.cpu_children:
            walk(child, in_conv or is_conv, in_opt or is_opt)

    for event in prof.events():
        if event.name == step_name and event.cpu_parent is None:
            totals["step"] += event.cpu_time_total
            n_steps += 1
            walk(event, False, False)
    step = max(totals["step"], 1e-9)
    top = sorted(self_times.items(), key=lambda kv: -kv[1])[:12]
    return {"conv_share": totals["conv"] / step, "optimizer_share": totals["optimizer"] / step,
            "profiled_step_s": step / max(n_steps, 1) / 1e6,
            "top": [(k, v / step) for k, v in top if k != step_name]}


def run_one(name: str, batch: int, device: torch.device, steps: int, compile_mode: str,
            invconv_mode: str, init_batch: int = 32, blocks: int = 0) -> dict:
    """Measure one model in this process; returns a row of the table."""
    torch.manual_seed(0)
    model = load_model(name, blocks)
    InvConv1x1.apply_mode = invconv_mode
    t0 = time.perf_counter()
    flow = build_flow(model).to(device)
    build_s = time.perf_counter() - t0
    shape = (model.in_channels, model.image_size, model.image_size)
    # ActNorm statistics from few images are degenerate at 1x1 resolution (huge
    # scales, poor inverses): initialise on a separate, larger batch as training does
    flow.data_init(torch.rand(init_batch, *shape, device=device))
    x = torch.rand(batch, *shape, device=device)
    fn, note = _compile(flow, compile_mode)
    n_dims = x[0].numel()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> float:
        out = fn(x)  # type: ignore[operator]
        loss = bits_per_dim(out.h, out.zs, out.logdet, n_dims).mean()
        loss.backward()
        flow.zero_grad(set_to_none=True)
        return loss.item()

    t0 = time.perf_counter()
    try:
        step()  # warm-up (and compilation)
    except Exception as error:  # a failing compiled graph falls back to eager
        if compile_mode == "none":
            raise
        note = f"eager (compiled run failed: {type(error).__name__})"
        for layer in flow.layers:  # undo Module.compile()
            layer._compiled_call_impl = None  # type: ignore[attr-defined]
        fn = flow
        flow.zero_grad(set_to_none=True)
        step()
    _sync(device)
    warmup_s = time.perf_counter() - t0
    step_times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        step_times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    train_s = statistics.median(step_times)  # the median: robust to other load
    cpu_s = statistics.median(cpu_times)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    flow.eval()
    with torch.no_grad():
        out = flow(x)
        _sync(device)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            back = flow.inverse(out.h, out.zs)
            _sync(device)
            times.append(time.perf_counter() - t0)
        error = (back - x).abs().max().item()
    return {
        "model": name, "layers": len(flow), "batch": batch, "mode": note,
        "build_s": build_s, "warmup_s": warmup_s, "step_s": train_s, "cpu_s": cpu_s,
        "samples_per_s": batch / train_s, "peak_mib": peak / 2**20,
        "inverse_first_s": times[0], "inverse_cached_s": times[1], "inverse_error": error,
    }


SHORTCUTS_OFF = {"fold_actnorm": False, "channels_last_min_pixels": 0}
"""The flow's training shortcuts switched off: the "before" of ``--profile``."""


def _set_shortcuts(values: dict[str, Any]) -> None:
    SequentialFlow.fold_actnorm = values["fold_actnorm"]
    CouplingNet.channels_last_min_pixels = values["channels_last_min_pixels"]


def run_profile(name: str, batch: int, device: torch.device, steps: int, init_batch: int,
                blocks: int, profile_steps: int, adam: str) -> list[dict]:
    """Whole training steps with the shortcuts off ("before") and on ("after"),
    alternating step by step in this process; each also profiled
    (:func:`conv_time_share`). Returns one row per variant."""
    defaults = {"fold_actnorm": SequentialFlow.fold_actnorm,
                "channels_last_min_pixels": CouplingNet.channels_last_min_pixels}
    variants = {"before": SHORTCUTS_OFF, "after": defaults}
    torch.manual_seed(0)
    model = load_model(name, blocks)
    flow = build_flow(model).to(device)
    shape = (model.in_channels, model.image_size, model.image_size)
    flow.data_init(torch.rand(init_batch, *shape, device=device))
    x = torch.rand(batch, *shape, device=device)
    n_dims = x[0].numel()
    # lr 0: the weights stay those of the data init, so both variants see the same ones
    optimizer = torch.optim.Adam(flow.parameters(), lr=0.0, fused=adam == "fused" or None)

    def step() -> None:
        out = flow(x)
        loss = bits_per_dim(out.h, out.zs, out.logdet, n_dims).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)

    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for values in variants.values():  # warm-up
        _set_shortcuts(values)
        step()
    for _ in range(steps):
        for variant, values in variants.items():
            _set_shortcuts(values)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            times[variant].append(time.perf_counter() - t0)
            cpu[variant].append(time.process_time() - c0)
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    profiled: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for _ in range(profile_steps):  # alternating too, one profile per step
        for variant, values in variants.items():
            _set_shortcuts(values)
            with profile(activities=activities) as prof:
                with record_function("bench_step"):
                    step()
            profiled[variant].append(conv_time_share(prof, "bench_step"))
    rows = []
    for variant in variants:
        step_s = statistics.median(times[variant])
        shares = profiled[variant]
        rows.append({"model": name, "variant": variant, "layers": len(flow), "batch": batch,
                     "adam": adam, "step_s": step_s, "cpu_s": statistics.median(cpu[variant]),
                     "samples_per_s": batch / step_s, "steps": steps,
                     "profiled_steps": len(shares),
                     "conv_share": statistics.median(p["conv_share"] for p in shares),
                     "optimizer_share": statistics.median(p["optimizer_share"] for p in shares),
                     "profiled_step_s": statistics.median(p["profiled_step_s"] for p in shares),
                     "top": shares[-1]["top"]})
    _set_shortcuts(defaults)
    return rows


def print_profile_table(rows: list[dict]) -> None:
    """Before / after per model: samples/s, the convolution and non-convolution shares
    and seconds per step, and the ratio of the non-convolution time."""
    header = (f"{'model':6} {'layers':>6} {'batch':>5} {'adam':>7} {'variant':>7} "
              f"{'samples/s':>9} {'s/step':>7} {'conv':>6} {'non-conv':>8} {'of it Adam':>10} "
              f"{'conv s':>7} {'non-conv s':>10}")
    print(header)
    print("-" * len(header))
    by_model: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_model.setdefault(r["model"], {})[r["variant"]] = r
        share = r["conv_share"]
        print(f"{r['model']:6} {r['layers']:6d} {r['batch']:5d} {r['adam']:>7} "
              f"{r['variant']:>7} {r['samples_per_s']:9.2f} {r['step_s']:7.3f} {share:6.1%} "
              f"{1 - share:8.1%} {r['optimizer_share']:10.1%} {r['step_s'] * share:7.3f} "
              f"{r['step_s'] * (1 - share):10.3f}")
    for model, pair in by_model.items():
        if {"before", "after"} <= set(pair):
            b, a = pair["before"], pair["after"]
            non_conv = (b["step_s"] * (1 - b["conv_share"])) / (a["step_s"] * (1 - a["conv_share"]))
            print(f"{model}: before / after: step time {b['step_s'] / a['step_s']:.3f}, "
                  f"non-convolution time {non_conv:.3f}, convolution time "
                  f"{b['step_s'] * b['conv_share'] / (a['step_s'] * a['conv_share']):.3f} "
                  f"(medians of {a['steps']} alternating steps, shares of "
                  f"{a['profiled_steps']} profiled ones)")
    print("\nlargest non-convolution operators (self time, share of the step):")
    for r in rows:
        tops = ", ".join(f"{name} {share:.1%}" for name, share in r["top"][:8])
        print(f"  {r['model']} {r['variant']}: {tops}")


def print_table(rows: list[dict]) -> None:
    header = (f"{'model':6} {'layers':>6} {'batch':>5} {'fwd+bwd samples/s':>18} "
              f"{'s/step':>7} {'CPU s/step':>10} {'peak MiB':>9} {'inverse s (1st/cached)':>23} "
              f"{'max|x-x^|':>9}  mode")
    print(header)
    print("-" * len(header))
    for r in rows:
        inv = f"{r['inverse_first_s']:.3f}/{r['inverse_cached_s']:.3f}"
        print(f"{r['model']:6} {r['layers']:6d} {r['batch']:5d} {r['samples_per_s']:18.2f} "
              f"{r['step_s']:7.3f} {r['cpu_s']:10.3f} {r['peak_mib']:9.0f} {inv:>23} "
              f"{r['inverse_error']:9.1e}  "
              f"{r['mode']}; warm-up {r['warmup_s']:.1f}s, build {r['build_s']:.1f}s")


def _run_worker(name: str, args: argparse.Namespace) -> list[dict]:
    """One model measured in a fresh process (so that its peak memory is its own)."""
    cmd = [sys.executable, __file__, "--_worker", name, "--device", args.device,
           "--steps", str(args.steps), "--compile", args.compile,
           "--invconv-mode", args.invconv_mode, "--init-batch", str(args.init_batch),
           "--threads", str(args.threads), "--blocks", str(args.blocks),
           "--profile-steps", str(args.profile_steps), "--adam", args.adam]
    if args.batch:
        cmd += ["--batch", str(args.batch)]
    if args.profile:
        cmd.append("--profile")
    result = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if result.returncode != 0:
        raise BenchError(f"{name}: benchmark failed:\n{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["small", "paper"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: small 16; paper 4 on CPU, 40 on CUDA)")
    parser.add_argument("--steps", type=int, default=3,
                        help="timed steps after one warm-up (with --profile: of each variant)")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="torch CPU threads (default: half the cores; more threads than "
                             "free cores make CPU runs much slower)")
    parser.add_argument("--init-batch", type=int, default=32,
                        help="images for the ActNorm data init (default 32)")
    parser.add_argument("--compile", choices=["none", "layers", "whole"], default="none",
                        help="torch.compile per layer or the whole flow (eager if it fails)")
    parser.add_argument("--invconv-mode", choices=["auto", "weight", "factored"], default="auto",
                        help="how 1x1 convs apply W in training (see InvConv1x1.apply_mode)")
    parser.add_argument("--blocks", type=int, default=0,
                        help="n_blocks of every flow_blocks group (default: the config's)")
    parser.add_argument("--profile", action="store_true",
                        help="whole training steps (with Adam), the flow's shortcuts off and on, "
                             "and their non-convolution share from torch.profiler")
    parser.add_argument("--profile-steps", type=int, default=3,
                        help="steps profiled per variant with --profile (default 3)")
    parser.add_argument("--adam", choices=["default", "fused"], default="fused",
                        help="with --profile: torch's fused Adam (as the trainer builds it) "
                             "or its default, per-parameter one")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise BenchError("--device cuda but CUDA is not available")
        torch.set_num_threads(args.threads)
        if args._worker:
            batch = args.batch or (16 if args._worker == "small" else
                                   (40 if device.type == "cuda" else 4))
            if args.profile:
                result: list[dict] = run_profile(
                    args._worker, batch, device, args.steps, args.init_batch, args.blocks,
                    args.profile_steps, args.adam)
            else:
                result = [run_one(args._worker, batch, device, args.steps, args.compile,
                                  args.invconv_mode, args.init_batch, args.blocks)]
            print(json.dumps(result))
            return 0
        rows = []
        load_before = os.getloadavg()[0]
        for name in args.models:
            load_model(name)
            rows += _run_worker(name, args)
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            print(f"torch {torch.__version__}, device {args.device}, threads "
                  f"{args.threads}, load average {load_before:.2f} at the start / "
                  f"{os.getloadavg()[0]:.2f} at the end")
            if args.profile:
                print_profile_table(rows)
            else:
                print_table(rows)
        return 0
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
