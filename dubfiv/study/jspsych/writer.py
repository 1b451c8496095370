"""Write the study's jsPsych 8 page into the hosted folder, and its private JATOS input.

:func:`write_jspsych` writes, below the study folder::

    public/index.html         the page: jsPsych's stylesheet and scripts (from the CDN by
                              exact version with Subresource Integrity, or the local
                              copies in public/jspsych/), then dubfiv-study.js
    public/dubfiv-study.js    the runtime (package data: assets/dubfiv-study.js)
    public/experiment.json    what participants see (dubfiv.study.jspsych.experiment)
    public/jspsych/...        with ``jspsych_dir``: the pinned files, checked and copied
    records/jatos_study_input.json
                              private: JATOS' "study input" JSON, with Prolific's
                              completion URL when the study has a completion code

``index.html`` loads ``jatos.js`` only when it is served by JATOS (its URL path
holds ``/publix/``, JATOS' study path), with a parser-blocking ``document.write``
so that it is loaded before the runtime, as a plain ``<script>`` tag would be;
elsewhere (the collector, a static host, the tests) nothing asks for a
``jatos.js`` that is not there.

:func:`hosted_leaks` searches the page's files for what must never be hosted
(condition keys, answer fields, the completion code, words the caller names as private,
such as the image-name table's keys).
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from dubfiv.errors import DubfivError
from dubfiv.files import atomic_write_text
from dubfiv.study.content import Study
from dubfiv.study.jspsych.experiment import build_experiment, new_salt
from dubfiv.study.jspsych.packages import PACKAGES, copy_local, local_paths
from dubfiv.study.jspsych.records import EXPERIMENT_JSON

__all__ = [
    "INDEX_HTML",
    "JATOS_INPUT",
    "PAGE_FILES",
    "RUNTIME_JS",
    "JsPsychWriteError",
    "hosted_leaks",
    "index_html",
    "jatos_study_input",
    "page_files",
    "runtime_js",
    "write_jspsych",
]

INDEX_HTML = "index.html"
RUNTIME_JS = "dubfiv-study.js"
PAGE_FILES = (INDEX_HTML, RUNTIME_JS, EXPERIMENT_JSON)
"""The page's own files in ``public/`` (besides the images and the local jsPsych copies)."""
JATOS_INPUT = "records/jatos_study_input.json"
"""JATOS' study input JSON (private: it holds the completion code)."""
PROLIFIC_COMPLETION_URL = "https://app.prolific.com/submissions/complete?cc="
"""Prolific's completion URL without the code (as the survey and the collector use it)."""

_STYLE = """\
body { margin: 0; }
#dubfiv-display { min-height: 100vh; }
.dubfiv-banner { background: #fff3c4; border-bottom: 1px solid #d9b200; padding: 0.4em 1em;
  font-family: sans-serif; text-align: center; }
.dubfiv-page { max-width: 960px; margin: 1em auto; text-align: left; line-height: 1.45; }
.dubfiv-page figure { margin: 0.5em 0; overflow-x: auto; }
.dubfiv-page img { max-width: none; height: auto; }
.dubfiv-grid { overflow-x: auto; }
.dubfiv-grid table, .dubfiv-matrix { border-collapse: collapse; margin: 0.5em 0; }
.dubfiv-grid th, .dubfiv-grid td { padding: 2px; text-align: center; vertical-align: middle; }
.dubfiv-matrix th, .dubfiv-matrix td { padding: 0.3em 0.6em; text-align: center;
  border-bottom: 1px solid #ddd; }
.dubfiv-matrix th[scope=row] { text-align: left; font-weight: normal; }
.dubfiv-question { margin: 1.2em 0; }
.dubfiv-question label { display: block; margin: 0.3em 0; cursor: pointer; }
.dubfiv-recap { border-left: 4px solid #ccc; padding-left: 1em; margin-bottom: 1.5em; }
.dubfiv-saving { color: #666; }
"""

# Loads jatos.js before the runtime, but only under JATOS (see the module docstring).
_JATOS_LOADER = ('<script>if (/\\/publix\\//.test(window.location.pathname)) '
                 '{ document.write(\'<script src="jatos.js"><\\/script>\'); }</script>')


class JsPsychWriteError(DubfivError, ValueError):
    """The study cannot be written as a jsPsych page (e.g. it has no hosted folder)."""


def runtime_js() -> str:
    """The runtime's source (package data ``assets/dubfiv-study.js``)."""
    return (resources.files("dubfiv.study.jspsych") / "assets" / RUNTIME_JS).read_text(
        encoding="utf-8")


def _asset_tag(url: str, integrity: str | None, css: bool) -> str:
    attrs = f' integrity="{integrity}" crossorigin="anonymous"' if integrity else ""
    url = html.escape(url, quote=True)
    if css:
        return f'<link rel="stylesheet" href="{url}"{attrs}>'
    return f'<script src="{url}"{attrs}></script>'


