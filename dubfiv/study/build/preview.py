"""A static, offline preview of a study: ``index.html`` in the study folder.

One self-contained page (inline CSS and JS, no network, images by relative
path) with the consent page (and the device question), the tutorial and its
comprehension checks, each condition's pages (one section per condition;
buttons show one condition or all), the questions as disabled form controls
(with the attention checks where the survey has them, :mod:`dubfiv.study.layout`),
the prediction tasks and the end text; the messages of the early ends in
collapsed notes. Researcher notes (ground truth, the checks' right answers,
model logits and predictions, the Prolific code) sit in collapsed
``<details>`` elements; pass ``show_answers=False`` for a preview that can be
shown to participants (it is headed by the study's neutral ``title``, not by its
internal ``name``). It lives beside ``public/``, never in it.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote

from dubfiv.files import atomic_write_text
from dubfiv.study.content import CheckQuestion, Study, StudyImage
from dubfiv.study.layout import attention_slots
from dubfiv.study.page_html import display_width, img_tag, render_page_html

__all__ = ["PREVIEW_HTML", "render_preview", "write_preview"]

PREVIEW_HTML = "index.html"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc;
         padding: 0.5em 1em; z-index: 1; }
header nav a { margin-right: 1em; }
header button { margin: 0.3em 0.3em 0 0; }
header button.active { font-weight: bold; }
main { max-width: 1000px; margin: 0 auto; padding: 1em; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1em;
          margin: 1em 0; scroll-margin-top: 6em; }
.page { border-top: 1px dashed #bbb; padding-top: 0.5em; margin-top: 1em; }
.note { color: #555; font-size: 0.9em; }
table.matrix { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid #ddd; padding: 0.3em 0.6em;
                                   text-align: center; }
table.matrix th:first-child { text-align: left; }
.hidden { display: none; }
"""

_JS = """
(function () {
  "use strict";
  var buttons = document.querySelectorAll("button[data-show]");
  var sections = document.querySelectorAll("section.condition");
  function show(key) {
    sections.forEach(function (s) {
      s.classList.toggle("hidden", key !== "all" && s.dataset.condition !== key);
    });
    buttons.forEach(function (b) { b.classList.toggle("active", b.dataset.show === key); });
  }
  buttons.forEach(function (b) {
    b.addEventListener("click", function () { show(b.dataset.show); });
  });
  show("all");
})();
"""


def _src(img: StudyImage) -> str:
    return quote(img.path, safe="/")


def _radios(name: str, labels: list[str]) -> str:
    return " ".join(
        f'<label><input type="radio" name="{html.escape(name)}" disabled> '
        f"{html.escape(lab)}</label>" for lab in labels)


def _matrix(name: str, rows: list[str], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        f"<tr><th>{html.escape(row)}</th>"
        + "".join(f'<td><input type="radio" name="{name}_{i}" disabled '
                  f'aria-label="{html.escape(row)}: {html.escape(c)}"></td>' for c in cols)
        + "</tr>" for i, row in enumerate(rows))
    return f'<table class="matrix"><tr><th></th>{head}</tr>{body}</table>'


def _truth(value: bool | None) -> str:
    return {True: "relevant", False: "irrelevant", None: "unknown"}[value]


def _check_html(chk: CheckQuestion, show_answers: bool) -> str:
    out = [f'<div class="check">{chk.text}', f"<p>{_radios(chk.tag, list(chk.choices))}</p>"]
    if show_answers:
        out.append(f"<details><summary>Check <code>{html.escape(chk.tag)}</code> "
                   f"({chk.kind}; researchers only)</summary><p>correct: "
                   f"{html.escape(chk.choices[chk.correct - 1])} (choice {chk.correct})"
                   + ("; a wrong answer ends the survey" if chk.kind == "comprehension"
                      else "; a wrong answer excludes the response from the analysis")
                   + "</p></details>")
    out.append("</div>")
    return "\n".join(out)


def _end_note(study: Study, reason: str, when: str) -> str:
    return (f'<details class="note"><summary>{html.escape(when)}: the survey ends with this '
            f"message</summary>{study.early_end_text(reason)}</details>")


