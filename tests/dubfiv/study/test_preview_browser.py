"""index.html: static checks, and a real headless Chromium (DevTools protocol over a pipe).

The browser check opens the page with ``--remote-debugging-pipe`` (commands on
fd 3, replies and events on fd 4, NUL-separated JSON), listens to
``Runtime.exceptionThrown``, ``Runtime.consoleAPICalled`` (error/assert) and
``Log.entryAdded`` (level error, e.g. failed resource loads), and after the
load event reads every ``<img>``'s ``complete``/``naturalWidth``. A
deliberately broken page shows that it catches a missing image, an uncaught
exception and ``console.error``. Skipped with a reason if no Chromium is found.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from dubfiv.study.content import StudyError
from dubfiv.study.preview import write_preview

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check", "--remote-debugging-pipe"]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "img":
            self.imgs.append(d)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_preview_is_self_contained(study_dir) -> None:
    study, folder = study_dir
    path = write_preview(study, folder)
    text = path.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    assert len(tags.imgs) == len(study.images())
    for img in tags.imgs:
        src = img["src"] or ""
        assert "://" not in src and not src.startswith("/")
        assert (folder / unquote(src)).is_file(), src
    assert all(u.startswith("#") or "://" not in u for u in tags.urls)
    assert "<link" not in text and "@import" not in text
    for cond in study.conditions:
        assert f'id="condition-{cond.key}"' in text
    for attr in study.attributes:
        assert attr.label in text
    assert text.count('type="radio"') == (
        2 + 2 * len(study.attributes) + 5 * len(study.attributes) + 2 * len(study.tasks))
    assert "disabled" in text
    hidden = write_preview(study, folder, show_answers=False).read_text(encoding="utf-8")
    assert "model logit" in text and "model logit" not in hidden
    assert "Stretchy" not in "".join(str(i.get("alt")) for i in tags.imgs[-3:])


def test_preview_refuses_missing_images(study_dir) -> None:
    study, folder = study_dir
    (folder / "images" / "inn" / "overview.png").unlink()
    with pytest.raises(StudyError, match=r"overview\.png' does not exist"):
        write_preview(study, folder)
    assert not (folder / "index.html").exists()


# ---------------------------------------------------------------------- browser


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """A headless Chromium driven over the DevTools pipe (fd 3 in, fd 4 out)."""

    def __init__(self, binary: str, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        high_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        high_w = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)

        def child_fds() -> None:
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.log = profile.parent / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(3, 4),
                preexec_fn=child_fds)
        for fd in (cmd_r, res_w, high_r, high_w):
            os.close(fd)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium; log:\n" + self.log_tail())
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe; log:\n" + self.log_tail())
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._cmd_w, self._res_r):
            os.close(fd)


def check_page(binary: str, page: Path, profile: Path) -> dict[str, Any]:
    """Open ``page``; return console/JS errors and every image's (src, complete, width)."""
    browser = Chromium(binary, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        nav = browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        if nav.get("errorText"):
            return {"errors": [f"navigation failed: {nav['errorText']}"], "images": []}
        browser.wait_for("Page.loadEventFired")
        result = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map("
                          "i => [i.getAttribute('src'), i.complete, i.naturalWidth]))",
            "returnByValue": True}, session=session)
        images = json.loads(result["result"]["value"])
        browser.send("Runtime.evaluate", {"expression": "1"}, session=session)  # flush events
        errors = []
        for event in browser.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = params["exceptionDetails"]
                errors.append("exception: " + d.get("exception", {}).get(
                    "description", d.get("text", "")))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                errors.append("console." + params["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                entry = params["entry"]
                errors.append(f"log: {entry['text']} {entry.get('url', '')}")
        return {"errors": errors, "images": images}
    finally:
        browser.close()


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium found (tried " + ", ".join(BROWSERS) + "); install Debian's "
                    "`chromium` (apt-get install chromium, as .ci/run does) to run this test")
    return binary


def test_checker_catches_broken_pages(chromium: str, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (5, 4), (255, 0, 0)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="ok.png"><img src="missing.png">'
        '<img src="corrupt.png">'
        '<script>console.error("deliberate console error");</script>'
        '<script>undefinedFunction();</script></body></html>')
    result = check_page(chromium, page, tmp_path / "profile")
    widths = {src: width for src, _, width in result["images"]}
    assert widths == {"ok.png": 5, "missing.png": 0, "corrupt.png": 0}
    text = "\n".join(result["errors"])
    assert "deliberate console error" in text
    assert "undefinedFunction is not defined" in text
    assert "missing.png" in text  # failed load reported by the Log domain


def test_preview_loads_without_errors_and_shows_every_image(chromium: str, study_dir,
                                                            tmp_path: Path) -> None:
    study, folder = study_dir
    page = write_preview(study, folder)
    result = check_page(chromium, page, tmp_path / "profile")
    assert result["errors"] == []
    assert len(result["images"]) == len(study.images())
    assert all(complete and width > 0 for _, complete, width in result["images"]), result