def index_html(study: Study, local: bool) -> str:
    """``public/index.html``: jsPsych from the CDN with ``integrity=`` (``local`` false) or
    from ``jspsych/...`` beside it (``local`` true; the copies were checked against the
    same hashes when they were copied), then the runtime."""
    tags = []
    for package in PACKAGES:
        for file in package.files:
            if local:
                tags.append(_asset_tag(package.local_path(file), None, file.is_css))
            else:
                tags.append(_asset_tag(package.url(file), file.integrity, file.is_css))
    css = [t for t in tags if t.startswith("<link")]
    scripts = [t for t in tags if t.startswith("<script")]
    head = "\n".join([*css, f"<style>\n{_STYLE}</style>", _JATOS_LOADER, *scripts,
                      f'<script src="{RUNTIME_JS}"></script>'])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>{html.escape(study.title)}</title>
{head}
</head>
<body>
<div id="dubfiv-banner" class="dubfiv-banner" hidden></div>
<div id="dubfiv-display"></div>
<noscript><p>This study needs JavaScript: please switch it on and reload the page.</p></noscript>
</body>
</html>
"""


def jatos_study_input(study: Study) -> dict[str, Any]:
    """JATOS' study input JSON: ``{"prolific_completion_url": URL}`` for a Prolific
    study (the page sends finishers there with ``jatos.endStudyAndRedirect``), else ``{}``."""
    if not study.prolific:
        return {}
    code = str(study.prolific_completion_code)
    return {"prolific_completion_url": PROLIFIC_COMPLETION_URL + code}


def page_files(local: bool) -> list[str]:
    """The page's files below ``public/`` (with ``local``: and the jsPsych copies)."""
    return [*PAGE_FILES, *(local_paths() if local else [])]


def write_jspsych(study: Study, folder: str | os.PathLike[str],
                  jspsych_dir: str | os.PathLike[str] | None = None,
                  salt: str | None = None) -> list[str]:
    """Write the jsPsych page of ``study`` into ``folder/<public_dir>`` and the JATOS input
    into ``folder/records`` (see the module docstring); return the page's files,
    relative to the hosted folder.

    ``jspsych_dir``: a ``node_modules`` folder to copy jsPsych from (checked against the
    pins) instead of loading it from the CDN; ``salt``: of the comprehension-check
    hashes (default: a new random one).

    Raises:
        JsPsychWriteError: the study has no hosted folder (``public_dir``).
        dubfiv.study.jspsych.packages.JsPsychPackageError: ``jspsych_dir`` does not
            hold the pinned files.
    """
    if not study.public_dir:
        raise JsPsychWriteError("the study has no hosted folder (public_dir is empty): the "
                                "jsPsych page must lie beside the images it shows")
    folder = Path(folder)
    public = folder / study.public_dir
    public.mkdir(parents=True, exist_ok=True)
    copied = copy_local(jspsych_dir, public) if jspsych_dir is not None else []
    experiment = build_experiment(study, salt or new_salt())
    atomic_write_text(public / EXPERIMENT_JSON,
                      json.dumps(experiment, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(public / RUNTIME_JS, runtime_js())
    atomic_write_text(public / INDEX_HTML, index_html(study, local=bool(copied)))
    (folder / JATOS_INPUT).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / JATOS_INPUT,
                      json.dumps(jatos_study_input(study), indent=2) + "\n")
    return [*PAGE_FILES, *copied]


_ANSWER_KEYS = re.compile(r'"(correct|model_logit|true_label|relevant|prolific_completion_code'
                          r'|secret)"\s*:')


def hosted_leaks(study: Study, folder: str | os.PathLike[str], files: Iterable[str],
                 private: Iterable[str] = ()) -> list[str]:
    """What the page's ``files`` (relative to the hosted folder of the study ``folder``)
    show that must stay private: a condition key as a JSON string, an answer field
    (``"correct":``, ``"model_logit":``, ...), the completion code, the study's internal
    name, or any of the ``private`` words (e.g. the image-name table's descriptive keys
    and its secret). Empty: nothing."""
    folder = Path(folder)
    private = [w for w in private if w]
    found: list[str] = []
    for rel in files:
        text = (folder / study.public_dir / rel).read_text(encoding="utf-8", errors="replace")
        where = f"{study.public_dir}/{rel}"
        found += [f"{where}: condition key {c.key!r}" for c in study.conditions
                  if f'"{c.key}"' in text]
        found += [f"{where}: answer field {m.group(1)!r}" for m in _ANSWER_KEYS.finditer(text)]
        code = study.prolific_completion_code
        if code and code in text:
            found.append(f"{where}: the Prolific completion code")
        if study.name and study.name != study.title and study.name in text:
            found.append(f"{where}: the study's internal name")
        found += [f"{where}: the private word {w!r}" for w in private if w in text]
    return found
