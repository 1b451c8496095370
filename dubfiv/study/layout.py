"""The pages a participant goes through, shared by the survey, the preview and the estimate.

One place decides what is on which page, so that the Qualtrics survey
(:mod:`dubfiv.study.qsf.writer`), the offline preview (:mod:`dubfiv.study.build.preview`)
and the duration estimate (:mod:`dubfiv.study.build.duration`) agree:

1. consent page: consent text, the consent question, the device question;
2. tutorial: the intro page, one page per ``Study.tutorial`` page, the
   comprehension page (its text and image pairs, then the comprehension checks);
3. the condition: its intro page and one page per explanation page;
4. the attribute page: the explanation again (all its pages, for reference),
   the relevance matrix, the first attention check, the confidence matrix;
5. the prediction tasks, one per page; the other attention checks get pages
   of their own among them (:func:`attention_slots`);
6. the end page.

Only a participant who consents, uses a desktop and passes the comprehension
checks sees all of them (:func:`participant_pages`).
"""

from __future__ import annotations

import dataclasses
import html
import re

from dubfiv.study.content import CheckQuestion, Condition, Page, Study

__all__ = ["Item", "SurveyPage", "attention_slots", "participant_pages", "plain_words"]


def plain_words(fragment: str) -> int:
    """Words of an HTML fragment's visible text."""
    return len(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


@dataclasses.dataclass
class Item:
    """One thing on a page.

    ``kind``: ``text`` (read only), ``choice`` (one answer), ``matrix`` (one
    answer per row); ``words`` of text to read (question, choices, labels);
    ``images`` shown; ``study_images``: whether they are explanation images
    seen for the first time (studied, not glanced at); ``repeated``: images
    already seen (the explanation shown again); ``rows``: matrix rows.
    """

    kind: str
    words: int = 0
    images: int = 0
    study_images: bool = False
    repeated: bool = False
    rows: int = 0


@dataclasses.dataclass
class SurveyPage:
    """One survey page: a name (for reports) and its items."""

    name: str
    items: list[Item]

    @property
    def questions(self) -> int:
        """Questions to answer on the page (a matrix counts once per row)."""
        return sum(it.rows if it.kind == "matrix" else 1 for it in self.items
                   if it.kind in ("choice", "matrix"))


def attention_slots(study: Study) -> tuple[list[CheckQuestion], dict[int, list[CheckQuestion]]]:
    """Where the attention checks go: those on the attribute page, and per prediction
    task index ``i`` the checks on pages of their own right before task ``i``.

    The first check goes on the attribute page (between the two matrices); the
    others are spread evenly over the prediction tasks (or, without tasks, on the
    attribute page too).
    """
    checks = study.checks_of("attention")
    if not checks:
        return [], {}
    on_attributes, rest = checks[:1], checks[1:]
    if not study.tasks:
        return on_attributes + rest, {}
    slots: dict[int, list[CheckQuestion]] = {}
    n = len(study.tasks)
    for j, chk in enumerate(rest):
        index = max(1, min(n - 1, round((j + 1) * n / (len(rest) + 1)))) if n > 1 else 0
        slots.setdefault(index, []).append(chk)
    return on_attributes, slots


def _page_items(page: Page, study_images: bool, repeated: bool = False) -> list[Item]:
    words = plain_words(page.title) + plain_words(page.text)
    if page.grid is not None:
        words += sum(plain_words(w) for w in page.grid.row_labels + page.grid.col_labels)
    return [Item("text", words=words, images=len(page.images), study_images=study_images,
                 repeated=repeated)]


def _choice(text: str, choices: list[str]) -> Item:
    return Item("choice", words=plain_words(text) + sum(plain_words(c) for c in choices))


def _check(chk: CheckQuestion) -> Item:
    return _choice(chk.text, chk.choices)


def participant_pages(study: Study, condition: Condition) -> list[SurveyPage]:
    """The pages of a participant assigned ``condition`` who completes the survey."""
    consent = [Item("text", words=plain_words(study.consent_text)),
               _choice("Do you agree to take part?",
                       [study.consent_agree, study.consent_decline])]
    if study.device_choices:
        consent.append(_choice(study.device_question, study.device_choices))
    pages = [SurveyPage("consent", consent)]
    if study.tutorial or study.comprehension_page is not None:
        pages.append(SurveyPage("tutorial intro",
                                [Item("text", words=plain_words(study.tutorial_intro))]))
        pages += [SurveyPage(f"tutorial: {p.title}", _page_items(p, False))
                  for p in study.tutorial]
        if study.comprehension_page is not None:
            pages.append(SurveyPage("comprehension", _page_items(
                study.comprehension_page, False) + [_check(c) for c in
                                                    study.checks_of("comprehension")]))
    pages.append(SurveyPage(f"{condition.key}: intro", [Item(
        "text", words=plain_words(condition.title) + plain_words(condition.intro))]))
    pages += [SurveyPage(f"{condition.key}: {p.title}", _page_items(p, True))
              for p in condition.pages]
    labels = sum(plain_words(a.label) for a in study.attributes)
    on_attributes, slots = attention_slots(study)
    attribute_page = [it for p in condition.pages for it in _page_items(p, True, True)]
    attribute_page.append(Item("matrix", rows=len(study.attributes), words=plain_words(
        study.relevance_question) + labels + sum(plain_words(a) for a in
                                                 study.relevance_answers)))
    attribute_page += [_check(c) for c in on_attributes]
    attribute_page.append(Item("matrix", rows=len(study.attributes), words=plain_words(
        study.confidence_question) + labels + sum(plain_words(a) for a in
                                                  study.confidence_answers)))
    pages.append(SurveyPage("attributes", attribute_page))
    for i, _task in enumerate(study.tasks):
        for chk in slots.get(i, []):
            pages.append(SurveyPage(f"attention {chk.tag}", [_check(chk)]))
        item = _choice(study.prediction_question, list(study.class_names))
        item.images = 1
        pages.append(SurveyPage(f"task {i + 1}", [item]))
    pages.append(SurveyPage("end", [Item("text", words=plain_words(study.end_text))]))
    return pages
