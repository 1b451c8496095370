"""Simulated participants who click through the real jsPsych study page in Chromium.

A participant follows an answer *plan* (export tag -> 1-based choice, as
:func:`dubfiv.study.results.simulate.participant_plans` draws them): on every page
(``<div class="dubfiv-page" data-page=...>``, the page's DOM contract in
``docs/jspsych.md``) it checks the planned radio button of each question and submits,
or presses the page's one button, until the study ends (``data-page="ended"``) or
sends it to Prolific's completion URL. Runs on Playwright's async API so several
participants share one browser at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

PROLIFIC_HOST = "app.prolific.com"
_PAGE_JS = """last => {
    const el = document.querySelector('.dubfiv-page');
    if (!el) return false;
    const id = el.dataset.page + '|' + (el.dataset.end || '');
    return id !== last && (el.dataset.page === 'ended' || el.querySelector('button, input'));
}"""
_WHERE_JS = """() => {
    const el = document.querySelector('.dubfiv-page');
    const radios = el ? Array.from(el.querySelectorAll('input[type=radio]')) : [];
    return {page: el ? el.dataset.page : null, end: el ? (el.dataset.end || null) : null,
            names: Array.from(new Set(radios.map(r => r.name)))};
}"""


@dataclasses.dataclass
class Visit:
    """What one participant went through: the pages seen, and how it ended."""

    pid: str
    pages: list[str] = dataclasses.field(default_factory=list)
    end: str | None = None  # finished|declined|device|comprehension|refused|error|redirected
    arm: str | None = None
    redirect: str | None = None
    errors: list[str] = dataclasses.field(default_factory=list)


def study_url(base: str, pid: str, study_id: str = "STUDY0001", session: str | None = None
              ) -> str:
    """The Prolific link for participant ``pid``."""
    return (f"{base}/?PROLIFIC_PID={pid}&STUDY_ID={study_id}"
            f"&SESSION_ID={session or 'S' + pid[-10:]}")


async def open_participant(context: Any, visit: Visit) -> Any:
    """A new tab in ``context`` whose errors go into ``visit.errors`` and whose trip to
    Prolific's completion page is answered locally (no internet in tests)."""
    page = await context.new_page()
    page.on("pageerror", lambda exc: visit.errors.append(f"exception: {exc}"))
    page.on("console", lambda m: m.type == "error" and visit.errors.append(
        f"console.error: {m.text}"))

    async def prolific(route: Any) -> None:
        visit.redirect = route.request.url
        await route.fulfill(status=200, content_type="text/html",
                            body="<html><body id='prolific-complete'>done</body></html>")

    await page.route(f"https://{PROLIFIC_HOST}/**", prolific)
    return page


async def arm_of(page: Any) -> str:
    """The arm the page was assigned (``window.dubfivStudy.arm``)."""
    await page.wait_for_function("() => window.dubfivStudy && window.dubfivStudy.arm",
                                 timeout=20_000)
    return await page.evaluate("() => window.dubfivStudy.arm")


def _redirected(page: Any, visit: Visit) -> bool:
    return visit.redirect is not None or PROLIFIC_HOST in page.url


async def _next_page(page: Any, last: str, timeout_ms: int) -> dict[str, Any]:
    """Wait for a page other than ``last``; return its name, end and radio names."""
    await page.wait_for_function(_PAGE_JS, arg=last, timeout=timeout_ms)
    return json.loads(json.dumps(await page.evaluate(_WHERE_JS)))


_CLICK_RADIOS_JS = """choices => {
    const missing = [];
    for (const [name, value] of choices) {
        const input = document.querySelector(
            `.dubfiv-page input[type=radio][name="${name}"][value="${value}"]`);
        if (!input) { missing.push(name + '=' + value); continue; }
        input.click();  // a real click event on the radio button
    }
    return missing;
}"""


async def _answer(page: Any, where: dict[str, Any], plan: Mapping[str, int]) -> None:
    """Click the planned radio buttons (one DOM click each, in one round trip: a matrix
    page has 15 of them) and submit with a real mouse click, or press the one button."""
    if where["names"]:
        unplanned = [n for n in where["names"] if n not in plan]
        if unplanned:
            raise KeyError(f"page {where['page']}: no planned answer for {unplanned}")
        missing = await page.evaluate(_CLICK_RADIOS_JS,
                                      [[n, str(plan[n])] for n in where["names"]])
        if missing:
            raise KeyError(f"page {where['page']}: no radio button {missing}")
        await page.click("#jspsych-survey-html-form-next")
    else:
        await page.locator(".jspsych-btn").first.click()


async def click_through(page: Any, visit: Visit, plan: Mapping[str, int],
                        stop_after: str | None = None, timeout_ms: int = 20_000) -> Visit:
    """Answer every page from ``plan`` until the study ends (or right after the page
    ``stop_after`` was submitted, to leave midway)."""
    from playwright.async_api import Error as PlaywrightError

    last = ""
    while True:
        try:
            if _redirected(page, visit):
                break
            where = await _next_page(page, last, timeout_ms)
            last = f"{where['page']}|{where['end'] or ''}"
            if where["page"] == "ended":
                visit.end = where["end"]
                return visit
            visit.pages.append(where["page"])
            await _answer(page, where, plan)
        except PlaywrightError:
            if _redirected(page, visit):  # the page went to Prolific mid-call
                break
            raise
        if stop_after is not None and where["page"] == stop_after:
            await page.wait_for_timeout(300)  # let the page's save reach the server
            return visit
    visit.end = "redirected"
    return visit


async def run_participant(browser: Any, base: str, pid: str,
                          choose_plan: Callable[[str], Mapping[str, int]]) -> Visit:
    """One participant in a fresh browser profile: open the link, learn the arm, take the
    plan ``choose_plan(arm)`` and click through to the end."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    visit = Visit(pid)
    try:
        page = await open_participant(context, visit)
        await page.goto(study_url(base, pid))
        refused = await page.query_selector(".dubfiv-page[data-page=ended]")
        if refused is None:
            try:
                visit.arm = await arm_of(page)
            except Exception:
                visit.arm = None
        if visit.arm is None:
            return await click_through(page, visit, {})
        return await click_through(page, visit, choose_plan(visit.arm))
    finally:
        await context.close()
