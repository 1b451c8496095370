"""``dubfiv_export_user_study``: a trained run as a ready-to-run user study.

Example::

    dubfiv_export_user_study --model models/dubfiv_small_2024-05-01_12-30-45 \\
        --image-base-url https://me.github.io/my-study
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dubfiv.cli import _args
from dubfiv.cli._oneline import OneLineParser, flag_message, flags_of, guarded

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
    "runtimes": "--runtime", "jspsych_dir": "--jspsych-dir",
}
"""``ExportConfig`` field -> the flag that sets it: the renames given to
:func:`~dubfiv.cli._oneline.guarded`, which words the export's errors (their
``parameter`` and backticked names) as these flags."""


def build_parser() -> OneLineParser:
    from dubfiv.study.build.export_config import (
        CONDITION_CHOICES,
        DEFAULT_OUTPUT_NAME,
        PLACEHOLDER_BASE_URL,
        RUNTIMES,
    )

    parser = OneLineParser(
        prog=PROG,
        description="Export a trained run as a user study in one folder: per condition "
        "(baseline grid, INN counterfactuals, concepts) the figures at print quality, every "
        "cell as an image and JSON records of what each image shows; the attribute questions "
        "(answered by <RUN_DIR>/ground_truth/ground_truth.json where it exists, else left "
        "open) and prediction tasks; a tutorial rendered with two4two with comprehension "
        "checks, attention checks, optionally Prolific's parameters and redirect; "
        "study.json, a Qualtrics survey (study.qsf) and/or a jsPsych page in public/ "
        "(--runtime), a researcher preview (index.html) and manifest.json. Only the folder "
        "public/ (neutral-named images, the jsPsych page) is to be hosted. The "
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
    parser.add_argument("--runtime", dest="runtimes", type=_runtimes,
                        default=",".join(RUNTIMES), metavar="LIST",
                        help="where the study runs, comma-separated: qualtrics (study.qsf), "
                        "jspsych (a jsPsych 8 page in public/ for dubfiv_study_serve or "
                        "JATOS; see docs/jspsych.md) (default: %(default)s)")
    parser.add_argument("--jspsych-dir", "--jspsych_dir", dest="jspsych_dir", type=Path,
                        metavar="DIR",
                        help="a node_modules folder holding the pinned jsPsych packages (npm "
                        "ci of dubfiv/study/jspsych/npm/package.json): the page loads copies "
                        "of them from public/jspsych/ instead of the CDN")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _runtimes(value: str) -> tuple[str, ...]:
    """``--runtime``: a comma-separated subset of the runtimes, each once."""
    from dubfiv.study.build.export_config import RUNTIMES

    items = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in items if v not in RUNTIMES]
    if not items or unknown or len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(
            f"{value!r}: give one or more of {', '.join(RUNTIMES)}, comma-separated, each once")
    return items


def _check_jspsych_dir(parser: OneLineParser, args: argparse.Namespace) -> None:
    """A ``--jspsych-dir`` without the pinned files, or without the jspsych runtime, is a
    usage error (one line, exit status 2), found before the run is loaded."""
    if args.jspsych_dir is None:
        return
    if "jspsych" not in args.runtimes:
        parser.error("--jspsych-dir is only used with --runtime jspsych")
    from dubfiv.study.jspsych.packages import JsPsychPackageError, check_local

    try:
        check_local(args.jspsych_dir)
    except JsPsychPackageError as exc:
        parser.error(flag_message(exc, flags_of(parser, **FLAGS)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_export_user_study``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_jspsych_dir(parser, args)
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
        comprehension_checks=args.comprehension_checks, runtimes=args.runtimes,
        jspsych_dir=args.jspsych_dir, progress=not args.quiet)

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
    images = {img.path for img in study.images()}
    hosted = sum(1 for e in result.manifest["files"] if e["path"] in images)
    page = (result.output / study.public_dir / "index.html").is_file()
    print(f"wrote {result.output} ({n_files} files + manifest.json) in "
          f"{result.seconds['total']:.1f} s; host only {result.output / study.public_dir} "
          f"({hosted} images{' and the jsPsych page' if page else ''}); the survey takes "
          f"about {study.estimated_minutes} minutes")
    for note in result.notes:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
