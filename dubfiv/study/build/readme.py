"""The ``README.md`` of an exported study folder: what it holds and what to host."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dubfiv.study.content import Study

__all__ = ["readme_text"]


def readme_text(study: Study, run_dir: Path, image_base_url: str, placeholder: bool,
                minutes: int, runtimes: Sequence[str] = ("qualtrics", "jspsych")) -> str:
    """The study folder's ``README.md`` (Markdown): what it holds, what to host, what next.

    ``placeholder``: the images are referenced under a placeholder URL (adds
    the warning to host ``public/`` and export again, for Qualtrics); ``minutes``: the
    estimated duration; ``runtimes``: ``qualtrics`` (``study.qsf``) and/or ``jspsych``
    (the page in ``public/``), each with how to run it.
    """
    qualtrics, jspsych = "qualtrics" in runtimes, "jspsych" in runtimes
    warning = (
        f"\n**The images are referenced under the placeholder `{image_base_url}`.** "
        "Host the folder `public/` somewhere and export again into this folder (so the image "
        "names stay the same) with `--image-base-url` set to its address before importing "
        "`study.qsf` into Qualtrics.\n" if placeholder and qualtrics else "")
    conditions = ", ".join(f"`{c.key}`" for c in study.conditions)
    prolific = (f"Prolific: completion code `{study.prolific_completion_code}` (the survey "
                "reads PROLIFIC_PID, STUDY_ID and SESSION_ID from the URL and redirects to "
                "Prolific at the end).\n" if study.prolific else "")
    hosted = ("every image a participant's browser loads, with neutral names "
              "(`<16 hex digits>.png`)")
    if jspsych:
        hosted += (", and the jsPsych page that shows them (`index.html`, `dubfiv-study.js`, "
                   "`experiment.json`, and `jspsych/` when exported with `--jspsych-dir`), "
                   "which holds no answers")
    sections = [_qualtrics_section() if qualtrics else "",
                _jspsych_section(study) if jspsych else ""]
    private = ["- `study.qsf` -- import it into Qualtrics (\"Create project\" > \"Survey\" > "
               "\"Import a QSF\n  file\")." if qualtrics else "",
               "- `records/jatos_study_input.json` -- the study input JSON for JATOS (it holds "
               "the\n  Prolific completion URL)." if jspsych else ""]
    return f"""# {study.name}

Exported by `dubfiv_export_user_study` from the run `{Path(run_dir).absolute()}`.
Conditions: {conditions}; {len(study.attributes)} attribute questions;
{len(study.tasks)} prediction tasks; {len(study.tutorial)} tutorial pages;
{len(study.checks_of("comprehension"))} comprehension and
{len(study.checks_of("attention"))} attention checks; about {minutes} minutes.
Runs on: {", ".join(runtimes)}.
{prolific}{warning}
## What to host

Only the folder **`public/`**: it holds {hosted}, and nothing else. **Do not host
anything else of this folder**: `records/`, `figures/`, `study.json` and the top-level
`index.html` hold the answers (ground truth, logits, labels, which image is which).
{"".join(sections)}
## The rest (private)

{_lines(private)}- `index.html` -- the researcher preview of the whole study, with the
  answers; open it in a browser.
- `figures/` -- each condition's whole figure at print quality; `records/` -- JSON records
  of what every image shows, the ground truth, the prediction tasks, the tutorial and
  `image_names.json`, the table from neutral names to what each image is.
- `study.json`, `export.json`, `manifest.json` -- the study, the export's settings and
  duration estimate, and every file with its sha256.

See `docs/user_study.md` and `docs/jspsych.md` in the dubfiv repository for details.
"""


def _lines(items: list[str]) -> str:
    return "".join(f"{item}\n" for item in items if item)


def _qualtrics_section() -> str:
    return """
## Run it on Qualtrics

Upload the files of `public/` to a static HTTPS host (GitHub Pages, an S3 bucket, a
university web server) so that `IMAGE_BASE_URL/<name>.png` serves them, import `study.qsf`
into Qualtrics, and after the survey ran export the responses as CSV and run
`dubfiv_study_results --responses RESPONSES.csv --study THIS_FOLDER`.
"""


def _jspsych_section(study: Study) -> str:
    prolific = ("\nOn Prolific, give the study's address with\n"
                "`?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID="
                "{{%SESSION_ID%}}`\nappended; finishers are sent back to Prolific with the "
                "completion code.\n" if study.prolific else "")
    return f"""
## Run it with jsPsych (your own server, or JATOS)

- Your own server: `dubfiv_study_serve THIS_FOLDER` serves `public/` and stores every
  page's answers in a database (SQLite by default); participants open its address.
- JATOS: create a study, upload the contents of `public/` as its assets, add a component
  whose HTML file is `index.html`, and paste `records/jatos_study_input.json` into the
  study's "Study input" (the page assigns conditions evenly through the batch session).
- Try it without saving anything: open the page with `?preview=1` (any static server).
{prolific}"""
