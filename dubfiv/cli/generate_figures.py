"""``dubfiv_generate_figures``: the paper-style figures of a run as PDF and PNG.

Example::

    dubfiv_generate_figures --model models/dubfiv_small_2024-05-01_12-30-45
    dubfiv_generate_figures --model RUN --only ground_truth,regression --formats pdf
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dubfiv.cli import _args
from dubfiv.cli._oneline import OneLineParser, fail, flags_of, guarded, in_flags

if TYPE_CHECKING:
    from dubfiv.workflow.figures import FigureOutcome

PROG = "dubfiv_generate_figures"
_RENAMES = {"run_dir": "--model", "output_dir": "--output", "figures": "--only",
            "rows": "--n_rows"}
"""Library parameters whose flag has another name."""


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> OneLineParser:
    from dubfiv.workflow.figures import FIGURES, FigureOptions
    from dubfiv.workflow.paper_style import FORMATS

    defaults = FigureOptions()
    parser = OneLineParser(
        prog=PROG,
        description="Draw the paper-style figures of a run (matplotlib, no LaTeX needed): "
        "the baseline grid, the counterfactual grid and the concepts (these need the run's "
        "dataset), the ground-truth bars (from dubfiv_ground_truth's report), the "
        "attribute-vs-logit regression panels (from dubfiv_supervised_analysis's report) and "
        "the training curves. A figure whose input is missing is skipped with a note; "
        "figures.json lists what was written. Exit status 1 if no figure could be drawn.",
    )
    _args.add_run(parser)
    parser.add_argument("--output", metavar="DIR",
                        help="output folder (default: <RUN_DIR>/figures)")
    parser.add_argument("--only", type=_names, default=FIGURES, metavar="NAMES",
                        help=f"comma-separated subset of {','.join(FIGURES)} (default: all)")
    parser.add_argument("--formats", type=_names, default=defaults.formats, metavar="LIST",
                        help=f"comma-separated subset of {','.join(FORMATS)} "
                        f"(default: {','.join(defaults.formats)})")
    _args.add_dataset(parser, name=False, type=Path)
    parser.add_argument("--ground_truth", metavar="JSON", type=Path,
                        help="dubfiv_ground_truth's report (default: "
                        "<RUN_DIR>/ground_truth/ground_truth.json)")
    parser.add_argument("--supervised_analysis", metavar="JSON", type=Path,
                        help="dubfiv_supervised_analysis's report (default: "
                        "<RUN_DIR>/supervised_analysis/supervised_analysis.json)")
    _args.add_device(parser)
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the image draws (default: %(default)s)")
    parser.add_argument("--n_rows", type=int, default=defaults.rows,
                        help="rows of the baseline and counterfactual grids "
                        "(default: %(default)s)")
    parser.add_argument("--p_hi", type=float, default=defaults.p_hi,
                        help="percentile of |logit| of the outer counterfactual targets "
                        "(default: %(default)s)")
    parser.add_argument("--concept_method", choices=["nmf", "pca"],
                        default=defaults.concept_method,
                        help="concept factorisation (default: %(default)s)")
    parser.add_argument("--n_concepts", type=int, default=defaults.n_concepts,
                        help="concepts fitted (default: %(default)s)")
    parser.add_argument("--concept_fit_images", type=int, default=defaults.concept_fit_images,
                        metavar="N", help="training images the concepts are fitted on "
                        "(default: %(default)s)")
    parser.add_argument("--concept_eval_images", type=int,
                        default=defaults.concept_eval_images, metavar="N",
                        help="validation/test images of the concept ranking "
                        "(default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dubfiv_generate_figures``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from dubfiv.workflow.figures import FigureOptions, generate_figures

    options = FigureOptions(
        figures=args.only, formats=args.formats, device=args.device,
        dataset_dir=args.dataset_dir, seed=args.seed, rows=args.n_rows, p_hi=args.p_hi,
        concept_method=args.concept_method, n_concepts=args.n_concepts,
        concept_fit_images=args.concept_fit_images,
        concept_eval_images=args.concept_eval_images, ground_truth=args.ground_truth,
        supervised_analysis=args.supervised_analysis, progress=not args.quiet)
    flags = flags_of(parser, **_RENAMES)
    return guarded(PROG, parser,
                   lambda: _report(generate_figures(args.model, args.output, options), flags),
                   also=(OSError,), **_RENAMES)


def _report(outcomes: list[FigureOutcome], flags: dict[str, str]) -> int:
    width = max(len(o.name) for o in outcomes)
    for outcome in outcomes:
        if outcome.written:
            print(f"{outcome.name:<{width}}  " + "  ".join(str(f) for f in outcome.files))
        else:
            print(f"{outcome.name:<{width}}  skipped: {in_flags(outcome.note, flags)}")
    if not any(o.written for o in outcomes):
        return fail(PROG, "no figure could be drawn (see the notes above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
