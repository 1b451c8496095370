"""``dubfiv_quickstart``: render the small dataset, train the small model, export a study.

Example::

    dubfiv_quickstart                  # into ./quickstart; a second call reuses everything
    dubfiv_quickstart --output /tmp/qs --device cpu --train_samples 4000
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dubfiv.cli._oneline import OneLineParser, fail, guarded

if TYPE_CHECKING:
    from dubfiv.quickstart import QuickstartResult

PROG = "dubfiv_quickstart"


def build_parser() -> OneLineParser:
    from dubfiv.quickstart import QuickstartConfig

    defaults = QuickstartConfig()
    parser = OneLineParser(
        prog=PROG,
        description="From a fresh install to a trained model and a user study: renders the "
        "small Two4Two dataset, trains the small invertible model with its linear head (CUDA "
        "if present, else the CPU; about 15 minutes on a laptop), measures which attributes "
        "the model uses (interventions), and exports the user study (explanation figures, a "
        "Qualtrics survey and an offline preview). Rerunning reuses what exists: nothing is "
        "rendered or trained twice, and an interrupted run continues where it stopped.",
    )
    parser.add_argument("--output", type=Path, default=defaults.output, metavar="DIR",
                        help="folder for data/, models/ and user_study/ (default: %(default)s)")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="cpu or cuda (default: cuda when available, else cpu)")
    parser.add_argument("--train_samples", type=int, default=None, metavar="N",
                        help="training budget in samples (default: the small config's)")
    parser.add_argument("--dataset_config", type=Path, default=defaults.dataset_config,
                        metavar="TOML", help="dataset config (default: config/dataset_small.toml)")
    parser.add_argument("--model_config", type=Path, default=defaults.model_config,
                        metavar="TOML", help="experiment config (default: config/small_model.toml)")
    parser.add_argument("--image-base-url", "--image_base_url", dest="image_base_url",
                        default=None, metavar="URL",
                        help="where the study's images will be hosted (see docs/user_study.md)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the study's draws")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    return parser


def _report(result: QuickstartResult) -> str:
    steps = ", ".join(f"{k} {v} ({result.seconds[k]:.0f} s)" for k, v in result.steps.items())
    return "\n".join([
        "",
        f"done: {steps}",
        "",
        f"  dataset       {result.dataset_dir}",
        f"  model run     {result.run_dir}",
        f"  ground truth  {result.ground_truth}  (+ ground_truth.png)",
        f"  user study    {result.study_dir}",
        "",
        "open first:",
        f"  {result.study_dir / 'index.html'}   the whole study, offline, in a browser",
        f"  {result.run_dir / 'images'}          training samples and loss curves",
        "then explore the model in the notebook:",
        f"  DUBFIV_RUN_DIR={result.run_dir} jupyter notebook Example_Analysis.ipynb",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_quickstart``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    from dubfiv.quickstart import QuickstartConfig, run_quickstart

    if args.train_samples is not None and args.train_samples < 1:
        return fail(PROG, "--train_samples must be a positive number of samples", 2)
    config = QuickstartConfig(
        output=args.output, dataset_config=args.dataset_config,
        model_config=args.model_config, device=args.device,
        train_samples=args.train_samples, image_base_url=args.image_base_url,
        seed=args.seed, progress=not args.quiet,
    )

    def run() -> int:
        result = run_quickstart(config, log=(lambda _: None) if args.quiet else print)
        print(_report(result))
        return 0

    return guarded(PROG, parser, run,
                   interrupted="interrupted; run the same command again to continue")


if __name__ == "__main__":
    sys.exit(main())
