"""``dubfiv_ground_truth``: which attributes move the model's logit? (intervention report)

Example::

    dubfiv_ground_truth --model models/dubfiv_small_2024-05-01_12-30-45 \\
        --dataset_dir data --dataset two4two_small
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dubfiv.cli import _args
from dubfiv.cli._oneline import RUN_RENAMES, OneLineParser, run_main

PROG = "dubfiv_ground_truth"


def build_parser() -> OneLineParser:
    from dubfiv.ground_truth import DEFAULT_RELATIVE_THRESHOLD

    parser = OneLineParser(
        prog=PROG,
        description="Pair every intervened test image (the dataset's <split>_<attrs> "
        "directories) with its original, compare the head's logits, and report per "
        "attribute the mean |delta logit|, the share of flipped predictions and the "
        "correlation of attribute change and logit change, with seeded 95%% bootstrap "
        "intervals, plus a relevance verdict per attribute (its systematic, linear effect on "
        "the logit exceeds --relative_threshold logit standard deviations). Writes "
        "ground_truth.json and ground_truth.png.",
    )
    _args.add_run(parser)
    _args.add_dataset(parser)
    parser.add_argument("--split", default="test",
                        help="split whose intervention sets are evaluated (default: test)")
    parser.add_argument("--output", metavar="DIR",
                        help="output folder (default: <RUN_DIR>/ground_truth)")
    _args.add_device(parser)
    _args.add_head(parser)
    parser.add_argument("--n_bootstrap", type=int, default=2000, metavar="N",
                        help="bootstrap replicates (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--relative_threshold", type=float, default=DEFAULT_RELATIVE_THRESHOLD,
                        metavar="T",
                        help="an attribute is relevant when the 95%% interval of its linear "
                        "effect, |corr(attribute change, logit change)| * std(logit change) / "
                        "logit std, lies above T (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_ground_truth``; returns the exit status."""
    return run_main(PROG, build_parser(), argv, _run, **RUN_RENAMES)


def _run(args: argparse.Namespace) -> int:
    from dubfiv.ground_truth import evaluate_run, write_report
    from dubfiv.rundir import RunPaths

    report = evaluate_run(
        args.model, dataset_dir=args.dataset_dir, dataset=args.dataset, split=args.split,
        head_index=args.head, device=args.device, n_bootstrap=args.n_bootstrap,
        seed=args.seed, relative_threshold=args.relative_threshold,
        batch_size=args.batch_size, progress=not args.quiet)
    output = Path(args.output) if args.output else RunPaths(args.model).ground_truth
    json_path, png_path = write_report(report, output)
    width = max(len(a) for a in report["attributes"])
    print(f"{'attribute':<{width}}  relevant  linear effect [95% CI]  mean|Δ|/std [95% CI] "
          " flips [95% CI]        corr [95% CI]")
    for attr, entry in report["attributes"].items():
        def fmt(e: dict) -> str:
            v, lo, hi = (float("nan") if e[k] is None else e[k] for k in ("value", "low", "high"))
            return f"{v:5.2f} [{lo:5.2f}, {hi:5.2f}]"
        print(f"{attr:<{width}}  {'yes' if entry['relevant'] else 'no':<8}  "
              f"{fmt(entry['linear_effect'])}   {fmt(entry['relative_effect'])} "
              f"{fmt(entry['flip_share'])}  {fmt(entry['correlation'])}")
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
