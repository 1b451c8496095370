"""``dubfiv_study_results``: analyse the responses of an exported study, from any runtime.

``--responses PATH`` (Qualtrics' CSV export, the collector's ``--export`` CSV, or
jsPsych/JATOS data: ``.json``, ``.jsonl``, ``.txt``, a JATOS ``.zip`` or a folder;
detected by content) or ``--database URL`` (the collector's database), exactly one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dubfiv.cli._oneline import OneLineParser, fail, flags_of, in_flags
from dubfiv.errors import DubfivError
from dubfiv.study.results.analysis import (
    AnalysisConfig,
    analyse_study,
    summary_table,
    write_results,
)
from two4two.files import describe_os_error

PROG = "dubfiv_study_results"
RESULTS_DIR = "results"
"""Default output folder (in the study folder) for ``--database``."""


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Analyse the responses to a study exported by dubfiv_export_user_study, "
            "whichever runtime collected them: Qualtrics' CSV export, the collector "
            "(dubfiv_study_serve: its database or its --export CSV), or the jsPsych page's "
            "data (a jsPsych JSON file, JSON Lines, a JATOS results archive or folder). "
            "Excludes (and counts) previews, declined consent, wrong devices, "
            "duplicate PROLIFIC_PIDs, failed attention/comprehension checks, unfinished and "
            "too fast responses; reports per condition and attribute the share judging it "
            "relevant (95% Wilson interval) next to the ground truth, the prediction-task "
            "accuracy, each participant's attribute accuracy and the comparison of conditions "
            "(logistic regression with participant-clustered errors: odds ratios, 95% "
            "intervals, p-values; bootstrap interval of the accuracy difference), and names "
            "the runtime. Writes results.json, results.png and accuracy.png. Empty cells "
            "and -99 are missing answers."),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--responses", type=Path, metavar="PATH",
                        help="the responses, format detected from the content: Qualtrics' "
                             "CSV ('Data & Analysis' > Export > CSV, numeric values or choice "
                             "text, all three header rows kept), the CSV of "
                             "'dubfiv_study_serve STUDY_DIR --export FILE', a jsPsych data "
                             "file (.json array(s), .jsonl, JATOS' .txt), or JATOS' results "
                             "export (.zip, or unzipped: a folder)")
    source.add_argument("--database", metavar="URL",
                        help="read the collector's database instead (the URL "
                             "dubfiv_study_serve uses, e.g. "
                             "sqlite:///STUDY_DIR/records/collector.sqlite or "
                             "postgresql://USER:PASSWORD@HOST/DBNAME); also counts the "
                             "attempts refused because the PROLIFIC_PID had taken part")
    parser.add_argument("--study", required=True, type=Path,
                        help="the study folder written by dubfiv_export_user_study "
                             "(holds study.json, and study.qsf for Qualtrics' CSV)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for results.json, results.png and accuracy.png "
                             "(default: the folder holding the --responses file or folder, "
                             "so the study folder stays as exported; with --database: "
                             "STUDY/results, a folder that is never hosted)")
    parser.add_argument("--min-duration-s", type=float, default=None, metavar="SECONDS",
                        help="exclude responses faster than this (default: a third of the "
                             "study's estimated duration, else 120 s; 0 switches it off)")
    parser.add_argument("--reference", default=None, metavar="CONDITION",
                        help="condition the others are compared with (default: baseline, "
                             "else the study's first condition)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the participant bootstrap (default: 0)")
    parser.add_argument("--no-mixed-model", dest="mixed_model", action="store_false",
                        help="skip the mixed-effects sensitivity analysis (it takes seconds "
                             "per few hundred participants; the primary analysis stays)")
    return parser


def write_error(error: OSError, output: Path) -> str:
    """One line for results that could not be written: the output folder (or the file at
    fault, where it lies elsewhere), what went wrong and the fix."""
    name = error.filename
    inside = name is None or Path(os.fsdecode(name)).absolute().parent == output.absolute()
    shown = OSError(error.errno, error.strerror or str(error), str(output)) if inside else error
    return (f"cannot write the results (nothing was changed there): "
            f"{describe_os_error(shown)} (`output`)")


def default_output(args: argparse.Namespace) -> Path:
    """Where the results go without ``--output``: beside the responses file or folder, or
    ``STUDY/results`` for ``--database`` (outside ``public/``, so never hosted)."""
    if args.database is not None:
        return args.study / RESULTS_DIR
    return args.responses.absolute().parent


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    flags = flags_of(parser, responses_csv="--responses", study_dir="--study")
    output = args.output if args.output is not None else default_output(args)
    try:
        config = AnalysisConfig(min_duration_s=args.min_duration_s, reference=args.reference,
                                seed=args.seed, mixed_model=args.mixed_model)
        results = analyse_study(args.responses, args.study, config, database=args.database)
    except DubfivError as exc:
        return fail(PROG, exc, flags=flags)
    except OSError as exc:
        return fail(PROG, describe_os_error(exc))
    try:
        paths = write_results(results, output)
    except OSError as exc:  # a full or read-only disk: the previous results, if any, stay
        return fail(PROG, write_error(exc, output), flags=flags)
    print(in_flags(summary_table(results), flags))
    print(f"{results['n_used']} of {results['n_rows']} responses used")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
