"""A real headless Chromium for the study's browser tests, driven by Playwright.

Playwright for Python drives the system's Chromium (Debian's ``chromium``, which
``./dev test`` installs); no browser is downloaded. :func:`require_browser` skips the
calling test with the reason when there is none. :func:`check_page` opens a page and
reports what a participant would be hurt by: uncaught exceptions, ``console.error``,
failed loads, and every ``<img>``'s load state and size.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 900}
_IMAGES_JS = ("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
              "i.naturalWidth, i.getBoundingClientRect().width])")


def find_browser() -> str | None:
    """The path of a Chromium (or Chrome) on PATH, or ``None``."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_browser() -> str:
    """The browser binary, or skip the calling test with the reason."""
    binary = find_browser()
    if binary is None:
        pytest.skip("no Chromium found (tried " + ", ".join(BROWSERS) + "); install Debian's "
                    "`chromium` (apt-get install chromium, as ./dev test does) to run this test")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed (pip install -e '.[dev]', as ./dev test does)")
    return binary


@contextlib.contextmanager
def chromium(binary: str) -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


class PageProblems:
    """Collects what went wrong on a page: exceptions, console errors, failed requests."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"exception: {exc}"))
        page.on("console", self._console)
        page.on("requestfailed", lambda req: self.errors.append(
            f"failed load: {req.url} ({req.failure})"))
        page.on("response", lambda resp: resp.status >= 400
                and not resp.url.endswith("/favicon.ico")
                and self.errors.append(f"HTTP {resp.status}: {resp.url}"))

    def _console(self, message: Any) -> None:
        if message.type in ("error", "assert"):
            self.errors.append(f"console.{message.type}: {message.text}")


def check_page(binary: str, page: Path, profile: Path | None = None) -> dict[str, Any]:
    """Open the file ``page``; return its errors and every image's
    ``[src, complete, natural width, rendered CSS width]``.

    ``profile`` is accepted for the old call form and unused (Playwright gives each
    context a fresh profile).
    """
    del profile
    with chromium(binary) as browser:
        context = browser.new_context(viewport=VIEWPORT)
        tab = context.new_page()
        problems = PageProblems(tab)
        tab.goto(page.resolve().as_uri(), wait_until="load")
        images = tab.evaluate(_IMAGES_JS)
        tab.evaluate("1")  # let pending console events arrive
        context.close()
    return {"errors": problems.errors, "images": images}
