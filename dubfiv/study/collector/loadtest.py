"""Simulated participants against a running collector (the load test and the benchmark).

:class:`ServerProcess` runs ``dubfiv_study_serve`` in a subprocess on 127.0.0.1 (a free
port), :func:`run_load` lets ``n`` participants take part at the same time (asyncio
and httpx, one connection each): start a session, save every page of the study
(:func:`simulated_pages`; one page twice, as a retry would), end ``finished``; it
measures each page save's latency. :func:`write_load_study` writes a small study
folder to serve (``study.json`` and a stub ``public/index.html``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from dubfiv.study.content import (
    CheckQuestion,
    Condition,
    Page,
    PredictionTask,
    Study,
    StudyImage,
    default_attention_checks,
)
from dubfiv.study.layout import attention_slots

__all__ = ["LoadResult", "ServerProcess", "participant_records", "run_load",
           "simulated_pages", "write_load_study"]

_URL_RE = re.compile(r"at (http://[^ ]+/) ")


def write_load_study(folder: Path, n_tasks: int = 12, prolific: str | None = "LOADTEST") -> Study:
    """A study with the three paper conditions, a one-page tutorial with two
    comprehension checks, the two attention checks and ``n_tasks`` prediction tasks,
    saved in ``folder`` with a stub ``public/index.html`` (no images are written)."""
    image = StudyImage("public/0000000000000000.png", width=8, height=8)
    study = Study(
        name="collector load test",
        conditions=[Condition(key, key.title(), "<p>Intro.</p>", [Page("One", "", [image])])
                    for key in ("baseline", "inn", "concepts")],
        tasks=[PredictionTask(f"t{i}", image, model_logit=i - n_tasks / 2,
                              true_label="Peaky" if i % 2 else "Stretchy")
               for i in range(n_tasks)],
        tutorial_intro="<p>Tutorial.</p>", tutorial=[Page("Row", "", [image])],
        comprehension_page=Page("Check", "", [image]),
        checks=[CheckQuestion("comprehension_1", "comprehension", "Q1?", ["a", "b"], 1),
                CheckQuestion("comprehension_2", "comprehension", "Q2?", ["a", "b"], 2),
                *default_attention_checks()],
        prolific_completion_code=prolific, public_dir="public", seed=7)
    (folder / "public").mkdir(parents=True, exist_ok=True)
    (folder / "public" / "index.html").write_text("<!doctype html><title>stub</title>\n",
                                                   encoding="utf-8")
    study.save(folder)
    return study


def simulated_pages(study: Study) -> list[tuple[str, dict[str, int]]]:
    """The pages a participant who completes ``study`` saves, in order, each with the
    answers ``{tag: choice}`` it records (the right answer for every check)."""
    pages: list[tuple[str, dict[str, int]]] = [
        ("consent", {"consent": 1, **({"device": 1} if study.device_choices else {})})]
    if study.tutorial or study.comprehension_page is not None:
        pages.append(("tutorial_intro", {}))
        pages += [(f"tutorial_{i}", {}) for i in range(1, len(study.tutorial) + 1)]
        if study.comprehension_page is not None:
            pages.append(("comprehension", {c.tag: c.correct
                                            for c in study.checks_of("comprehension")}))
    pages += [("condition_intro", {}), ("explanation_1", {})]
    on_attributes, slots = attention_slots(study)
    n_attributes = len(study.attributes)
    attributes = {f"relevance_{i}": 1 + i % 2 for i in range(1, n_attributes + 1)}
    attributes |= {f"confidence_{i}": 1 + i % 5 for i in range(1, n_attributes + 1)}
    pages.append(("attributes", attributes | {c.tag: c.correct for c in on_attributes}))
    for i, task in enumerate(study.tasks):
        pages += [(f"check_{c.tag}", {c.tag: c.correct}) for c in slots.get(i, [])]
        pages.append((f"task_{i + 1}", {f"predict_{task.key}": 1 + i % 2}))
    return pages


def participant_records(pages: list[tuple[str, dict[str, int]]], index: int, arm: str,
                        participant: str, started: str, prolific: dict[str, str]
                        ) -> dict[str, Any]:
    """The one trial record the page would store for page ``index`` of ``pages``
    (fields of :mod:`dubfiv.study.jspsych.records`; the last page says ``finished``)."""
    name, answers = pages[index]
    record: dict[str, Any] = {
        "trial_type": "survey-html-form" if answers else "html-button-response",
        "trial_index": index, "time_elapsed": 4000 * (index + 1), "rt": 4000,
        "dubfiv_participant": participant, "dubfiv_arm": arm, "dubfiv_mode": "collector",
        "dubfiv_started": started, "dubfiv_page": name, "dubfiv_answers": answers,
        **prolific}
    if index == len(pages) - 1:
        record["dubfiv_end"] = "finished"
    return record


@dataclasses.dataclass
class LoadResult:
    """What :func:`run_load` measured. Latencies in milliseconds, ``seconds`` the wall time
    from the first request to the last answer."""

    participants: int
    page_saves: int
    requests: int
    seconds: float
    save_latencies_ms: list[float]
    participant_ids: list[str]
    errors: list[str]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")

    def save_percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile (0-100) of the page-save latency."""
        if not self.save_latencies_ms:
            return float("nan")
        if len(self.save_latencies_ms) == 1:
            return self.save_latencies_ms[0]
        cuts = statistics.quantiles(self.save_latencies_ms, n=100, method="inclusive")
        return cuts[min(98, max(0, round(q) - 1))]


