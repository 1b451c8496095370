"""``dubfiv_supervised_analysis``: which attributes do the INN's counterfactuals change?

Example::

    dubfiv_supervised_analysis --supervised_dir models/supervised \\
        --model models/dubfiv_2024-05-01_12-30-45 --n_images 100 --n_steps 9
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dubfiv.cli import _args
from dubfiv.cli._oneline import RUN_RENAMES, OneLineParser, run_main

PROG = "dubfiv_supervised_analysis"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description="Move test images along the INN head's weight to a range of logits "
        "(counterfactuals), read every attribute of the results with the supervised model, "
        "and fit per attribute a line of attribute change against logit change. Writes "
        "supervised_analysis.json and supervised_analysis.png (one panel per attribute).",
    )
    parser.add_argument("--supervised_dir", required=True, metavar="DIR",
                        help="output folder of dubfiv_supervised")
    _args.add_run(parser, help="INN run directory")
    parser.add_argument("--n_images", type=int, default=50, metavar="N",
                        help="test images (a seeded random subset; default: 50)")
    parser.add_argument("--n_steps", type=int, default=9, metavar="T",
                        help="target logits per image, evenly spaced in [-P_hi, P_hi] "
                        "(default: 9)")
    parser.add_argument("--p_hi", type=float, default=95.0,
                        help="P_hi: percentile of |logit| on the validation split that ends "
                        "the range (default: 95)")
    parser.add_argument("--output", metavar="DIR",
                        help="output folder (default: <RUN_DIR>/supervised_analysis)")
    _args.add_dataset(parser)
    parser.add_argument("--split", default="test", help="split of the images (default: test)")
    _args.add_head(parser)
    _args.add_device(parser)
    parser.add_argument("--seed", type=int, default=0, help="image choice and bootstrap seed")
    parser.add_argument("--batch_size", type=int, default=32,
                        help="(image, logit) pairs per pass through the INN")
    parser.add_argument("--n_bootstrap", type=int, default=1000,
                        help="bootstrap replicates of the slope interval")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_supervised_analysis``; returns the exit status."""
    return run_main(PROG, build_parser(), argv, _run, **RUN_RENAMES)


def _run(args: argparse.Namespace) -> int:
    from dubfiv.rundir import RunPaths
    from dubfiv.supervised.analysis import run_analysis, write_analysis

    report, readout = run_analysis(
        args.supervised_dir, args.model, dataset_dir=args.dataset_dir,
        dataset=args.dataset, split=args.split, n_images=args.n_images,
        n_steps=args.n_steps, p_hi=args.p_hi, head_index=args.head, device=args.device,
        seed=args.seed, batch_size=args.batch_size, n_bootstrap=args.n_bootstrap,
        progress=not args.quiet)
    output = Path(args.output) if args.output else RunPaths(args.model).supervised_analysis
    json_path, png_path = write_analysis(report, readout, output)
    print(f"{'attribute':<20} {'slope/logit':>12} {'slope/std':>10} {'R^2':>6} {'r':>6}")
    for name in report["ranking_by_abs_correlation"]:
        r = report["attributes"][name]
        per_std = float("nan") if r["slope_per_std"] is None else r["slope_per_std"]
        print(f"{name:<20} {r['slope'] or float('nan'):12.4f} {per_std:10.4f} "
              f"{r['r2'] or float('nan'):6.3f} {r['r'] or float('nan'):6.3f}")
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
