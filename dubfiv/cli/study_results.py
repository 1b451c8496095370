"""``dubfiv_study_results``: analyse a Qualtrics CSV export of an exported study."""

from __future__ import annotations

import sys
from pathlib import Path

from dubfiv.cli._oneline import OneLineParser, fail
from dubfiv.study.content import StudyError
from dubfiv.study.results import ResultsError, analyse_study, summary_table, write_results

PROG = "dubfiv_study_results"


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Read the CSV that Qualtrics exports for a survey built by "
            "dubfiv_export_user_study and report, per condition and attribute, the share of "
            "participants who judged the attribute relevant (95% Wilson interval) next to "
            "the ground truth, plus the prediction-task accuracy. Writes results.json and "
            "results.png. Unfinished responses, declined consent and previews are skipped."),
    )
    parser.add_argument("--responses", required=True, type=Path,
                        help="the responses CSV (Qualtrics 'Data & Analysis' > Export > CSV, "
                             "numeric values or choice text, all three header rows kept)")
    parser.add_argument("--study", required=True, type=Path,
                        help="the study folder written by dubfiv_export_user_study "
                             "(holds study.json and study.qsf)")
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for results.json and results.png (default: the folder "
                             "of the responses CSV, so the study folder stays as exported)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = args.output if args.output is not None else args.responses.absolute().parent
    try:
        results = analyse_study(args.responses, args.study)
        json_path, png_path = write_results(results, output)
    except (ResultsError, StudyError) as exc:
        return fail(PROG, exc)
    except OSError as exc:
        return fail(PROG, f"cannot write results to {output}: {exc}")
    print(summary_table(results))
    skipped = ", ".join(f"{k} {v}" for k, v in results["skipped"].items() if v)
    print(f"{results['n_used']} of {results['n_rows']} responses used"
          + (f" (skipped: {skipped})" if skipped else ""))
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
