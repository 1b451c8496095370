"""Benchmark the Two4Two renderer: images/s, where the time goes, CPU vs GPU images.

Prints up to three tables:

1. throughput: images/s per device (``--device``) and worker count, PNG writing
   included, worker start excluded; with each worker's mean seconds per image by
   stage. CPU rows use 1 and ``nproc`` workers (threads per worker = cores //
   workers), GPU rows one worker per visible GPU (``nvidia-smi -L``, restricted by
   ``CUDA_VISIBLE_DEVICES``; 1 without ``nvidia-smi``); ``--processes`` sets both.
   A device Cycles cannot use gets one row "unavailable: <reason>".
2. time split of one image in a single Blender on the CPU (this process, all
   cores): Cycles sampling (render at N samples minus render at 1 sample), Cycles
   set-up (the 1-sample render: sync, BVH), scene update, colour image read-back,
   mask (object-index pass: its extra render time + EXR read-back), PNG writing.
3. with more than one device: the images of each device against the CPU's, for
   the same seeded scenes at the same settings (default: the paper's 128 px, 128
   samples): mean and max absolute pixel difference (0..255) and the fraction of
   mask pixels that differ.

Scenes are drawn with ``two4two.Sampler`` (seeded). Other processes distort
the numbers: the load average is printed before and after; run on a quiet machine.

    python scripts/bench_render.py                       # 128x128, 128 samples, CPU
    python scripts/bench_render.py --samples 32 --n-images 16
    python scripts/bench_render.py --device cpu,cuda,optix --n-images 32
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

DEVICE_CHOICES = ("cpu", "cuda", "optix", "gpu", "auto")
STAGES = ("update", "render", "render_cpu", "image", "mask", "png")
Images = list[tuple[np.ndarray, np.ndarray]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=128, help="Cycles samples (default 128)")
    parser.add_argument("--resolution", type=int, default=128, help="square size in pixels")
    parser.add_argument("--n-images", type=int, default=8, help="timed images per setting")
    parser.add_argument("--device", default="cpu",
                        help="comma-separated Cycles devices out of "
                             f"{', '.join(DEVICE_CHOICES)} (default cpu)")
    parser.add_argument("--processes", default="",
                        help="comma-separated worker counts (default: 1 and nproc on the CPU, "
                             "one per visible GPU on a GPU)")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed for the scenes")
    parser.add_argument("--no-split", action="store_true", help="skip the time-split table")
    parser.add_argument("--no-throughput", action="store_true", help="skip the images/s table")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="extra scene.cycles setting (Python literal), repeatable")
    return parser.parse_args(argv)


def parse_devices(text: str) -> list[str]:
    devices = [d.strip().lower() for d in text.split(",") if d.strip()]
    bad = [d for d in devices if d not in DEVICE_CHOICES]
    if bad or not devices:
        raise SystemExit(f"error: --device takes a comma-separated list out of "
                         f"{', '.join(DEVICE_CHOICES)}, got {text!r}")
    return list(dict.fromkeys(devices))


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


def visible_gpus() -> int:
    """GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``
    lines, else 1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return max(1, len([d for d in visible.split(",") if d.strip()]))
    if shutil.which("nvidia-smi") is None:
        return 1
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return 1
    return max(1, sum(line.startswith("GPU ") for line in listing.splitlines()))


def worker_counts(args: argparse.Namespace, device: str, cores: int) -> list[int]:
    if args.processes:
        return [int(c) for c in args.processes.split(",")]
    if device == "cpu":
        return sorted({1, cores})
    return [visible_gpus()]


def one_line(error: BaseException) -> str:
    """The part of a render error's message that names the cause, on one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    marker = "building the Blender scene failed: "
    return text.split(marker, 1)[1] if marker in text else text


def timed_run(args: argparse.Namespace, settings: dict, device: str, n: int,
              scenes: list) -> tuple[float, dict[str, float], int, str, Images]:
    """Render ``scenes`` with ``n`` workers on ``device`` after a warm-up image per worker;
    returns (seconds, mean stage seconds, threads per worker, Cycles devices, images)."""
    from two4two.blender import Renderer

    warm = make_scenes(n, args.resolution, args.seed + 1)
    with Renderer(n_processes=n, samples=args.samples, device=device,
                  cycles_settings=settings) as pool, tempfile.TemporaryDirectory() as out:
        list(pool.render(warm, output_dir=out))  # start workers, load kernels
        start = time.perf_counter()
        images = [(image, mask) for image, mask, _ in pool.render(scenes, output_dir=out)]
        elapsed = time.perf_counter() - start
        stages = {k: float(np.mean([t[k] for t in pool.last_timings])) for k in STAGES}
        used = "/".join(sorted(set(pool.devices.values()))) or "?"
        return elapsed, stages, pool.threads_per_process, used, images


def throughput_header() -> str:
    return (f"{'device':>6} {'cycles':>6} {'procs':>5} {'thr/proc':>8} {'img/s':>7} "
            f"{'s/img':>7} {'idle est':>8} | per image in a worker (s): {'update':>7} "
            f"{'render':>7} {'cpu':>7} {'image':>7} {'mask':>7} {'png':>7}")


def throughput(args: argparse.Namespace, settings: dict, devices: list[str]) -> dict[str, Images]:
    """Print the images/s table; return each available device's images (first row)."""
    from two4two.blender import RenderError, available_cores

    cores = available_cores()
    scenes = make_scenes(args.n_images, args.resolution, args.seed)
    print(f"\nThroughput: {args.resolution}x{args.resolution}, {args.samples} samples, "
          f"{args.n_images} images per row, {cores} cores")
    header = throughput_header()
    print(header)
    print("-" * len(header))
    rendered: dict[str, Images] = {}
    for device in devices:
        for n in worker_counts(args, device, cores):
            try:
                elapsed, stages, threads, used, images = timed_run(
                    args, settings, device, n, scenes)
            except RenderError as error:
                print(f"{device:>6} {'-':>6} {n:>5} unavailable: {one_line(error)}")
                break
            rendered.setdefault(device, images)
            # Idle-machine estimate: Cycles' CPU seconds spread over the worker's threads,
            # plus the single-threaded stages, per worker.
            other = stages["update"] + stages["image"] + stages["mask"] + stages["png"]
            estimate = n / (stages["render_cpu"] / threads + other)
            print(f"{device:>6} {used:>6} {n:>5} {threads:>8} {len(scenes) / elapsed:>7.3f} "
                  f"{elapsed / len(scenes):>7.3f} {estimate:>8.3f} | {'':>26} "
                  + " ".join(f"{v:>7.4f}" for v in stages.values()))
    print("img/s: measured wall clock. idle est: n / (render CPU s / threads + other stages),\n"
          "what the workers' CPU time predicts for an otherwise idle machine (CPU rows).\n"
          "cycles: the Cycles device the workers use.")
    return rendered


