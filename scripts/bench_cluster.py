"""Benchmark rendering on SLURM: images/s of the local pool and of 1 and 2 array tasks,
the per-task start-up cost, the parallel efficiency, and what the paper's datasets
would cost on 1, 8 and 64 nodes.

Needs a SLURM cluster (``SLURM_CONF``; ``scripts/slurm_single_node.sh start DIR``
starts a private one on this machine) and bpy. Every render here uses one core per
worker, so the rates compare: the local pool runs ``--cores`` workers on this
machine, the array runs one single-core task per shard.

    SLURM_CONF=/tmp/slurm/slurm.conf python scripts/bench_cluster.py   # 128 px, 128 samples
    SLURM_CONF=... python scripts/bench_cluster.py --n-images 8 --samples 16   # quick

Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAPER_IMAGES = 125_000  # per dataset
NODE_CORES = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=16, help="images per measurement")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--samples", type=int, default=128, help="Cycles samples")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="workers of the local pool (default: all cores)")
    parser.add_argument("--shard-size", type=int, default=500,
                        help="shard size assumed in the cost table (default 500)")
    return parser.parse_args(argv)


def write_config(path: Path, output_dir: Path, args: argparse.Namespace, workers: int) -> Path:
    path.write_text(
        "[[dataset]]\n"
        f'output_dir = "{output_dir}"\n'
        f"resolution = [{args.resolution}, {args.resolution}]\n"
        f"render_samples = {args.samples}\nn_processes = {workers}\n"
        f'[[dataset.split]]\nname = "train"\nn_samples = {args.n_images}\n', encoding="utf-8")
    return path


@dataclasses.dataclass
class Measured:
    name: str
    wall_s: float  # from the command's start (submission) to the last image
    images: int
    task_s: list[float] = dataclasses.field(default_factory=list)  # each task, in-task
    queue_s: list[float] = dataclasses.field(default_factory=list)  # submission -> task start

    @property
    def rate(self) -> float:
        return self.images / self.wall_s


def run_local(args: argparse.Namespace, root: Path) -> Measured:
    from two4two.cli_tool import render_dataset

    config = write_config(root / "local.toml", root / "local", args, args.cores)
    start = time.perf_counter()
    render_dataset(config, progress=False)
    return Measured(f"local pool, {args.cores} workers", time.perf_counter() - start,
                    args.n_images)


def run_array(args: argparse.Namespace, root: Path, tasks: int) -> Measured:
    from two4two.cluster.submit import submit_dataset, wait_for_dataset
    from two4two.dataset_config import load_dataset_configs

    config_file = write_config(root / f"array{tasks}.toml", root / f"array{tasks}", args, 1)
    (config,) = load_dataset_configs(config_file)
    settings = config.slurm.replace(shard_size=-(-args.n_images // tasks), cpus_per_task=1,
                                    time=120)
    start_unix = time.time()
    submission = submit_dataset(config, settings=settings, progress=False)
    markers = _follow_markers(Path(config.output_dir), len(submission.submitted))
    wall = max(m["finished"] for m in markers) - start_unix
    wait_for_dataset(config, submission, poll_s=0.5, progress=False)
    return Measured(f"SLURM array, {tasks} task(s) x 1 core", wall, args.n_images,
                    [m["finished"] - m["started"] for m in markers],
                    [m["started"] - start_unix for m in markers])


def _follow_markers(output_dir: Path, n: int, timeout_s: float = 3600) -> list[dict]:
    """The ``done.json`` of every shard, once all ``n`` exist (read before assembly)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        paths = sorted((output_dir / ".shards").glob("*/*/done.json"))
        if len(paths) == n:
            return [json.loads(p.read_text()) for p in paths]
        time.sleep(0.2)
    raise SystemExit("error: the array did not finish in time")


