"""``dubfiv_export_user_study``: a trained run as a ready-to-run user study.

Example::

    dubfiv_export_user_study --model models/dubfiv_small_2024-05-01_12-30-45 \\
        --image-base-url https://me.github.io/my-study
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dubfiv.cli import _args
from dubfiv.cli._oneline import OneLineParser, guarded

if TYPE_CHECKING:
    from dubfiv.study.build.export_config import ExportResult

PROG = "dubfiv_export_user_study"

FLAGS = {
    "run_dir": "--model", "output": "--output", "condition": "--condition",
    "image_base_url": "--image-base-url", "seed": "--seed", "dataset_dir": "--dataset_dir",
    "device": "--device", "rows": "--rows", "n_tasks": "--n_tasks", "head": "--head",
    "n_samples": "--n_samples", "p_hi": "--p_hi", "n_concepts": "--n_concepts",
    "concept_images": "--concept_images", "concept_fit_images": "--concept_fit_images",
    "dpi": "--dpi", "prolific_completion_code": "--prolific-completion-code",
    "tutorial": "--no_tutorial", "tutorial_resolution": "--tutorial_resolution",
    "tutorial_samples": "--tutorial_samples", "comprehension_checks": "--comprehension_checks",
}
"""``ExportConfig`` field -> the flag that sets it: the renames given to
:func:`~dubfiv.cli._oneline.guarded`, which words the export's errors (their
``parameter`` and backticked names) as these flags."""


def build_parser() -> OneLineParser:
    from dubfiv.study.build.export_config import (
        CONDITION_CHOICES,
        DEFAULT_OUTPUT_NAME,
        PLACEHOLDER_BASE_URL,
    )

    parser = OneLineParser(
        prog=PROG,
        description="Export a trained run as a user study in one folder: per condition "
        "(baseline grid, INN counterfactuals, concepts) the figures at print quality, every "
        "cell as an image and JSON records of what each image shows; the attribute questions "
        "(answered by <RUN_DIR>/ground_truth/ground_truth.json where it exists, else left "
        "open) and prediction tasks; a tutorial rendered with two4two with comprehension "
        "checks, attention checks, optionally Prolific's parameters and redirect; "
        "study.json, a Qualtrics survey (study.qsf), a researcher preview (index.html) and "
        "manifest.json. Only the folder public/ (neutral-named images) is to be hosted. The "
        "folder is built beside the destination and renamed into place; a rerun replaces an "
        "earlier export.",
    )
    _args.add_run(parser, type=Path)
    parser.add_argument("--condition", default="all", choices=CONDITION_CHOICES,
                        help="export all conditions or one (default: all)")
    parser.add_argument("--output", metavar="DIR", type=Path,
                        help=f"study folder (default: <RUN_DIR>/{DEFAULT_OUTPUT_NAME})")
    parser.add_argument("--image-base-url", "--image_base_url", dest="image_base_url",
                        metavar="URL", default=PLACEHOLDER_BASE_URL,
                        help="http(s) address the folder public/ of the export will be hosted "
                        "at; the survey shows URL/<image name> (default: the placeholder "
                        "%(default)s, which must be replaced; see docs/user_study.md)")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed of the data sample and every draw (default: 0)")
    _args.add_dataset(parser, name=False, type=Path)
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--rows", type=int, default=6, metavar="N",
                        help="rows of the baseline grid and of the interpolations "
                        "(default: 6, i.e. 30 baseline images)")
    parser.add_argument("--n_tasks", type=int, default=10, metavar="N",
                        help="prediction tasks (default: 10)")
    _args.add_head(parser)
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
    parser.add_argument("--prolific-completion-code", "--prolific_completion_code",
                        dest="prolific_completion_code", metavar="CODE",
                        help="run the survey on Prolific: record PROLIFIC_PID, STUDY_ID and "
                        "SESSION_ID from the URL and send participants who finish to "
                        "https://app.prolific.com/submissions/complete?cc=CODE")
    parser.add_argument("--no_tutorial", "--no-tutorial", dest="tutorial",
                        action="store_false",
                        help="leave out the tutorial (rendered with two4two) and its "
                        "comprehension checks")
    parser.add_argument("--tutorial_resolution", type=int, default=128, metavar="PX",
                        help="size of the tutorial renders in pixels (default: 128)")
    parser.add_argument("--tutorial_samples", type=int, default=32, metavar="N",
                        help="Cycles samples per pixel of the tutorial renders (default: 32)")
    parser.add_argument("--comprehension_checks", type=int, default=2, metavar="N",
                        help="comprehension questions after the tutorial; a wrong answer "
                        "ends the survey (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_export_user_study``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.study.build.export import export_user_study
    from dubfiv.study.build.export_config import ExportConfig

    config = ExportConfig(
        run_dir=args.model, output=args.output, condition=args.condition,
        image_base_url=args.image_base_url, seed=args.seed, dataset_dir=args.dataset_dir,
        device=args.device, rows=args.rows, n_tasks=args.n_tasks, head=args.head,
        n_samples=args.n_samples, p_hi=args.p_hi, n_concepts=args.n_concepts,
        concept_images=args.concept_images, concept_fit_images=args.concept_fit_images,
        dpi=args.dpi, prolific_completion_code=args.prolific_completion_code,
        tutorial=args.tutorial, tutorial_resolution=args.tutorial_resolution,
        tutorial_samples=args.tutorial_samples,
        comprehension_checks=args.comprehension_checks, progress=not args.quiet)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{PROG}] {message}", file=sys.stderr)

    def work() -> int:
        report(export_user_study(config, [PROG, *argv], log))
        return 0

    return guarded(PROG, parser, work, **FLAGS)


def report(result: ExportResult) -> None:
    """Print what an export wrote (files, what to host, duration, notes)."""
    n_files = len(result.manifest["files"])
    study = result.study
    hosted = sum(1 for e in result.manifest["files"]
                 if e["path"].startswith(study.public_dir + "/"))
    print(f"wrote {result.output} ({n_files} files + manifest.json) in "
          f"{result.seconds['total']:.1f} s; host only {result.output / study.public_dir} "
          f"({hosted} images); the survey takes about {study.estimated_minutes} minutes")
    for note in result.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