def render_images(args: argparse.Namespace, settings: dict, device: str,
                  scenes: list) -> Images:
    from two4two.blender import Renderer, available_cores

    n = worker_counts(args, device, available_cores())[-1]
    with Renderer(n_processes=n, samples=args.samples, device=device,
                  cycles_settings=settings) as pool:
        return [(image, mask) for image, mask, _ in pool.render(scenes)]


def image_difference(reference: Images, other: Images) -> tuple[float, int, float]:
    """Mean and max |difference| of the images (0..255), fraction of differing mask pixels."""
    ref_images = np.stack([image for image, _ in reference]).astype(np.int16)
    images = np.stack([image for image, _ in other]).astype(np.int16)
    diff = np.abs(ref_images - images)
    masks_differ = np.stack([m for _, m in reference]) != np.stack([m for _, m in other])
    return float(diff.mean()), int(diff.max()), float(masks_differ.mean())


def compare(args: argparse.Namespace, settings: dict, devices: list[str],
            rendered: dict[str, Images]) -> None:
    """Print each device's images against the CPU's (same seeded scenes, same settings)."""
    from two4two.blender import RenderError

    scenes = make_scenes(args.n_images, args.resolution, args.seed)
    print(f"\nImages against the CPU's: {len(scenes)} scenes, {args.resolution}x"
          f"{args.resolution}, {args.samples} samples")
    header = f"{'device':>6} {'mean |diff|':>11} {'max |diff|':>10} {'mask differs':>12}"
    print(header)
    print("-" * len(header))
    for device in ["cpu"] + [d for d in devices if d != "cpu"]:
        if device not in rendered and not args.no_throughput and device in devices:
            print(f"{device:>6} unavailable (see the throughput table)")
        elif device not in rendered:
            try:
                rendered[device] = render_images(args, settings, device, scenes)
            except RenderError as error:
                print(f"{device:>6} unavailable: {one_line(error)}")
        if "cpu" not in rendered:
            return  # nothing to compare against
        if device not in rendered:
            continue
        if device == "cpu":
            print(f"{device:>6} {'reference':>11}")
            continue
        mean, peak, mask = image_difference(rendered["cpu"], rendered[device])
        print(f"{device:>6} {mean:>11.3f} {peak:>10d} {100 * mask:>11.3f}%")
    print("|diff|: absolute difference of the RGB values (0..255) over all pixels and channels;\n"
          "mask differs: share of pixels whose label differs.")


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


def split_measure(args: argparse.Namespace, settings: dict, specs: list) -> dict[str, list]:
    """Per scene: seconds of each stage, with and without the index pass and at 1 sample."""
    from two4two._blender.scene import BlenderScene
    from two4two._blender.worker import write_png_atomic

    with tempfile.TemporaryDirectory() as scratch, quiet_stdout():
        blender = BlenderScene(scratch, samples=args.samples, threads=0, device="cpu",
                               cycles_settings=settings)
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
    return rows


def split(args: argparse.Namespace, settings: dict) -> None:
    from two4two._blender.spec import RenderSpec
    from two4two.blender import available_cores

    scenes = make_scenes(args.n_images, args.resolution, args.seed + 1)
    rows = split_measure(args, settings, [RenderSpec.from_params(p) for p in scenes])
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
    print(f"\nTime split of one image: 1 process on the CPU, {available_cores()} threads, "
          f"{args.resolution}x{args.resolution}, {args.samples} samples, mean of "
          f"{len(scenes)} scenes")
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
    devices = parse_devices(args.device)
    settings = cycles_settings(args.set)
    print(f"before: {load()}")
    rendered: dict[str, Images] = {}
    if not args.no_throughput:
        rendered = throughput(args, settings, devices)
    if not args.no_split:
        split(args, settings)
    if len(devices) > 1:
        compare(args, settings, devices, rendered)
    print(f"\nafter: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
