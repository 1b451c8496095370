"""Headless Chromium over the DevTools pipe: open a page, collect errors and images.

Shared by the study tests (``test_preview_browser.py``, ``test_export_browser.py``).
:func:`check_page` opens a page with ``--remote-debugging-pipe`` (commands on
fd 3, replies and events on fd 4, NUL-separated JSON), listens to
``Runtime.exceptionThrown``, ``Runtime.consoleAPICalled`` (error/assert) and
``Log.entryAdded`` (level error, e.g. failed resource loads), and after the
load event reads every ``<img>``'s ``src``/``complete``/``naturalWidth`` and its
rendered width in CSS px (in a 1280 px wide window).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check", "--remote-debugging-pipe"]


def find_browser() -> str | None:
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
    """Open ``page``; return console/JS errors and every image's
    (src, complete, natural width, rendered CSS width)."""
    browser = Chromium(binary, profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget",
                               {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride", {
            "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        nav = browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        if nav.get("errorText"):
            return {"errors": [f"navigation failed: {nav['errorText']}"], "images": []}
        browser.wait_for("Page.loadEventFired")
        result = browser.send("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map("
                          "i => [i.getAttribute('src'), i.complete, i.naturalWidth, "
                          "i.getBoundingClientRect().width]))",
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


def require_browser() -> str:
    """The browser binary, or skip the calling test with the reason."""
    binary = find_browser()
    if binary is None:
        pytest.skip("no Chromium found (tried " + ", ".join(BROWSERS) + "); install Debian's "
                    "`chromium` (apt-get install chromium, as ./dev test does) to run this test")
    return binary
