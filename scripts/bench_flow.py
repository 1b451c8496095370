#!/usr/bin/env python
"""Benchmark the invertible network: training throughput, peak memory, inversion time.

For each model (the small CPU config and the paper's config at 128x128) it prints
forward+backward samples/s (bits/dim loss, train mode; also the process CPU
seconds per step, which is less sensitive to other load), the peak memory of that
loop, and the time of one full inversion (eval mode, no gradients; the first call
computes and caches the 1x1 convs' inverses, the second reuses them). Each model
runs in a fresh subprocess so that peak memory (CUDA: max allocated; CPU: peak
resident set size of the process) is its own.

Examples::

    python scripts/bench_flow.py                       # both models, eager, CPU
    python scripts/bench_flow.py --models small --compile layers
    python scripts/bench_flow.py --device cuda         # batch 40 for the paper model
    python scripts/bench_flow.py --invconv-mode weight # the 1x1 convs without the
                                                       # factored path (for before/after)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from dubfiv import config as cfg
from dubfiv.flow import InvConv1x1, SequentialFlow, build_flow
from dubfiv.losses import bits_per_dim

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"small": ROOT / "config" / "small_model.toml", "paper": ROOT / "config" / "model.toml"}


class BenchError(Exception):
    """A user error (missing config, no CUDA, ...)."""


def load_model(name: str) -> cfg.ModelConfig:
    path = CONFIGS[name]
    if not path.exists():
        raise BenchError(f"{path} not found; run from a checkout that has config/*.toml")
    return cfg.load_experiment(path).model


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


def run_one(name: str, batch: int, device: torch.device, steps: int, compile_mode: str,
            invconv_mode: str, init_batch: int = 32) -> dict:
    """Measure one model in this process; returns a row of the table."""
    torch.manual_seed(0)
    model = load_model(name)
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
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    _sync(device)
    train_s = (time.perf_counter() - t0) / steps
    cpu_s = (time.process_time() - c0) / steps
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(CONFIGS), default=["small", "paper"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: small 16; paper 4 on CPU, 40 on CUDA)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="torch CPU threads (default: half the cores; more threads than "
                             "free cores make CPU runs much slower)")
    parser.add_argument("--init-batch", type=int, default=32,
                        help="images for the ActNorm data init (default 32)")
    parser.add_argument("--compile", choices=["none", "layers", "whole"], default="none",
                        help="torch.compile per layer or the whole flow (eager if it fails)")
    parser.add_argument("--invconv-mode", choices=["auto", "weight", "factored"], default="auto",
                        help="how 1x1 convs apply W in training (see InvConv1x1.apply_mode)")
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
            row = run_one(args._worker, batch, device, args.steps, args.compile,
                          args.invconv_mode, args.init_batch)
            print(json.dumps(row))
            return 0
        rows = []
        for name in args.models:
            load_model(name)
            cmd = [sys.executable, __file__, "--_worker", name, "--device", args.device,
                   "--steps", str(args.steps), "--compile", args.compile,
                   "--invconv-mode", args.invconv_mode, "--init-batch", str(args.init_batch),
                   "--threads", str(args.threads)]
            if args.batch:
                cmd += ["--batch", str(args.batch)]
            result = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if result.returncode != 0:
                raise BenchError(f"{name}: benchmark failed:\n{result.stderr.strip()[-2000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
        if args.json:
            for row in rows:
                print(json.dumps(row))
        else:
            print(f"torch {torch.__version__}, device {args.device}, threads "
                  f"{args.threads}, load average "
                  f"{os.getloadavg()[0]:.2f}")
            print_table(rows)
        return 0
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
