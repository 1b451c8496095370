"""``dubfiv_export_user_study``: a trained run as a ready-to-run user study.

Example::

    dubfiv_export_user_study --model models/dubfiv_small_2024-05-01_12-30-45 \\
        --image-base-url https://me.github.io/my-study
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from dubfiv.cli._oneline import OneLineParser, fail

PROG = "dubfiv_export_user_study"


def build_parser() -> OneLineParser:
    from dubfiv.study.export import CONDITION_CHOICES, DEFAULT_OUTPUT_NAME, PLACEHOLDER_BASE_URL

    parser = OneLineParser(
        prog=PROG,
        description="Export a trained run as a user study in one folder: per condition "
        "(baseline grid, INN counterfactuals, concepts) the figures at print quality, every "
        "cell as an image and JSON records of what each image shows; the attribute questions "
        "(answered by <RUN_DIR>/ground_truth/ground_truth.json where it exists, else left "
        "open) and prediction tasks; study.json, a Qualtrics survey (study.qsf), an offline "
        "preview (index.html) and manifest.json. The folder is built beside the destination "
        "and renamed into place; a rerun replaces an earlier export.",
    )
    parser.add_argument("--model", required=True, metavar="RUN_DIR", type=Path,
                        help="run directory (ours or the paper's released model)")
    parser.add_argument("--condition", default="all", choices=CONDITION_CHOICES,
                        help="export all conditions or one (default: all)")
    parser.add_argument("--output", metavar="DIR", type=Path,
                        help=f"study folder (default: <RUN_DIR>/{DEFAULT_OUTPUT_NAME})")
    parser.add_argument("--image-base-url", "--image_base_url", dest="image_base_url",
                        metavar="URL", default=PLACEHOLDER_BASE_URL,
                        help="http(s) address the study folder will be hosted at; the survey "
                        "shows URL/<path in the folder> (default: the placeholder "
                        "%(default)s, which must be replaced; see docs/user_study.md)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the data sample and every draw (default: 0)")
    parser.add_argument("--dataset_dir", metavar="DIR", type=Path,
                        help="folder holding the run's dataset (default: the run's "
                        "train.dataset_dir)")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--rows", type=int, default=6, metavar="N",
                        help="rows of the baseline grid and of the interpolations "
                        "(default: 6, i.e. 30 baseline images)")
    parser.add_argument("--n_tasks", type=int, default=10, metavar="N",
                        help="prediction tasks (default: 10)")
    parser.add_argument("--head", type=int, default=0, help="index of the head (default: 0)")
    parser.add_argument("--n_samples", type=int, default=3000, metavar="N",
                        help="images sampled per split (validation, test) to draw from "
                        "(default: 3000; 0: all)")
    parser.add_argument("--p_hi", type=float, default=90.0,
                        help="percentile of |logit| of the outer counterfactual targets "
                        "(80, 90, 95 or 99; default: 90)")
    parser.add_argument("--n_concepts", type=int, default=8, metavar="K",
                        help="concepts fitted (default: 8)")
    parser.add_argument("--concept_images", type=int, default=6, metavar="N",
                        help="images shown per concept (default: 6)")
    parser.add_argument("--concept_fit_images", type=int, default=1000, metavar="N",
                        help="train images the concepts are fitted on (default: 1000)")
    parser.add_argument("--dpi", type=int, default=300,
                        help="resolution stored in every PNG; figures are rendered at it "
                        "(default: 300)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_export_user_study``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from dubfiv.study.export import ExportConfig, ExportError, export_user_study

    config = ExportConfig(
        run_dir=args.model, output=args.output, condition=args.condition,
        image_base_url=args.image_base_url, seed=args.seed, dataset_dir=args.dataset_dir,
        device=args.device, rows=args.rows, n_tasks=args.n_tasks, head=args.head,
        n_samples=args.n_samples, p_hi=args.p_hi, n_concepts=args.n_concepts,
        concept_images=args.concept_images, concept_fit_images=args.concept_fit_images,
        dpi=args.dpi,
        progress=not args.quiet)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{PROG}] {message}", file=sys.stderr)

    try:
        result = export_user_study(config, [PROG, *argv], log)
    except ExportError as error:
        return fail(PROG, error)
    n_files = len(result.manifest["files"])
    print(f"wrote {result.output} ({n_files} files + manifest.json) in "
          f"{result.seconds['total']:.1f} s")
    for note in result.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
