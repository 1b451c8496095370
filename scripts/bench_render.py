"""Benchmark the Two4Two renderer: images/s and where the time goes.

Prints two tables:

1. throughput: images/s with 1 and ``nproc`` worker processes (threads per
   worker = cores // workers), PNG writing included, worker start excluded;
   with each worker's mean seconds per image by stage.
2. time split of one image in a single Blender (this process, all cores):
   Cycles sampling (render at N samples minus render at 1 sample), Cycles
   set-up (the 1-sample render: sync, BVH), scene update, colour image read-back,
   mask (object-index pass: its extra render time + EXR read-back), PNG writing.

Scenes are drawn with ``two4two.Sampler`` (seeded). Other processes distort
the numbers: the load average is printed before and after; run on a quiet machine.

    python scripts/bench_render.py                       # 128x128, 128 samples
    python scripts/bench_render.py --samples 32 --n-images 16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
import time

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=128, help="Cycles samples (default 128)")
    parser.add_argument("--resolution", type=int, default=128, help="square size in pixels")
    parser.add_argument("--n-images", type=int, default=8, help="timed images per setting")
    parser.add_argument("--processes", default="",
                        help="comma-separated worker counts (default: 1 and nproc)")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed for the scenes")
    parser.add_argument("--no-split", action="store_true", help="skip the time-split table")
    parser.add_argument("--no-throughput", action="store_true", help="skip the images/s table")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra scene.cycles setting (Python literal), repeatable")
    return parser.parse_args(argv)


def cycles_settings(pairs: list[str]) -> dict[str, object]:
    import ast

    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set expects NAME=VALUE, got {pair!r}")
        try:
            settings[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[name] = value
    return settings


def make_scenes(n: int, resolution: int, seed: int) -> list:
    from two4two import Sampler

    np.random.seed(seed)
    sampler = Sampler()
    return [dataclasses.replace(sampler.sample(), resolution=(resolution, resolution))
            for _ in range(n)]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)"


def throughput(args: argparse.Namespace, settings: dict) -> None:
    from two4two.blender import Renderer, available_cores

    cores = available_cores()
    counts = ([int(c) for c in args.processes.split(",")] if args.processes
              else sorted({1, cores}))
    print(f"\nThroughput: {args.resolution}x{args.resolution}, {args.samples} samples, "
          f"{args.n_images} images per row, {cores} cores")
    header = (f"{'procs':>5} {'thr/proc':>8} {'img/s':>7} {'s/img':>7} {'idle est':>8} | "
              f"per image in a worker (s): {'update':>7} {'render':>7} {'cpu':>7} {'image':>7} "
              f"{'mask':>7} {'png':>7}")
    print(header)
    print("-" * len(header))
    for n in counts:
        scenes = make_scenes(n + args.n_images, args.resolution, args.seed)
        warm, timed = scenes[:n], scenes[n:]
        with Renderer(n_processes=n, samples=args.samples, cycles_settings=settings) as pool, \
                tempfile.TemporaryDirectory() as out:
            list(pool.render(warm, output_dir=out))  # start workers, load kernels
            start = time.perf_counter()
            for _ in pool.render(timed, output_dir=out):
                pass
            elapsed = time.perf_counter() - start
            stages = {k: float(np.mean([t[k] for t in pool.last_timings]))
                      for k in ("update", "render", "render_cpu", "image", "mask", "png")}
            threads = pool.threads_per_process
        # Idle-machine estimate: Cycles' CPU seconds spread over the worker's threads,
        # plus the single-threaded stages, per worker.
        other = stages["update"] + stages["image"] + stages["mask"] + stages["png"]
        estimate = n / (stages["render_cpu"] / threads + other)
        print(f"{n:>5} {threads:>8} {len(timed) / elapsed:>7.3f} {elapsed / len(timed):>7.3f} "
              f"{estimate:>8.3f} | {'':>26} " + " ".join(f"{v:>7.4f}" for v in stages.values()))
    print("img/s: measured wall clock. idle est: n / (render CPU s / threads + other stages),\n"
          "what the workers' CPU time predicts for an otherwise idle machine.")


@contextlib.contextmanager
def quiet_stdout():
    """Send fd 1 (Blender's per-render progress lines) to /dev/null for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def split(args: argparse.Namespace, settings: dict) -> None:
    from two4two._blender.scene import BlenderScene
    from two4two._blender.spec import RenderSpec
    from two4two._blender.worker import write_png_atomic
    from two4two.blender import available_cores

    scenes = make_scenes(args.n_images, args.resolution, args.seed + 1)
    specs = [RenderSpec.from_params(p) for p in scenes]
    with tempfile.TemporaryDirectory() as scratch, quiet_stdout():
        blender = BlenderScene(scratch, samples=args.samples, threads=0, cycles_settings=settings)
        blender.update(specs[0])
        blender.render()  # warm-up (kernels)
        rows: dict[str, list[float]] = {k: [] for k in (
            "update", "render_n", "render_1", "render_n_no_index", "image", "exr", "png")}
        for spec in specs:
            blender.set_samples(args.samples)
            blender.set_index_pass(True)
            blender.update(spec)
            rows["update"].append(blender.timings.update)
            image, mask = blender.render()
            rows["render_n"].append(blender.timings.render)
            rows["image"].append(blender.timings.image)
            rows["exr"].append(blender.timings.mask)
            start = time.perf_counter()
            write_png_atomic(os.path.join(scratch, "x.png"), image, "bench")
            write_png_atomic(os.path.join(scratch, "x_mask.png"), mask, "bench")
            rows["png"].append(time.perf_counter() - start)
            blender.set_index_pass(False)
            blender.render()
            rows["render_n_no_index"].append(blender.timings.render)
            blender.set_index_pass(True)
            blender.set_samples(1)
            blender.render()
            rows["render_1"].append(blender.timings.render)
    m = {k: float(np.mean(v)) for k, v in rows.items()}
    # the index pass costs the difference of two renders of the same scene, each noisy
    # (other load, turbo): take the median of the paired differences, not the difference
    # of the means
    paired = np.array(rows["render_n"]) - np.array(rows["render_n_no_index"])
    index_pass = max(0.0, float(np.median(paired)))
    q1, q3 = np.percentile(paired, [25, 75])
    parts = {
        "Cycles sampling (render N - render 1)": m["render_n"] - m["render_1"] - index_pass,
        "Cycles set-up (1-sample render)": m["render_1"],
        "scene update": m["update"],
        "image read-back (BMP via RAM disk)": m["image"],
        "mask: index pass in Cycles": index_pass,
        "mask: EXR read-back": m["exr"],
        "PNG writing (image + mask)": m["png"],
    }
    total = sum(parts.values())
    print(f"\nTime split of one image: 1 process, {available_cores()} threads, "
          f"{args.resolution}x{args.resolution}, {args.samples} samples, mean of "
          f"{len(specs)} scenes")
    print(f"{'stage':<40} {'ms/img':>8} {'share':>7}")
    print("-" * 57)
    for name, value in parts.items():
        print(f"{name:<40} {1000 * value:>8.1f} {100 * value / total:>6.1f}%")
    print("-" * 57)
    print(f"{'total':<40} {1000 * total:>8.1f}")
    mask = index_pass + m["exr"]
    not_sampling = total - parts["Cycles sampling (render N - render 1)"]
    print(f"mask share {100 * mask / total:.1f}% (target < 10%), not sampling "
          f"{100 * not_sampling / total:.1f}% (target < 25%)")
    print(f"index pass: median of {len(paired)} paired differences; their quartiles "
          f"{1000 * q1:.1f} / {1000 * q3:.1f} ms (a wide range means a loaded machine)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if min(args.samples, args.resolution, args.n_images) < 1:
        print("error: --samples, --resolution and --n-images must be >= 1", file=sys.stderr)
        return 2
    settings = cycles_settings(args.set)
    print(f"before: {load()}")
    if not args.no_throughput:
        throughput(args, settings)
    if not args.no_split:
        split(args, settings)
    print(f"\nafter: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