def render_preview(study: Study, show_answers: bool = True) -> str:
    """The preview page of ``study`` as an HTML string (image paths relative)."""
    esc = html.escape
    has_tutorial = bool(study.tutorial) or study.comprehension_page is not None
    nav = ['<a href="#consent">Consent</a>']
    if has_tutorial:
        nav.append('<a href="#tutorial">Tutorial</a>')
    nav += [f'<a href="#condition-{c.key}">{esc(c.title)}</a>' for c in study.conditions]
    nav += ['<a href="#questions">Questions</a>']
    if study.tasks:
        nav.append('<a href="#tasks">Prediction tasks</a>')
    nav.append('<a href="#end">End</a>')
    buttons = ['<button type="button" data-show="all">all conditions</button>']
    buttons += [f'<button type="button" data-show="{c.key}">{esc(c.key)}</button>'
                for c in study.conditions]
    minutes = (f" The survey is estimated to take {study.estimated_minutes} minutes."
               if study.estimated_minutes else "")
    prolific = (f" Prolific: completion code <code>{esc(str(study.prolific_completion_code))}"
                "</code>." if study.prolific and show_answers else "")
    heading = study.name if show_answers else study.title  # participants: the neutral title
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(heading)}: study preview</title>", f"<style>{_CSS}</style>",
        "</head><body>",
        f"<header><strong>{esc(heading)}</strong> &mdash; study preview "
        f"<nav>{' '.join(nav)}</nav><div>{''.join(buttons)}</div></header>",
        "<main>",
        f'<p class="note">This page shows every page of the survey in order.{minutes}'
        f"{prolific}</p>",
        '<section id="consent"><h2>Consent</h2>', study.consent_text,
        "<p>Do you agree to take part?</p>",
        f"<p>{_radios('consent', [study.consent_agree, study.consent_decline])}</p>",
    ]
    if study.device_choices:
        out += [f"<p>{study.device_question}</p>",
                f"<p>{_radios('device', list(study.device_choices))}</p>"]
    out.append(_end_note(study, "declined", "Declining"))
    if study.device_choices:
        out.append(_end_note(study, "device", f"Any answer but "
                             f"\u201c{study.device_choices[0]}\u201d"))
    out.append("</section>")
    if has_tutorial:
        out += ['<section id="tutorial"><h2>Tutorial</h2>', f"<div>{study.tutorial_intro}</div>"]
        for page in study.tutorial:
            out.append(f'<div class="page">{render_page_html(page, _src)}</div>')
        if study.comprehension_page is not None:
            out.append(f'<div class="page">{render_page_html(study.comprehension_page, _src)}')
            out += [_check_html(c, show_answers) for c in study.checks_of("comprehension")]
            out.append(_end_note(study, "comprehension", "A wrong answer"))
            out.append("</div>")
        out.append("</section>")
    out.append('<p class="note">Each participant is assigned one of the following conditions '
               "at random (evenly), then answers the same questions.</p>")
    for cond in study.conditions:
        out.append(f'<section class="condition" id="condition-{cond.key}" '
                   f'data-condition="{cond.key}">')
        out.append(f"<h2>Condition <code>{esc(cond.key)}</code>: {esc(cond.title)}</h2>")
        out.append(f"<div>{cond.intro}</div>")
        for page in cond.pages:
            out.append(f'<div class="page">{render_page_html(page, _src)}</div>')
        out.append("</section>")
    labels = [a.label for a in study.attributes]
    on_attributes, slots = attention_slots(study)
    out += ['<section id="questions"><h2>Questions (all conditions)</h2>',
            '<p class="note">On this page the survey shows the participant\'s explanation '
            "again, above the questions (the attribute rows in a random order per "
            "participant).</p>",
            f"<p>{study.relevance_question}</p>",
            _matrix("relevance", labels, list(study.relevance_answers))]
    out += [_check_html(c, show_answers) for c in on_attributes]
    out += [f"<p>{study.confidence_question}</p>",
            _matrix("confidence", labels, list(study.confidence_answers))]
    if show_answers:
        items = "".join(f"<li>{esc(a.label)}: {_truth(a.relevant)}</li>"
                        for a in study.attributes)
        out.append(f"<details><summary>Ground truth (researchers only)</summary>"
                   f"<ul>{items}</ul></details>")
    out.append("</section>")
    if study.tasks:
        out.append('<section id="tasks"><h2>Prediction tasks</h2>')
        for i, task in enumerate(study.tasks):
            for chk in slots.get(i, []):
                out.append(f'<div class="page">{_check_html(chk, show_answers)}</div>')
            img = StudyImage(task.image.path, alt=f"Image {i + 1}", width=task.image.width,
                             height=task.image.height)
            out.append(f'<div class="page"><p>{study.prediction_question}</p>')
            out.append(f"<p>{img_tag(img, _src(img), display_width(img))}</p>")
            out.append(f"<p>{_radios(f'task_{i}', list(study.class_names))}</p>")
            if show_answers:
                out.append(f"<details><summary>Answer (researchers only)</summary>"
                           f"<p>model logit {task.model_logit:.3f}, model predicts "
                           f"{esc(study.model_prediction(task))}, true label "
                           f"{esc(task.true_label)}</p></details>")
            out.append("</div>")
        out.append("</section>")
    end_note = ('<p class="note">Then Qualtrics sends the participant to Prolific\'s '
                "completion page.</p>" if study.prolific else "")
    out += [f'<section id="end"><h2>End</h2>{study.end_text}{end_note}</section>', "</main>",
            f"<script>{_JS}</script>", "</body></html>"]
    return "\n".join(out) + "\n"


def write_preview(study: Study, folder: str | os.PathLike[str], show_answers: bool = True
                  ) -> Path:
    """Write ``folder/index.html`` (atomically) and return its path.

    The study is checked first against the files in ``folder`` (raises
    :class:`~dubfiv.study.content.StudyError` listing missing or unreadable images).
    """
    study.check(folder)
    path = Path(folder) / PREVIEW_HTML
    atomic_write_text(path, render_preview(study, show_answers))
    return path