def startup_cost(args: argparse.Namespace) -> tuple[float, float]:
    """Seconds to ``import bpy`` in a fresh Python, and to build the scene after it."""
    code = ("import time; t=time.perf_counter(); import bpy; t1=time.perf_counter();"
            "import tempfile; from two4two._blender.scene import BlenderScene;"
            f"BlenderScene(tempfile.mkdtemp(), samples={args.samples}, threads=1);"
            "print(t1-t, time.perf_counter()-t1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[-2]), float(out[-1])


def print_tables(args: argparse.Namespace, rows: list[Measured],
                 bpy_s: float, scene_s: float) -> None:
    local, one, two = rows
    setup_s = bpy_s + scene_s
    # seconds per image on one core, without the task's start-up
    per_image_one = (one.task_s[0] - setup_s) / one.images
    per_image_two = sum(t - setup_s for t in two.task_s) / two.images
    print(f"\n{args.n_images} images, {args.resolution} px, {args.samples} samples\n")
    print(f"{'run':<34} {'wall s':>8} {'img/s':>7} {'in-task s':>18} {'queue+start s':>14}")
    for row in rows:
        tasks = ", ".join(f"{t:.1f}" for t in row.task_s) or "-"
        queue = ", ".join(f"{q:.1f}" for q in row.queue_s) or "-"
        print(f"{row.name:<34} {row.wall_s:>8.1f} {row.rate:>7.3f} {tasks:>18} {queue:>14}")
    startup = one.queue_s[0] + setup_s
    efficiency = two.rate / (2 * one.rate)
    steady = per_image_one / per_image_two
    print("\nper-task start-up")
    print(f"  submission -> task running          {one.queue_s[0]:6.2f} s  (sbatch, scheduler,"
          " submitit, Python start)")
    print(f"  import bpy                          {bpy_s:6.2f} s")
    print(f"  build the scene (Blender set-up)    {scene_s:6.2f} s")
    print(f"  in all                              {startup:6.2f} s")
    print(f"seconds per image on one core:        {per_image_one:6.2f} s")
    print(f"parallel efficiency, 2 tasks vs 1:    {efficiency:6.2f} (wall), {steady:.2f} "
          "(per image, start-up excluded)")
    print(f"local pool vs 2 array tasks:          {local.rate:.3f} vs {two.rate:.3f} img/s")
    print(f"\nestimate for {PAPER_IMAGES:,} images per dataset ({args.resolution} px, "
          f"{args.samples} samples) on {NODE_CORES}-core nodes like this machine's cores, "
          "one core per task; tasks run in waves of one per core, each wave as long as "
          "one shard plus the start-up:")
    print(f"{'nodes':>6} {'cores':>6} {f'hours, shards of {args.shard_size}':>22} "
          f"{'one wave: shard size':>21} {'hours':>6}")
    for nodes in (1, 8, 64):
        cores = nodes * NODE_CORES
        fitted = -(-PAPER_IMAGES // cores)
        hours = [_waves_hours(size, cores, per_image_one / min(1.0, steady), startup)
                 for size in (args.shard_size, fitted)]
        print(f"{nodes:>6} {cores:>6} {hours[0]:>22.2f} {fitted:>21} {hours[1]:>6.2f}")


def _waves_hours(shard_size: int, cores: int, per_image_s: float, startup_s: float) -> float:
    """Hours for the paper's images cut into shards of ``shard_size``, on ``cores``
    single-core tasks: ``ceil(tasks / cores)`` waves of one shard each."""
    tasks = -(-PAPER_IMAGES // shard_size)
    waves = -(-tasks // cores)
    return waves * (shard_size * per_image_s + startup_s) / 3600


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if "SLURM_CONF" not in os.environ and not Path("/etc/slurm/slurm.conf").exists():
        print("error: no SLURM cluster: start one with scripts/slurm_single_node.sh start DIR "
              "and export SLURM_CONF=DIR/slurm.conf", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        root = Path(tmp)
        rows = [run_local(args, root), run_array(args, root, 1), run_array(args, root, 2)]
        bpy_s, scene_s = startup_cost(args)
        print_tables(args, rows, bpy_s, scene_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