async def _participant(base_url: str, number: int, pages: list[tuple[str, dict[str, int]]],
                       result: LoadResult, timeout_s: float) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout_s),
                                 trust_env=False) as client:  # no proxy for 127.0.0.1
        await _take_part(client, number, pages, result)


async def _take_part(client: Any, number: int, pages: list[tuple[str, dict[str, int]]],
                     result: LoadResult) -> None:
    prolific = {"PROLIFIC_PID": f"load{number:05d}{os.getpid():x}", "STUDY_ID": "load",
                "SESSION_ID": f"s{number}"}
    answer = await client.post("/api/sessions", json={"token": None, **prolific})
    result.requests += 1
    if answer.status_code != 200:
        result.errors.append(f"participant {number}: start -> {answer.status_code}")
        return
    session = answer.json()
    participant, arm = session["participant"], session["arm"]
    result.participant_ids.append(participant)
    headers = {"Authorization": f"Bearer {session['token']}"}
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    order = [*range(len(pages)), number % len(pages)]  # one page saved twice, as a retry
    for index in order:
        body = {"page": pages[index][0], "records": [participant_records(
            pages, index, arm, participant, started, prolific)]}
        t0 = time.perf_counter()
        answer = await client.post(f"/api/sessions/{participant}/pages", json=body,
                                   headers=headers)
        result.save_latencies_ms.append((time.perf_counter() - t0) * 1000)
        result.requests += 1
        result.page_saves += 1
        if answer.status_code != 200:
            result.errors.append(f"participant {number}: page {pages[index][0]} -> "
                                 f"{answer.status_code}")
            return
    answer = await client.post(f"/api/sessions/{participant}/end", json={"end": "finished"},
                               headers=headers)
    result.requests += 1
    if answer.status_code != 200 or not answer.json().get("html"):
        result.errors.append(f"participant {number}: end -> {answer.status_code}")


async def _run(base_url: str, n: int, pages: list[tuple[str, dict[str, int]]],
               timeout_s: float) -> LoadResult:
    result = LoadResult(n, 0, 0, 0.0, [], [], [])
    t0 = time.perf_counter()
    outcomes = await asyncio.gather(*(_participant(base_url, i, pages, result, timeout_s)
                                      for i in range(n)), return_exceptions=True)
    result.seconds = time.perf_counter() - t0
    result.errors += [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return result


def run_load(base_url: str, study: Study, n_participants: int, timeout_s: float = 60.0
             ) -> LoadResult:
    """``n_participants`` simulated participants of ``study`` at once against the
    collector at ``base_url``; each saves :func:`simulated_pages` plus one page twice."""
    return asyncio.run(_run(base_url.rstrip("/"), n_participants, simulated_pages(study),
                            timeout_s))


def _answers(url: str) -> bool:
    """Whether ``GET url`` answers 200 (the collector serves its ``index.html``)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
    try:
        with opener.open(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


class ServerProcess:
    """``dubfiv_study_serve STUDY_DIR --host 127.0.0.1 --port 0 [--database URL]`` in a
    subprocess, as a context manager: ``url`` is set once it answers; on exit it gets
    SIGINT (uvicorn's graceful shutdown), then SIGKILL after ``stop_s`` seconds."""

    def __init__(self, study_dir: Path, database: str | None = None,
                 start_timeout_s: float = 60.0, stop_s: float = 15.0) -> None:
        self.study_dir = study_dir
        self.database = database
        self.start_timeout_s = start_timeout_s
        self.stop_s = stop_s
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    def cpu_seconds(self) -> float:
        """CPU time (user + system, seconds) the server process used so far (Linux's
        ``/proc``; NaN where it cannot be read)."""
        if self.process is None:
            return float("nan")
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        """What the server printed so far (stdout and stderr)."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, "-m", "dubfiv.cli.study_serve", str(self.study_dir),
                   "--host", "127.0.0.1", "--port", "0"]
        if self.database:
            command += ["--database", self.database]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            match = _URL_RE.search(self.log())
            if match and _answers(match.group(1)):
                self.url = match.group(1)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the collector did not start:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(self.stop_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
