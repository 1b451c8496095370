"""The ``README.md`` of an exported study folder: what it holds and what to host."""

from __future__ import annotations

from pathlib import Path

from dubfiv.study.content import Study

__all__ = ["readme_text"]


def readme_text(study: Study, run_dir: Path, image_base_url: str, placeholder: bool,
                minutes: int) -> str:
    """The study folder's ``README.md`` (Markdown): what it holds, what to host, what next.

    ``placeholder``: the images are referenced under a placeholder URL (adds
    the warning to host ``public/`` and export again); ``minutes``: the
    estimated duration.
    """
    warning = (
        f"\n**The images are referenced under the placeholder `{image_base_url}`.** "
        "Host the folder `public/` somewhere and export again into this folder (so the image "
        "names stay the same) with `--image-base-url` set to its address before importing "
        "`study.qsf` into Qualtrics.\n" if placeholder else "")
    conditions = ", ".join(f"`{c.key}`" for c in study.conditions)
    prolific = (f"Prolific: completion code `{study.prolific_completion_code}` (the survey "
                "reads PROLIFIC_PID, STUDY_ID and SESSION_ID from the URL and redirects to "
                "Prolific at the end).\n" if study.prolific else "")
    return f"""# {study.name}

Exported by `dubfiv_export_user_study` from the run `{Path(run_dir).absolute()}`.
Conditions: {conditions}; {len(study.attributes)} attribute questions;
{len(study.tasks)} prediction tasks; {len(study.tutorial)} tutorial pages;
{len(study.checks_of("comprehension"))} comprehension and
{len(study.checks_of("attention"))} attention checks; about {minutes} minutes.
{prolific}{warning}
## What to host

Only the folder **`public/`**: it holds every image a participant's browser loads, with
neutral names (`<16 hex digits>.png`), and nothing else. Upload its files to a static
HTTPS host (GitHub Pages, an S3 bucket, a university web server) so that
`{image_base_url}/<name>.png` serves them. **Do not host anything else of this
folder**: `records/`, `figures/`, `study.json` and `index.html` hold the answers (ground
truth, logits, labels, which image is which).

## The rest (private)

- `study.qsf` -- import it into Qualtrics ("Create project" > "Survey" > "Import a QSF
  file").
- `index.html` -- the researcher preview of the whole study, with the answers; open it in
  a browser.
- `figures/` -- each condition's whole figure at print quality; `records/` -- JSON records
  of what every image shows, the ground truth, the prediction tasks, the tutorial and
  `image_names.json`, the table from neutral names to what each image is.
- `study.json`, `export.json`, `manifest.json` -- the study, the export's settings and
  duration estimate, and every file with its sha256.

After the survey ran, export the responses from Qualtrics as CSV and run
`dubfiv_study_results --responses RESPONSES.csv --study THIS_FOLDER`.
See `docs/user_study.md` in the dubfiv repository for details.
"""
