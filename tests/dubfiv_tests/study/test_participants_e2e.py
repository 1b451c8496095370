"""Every participant path through the served jsPsych study, in a real Chromium.

``dubfiv_study_serve`` (the real command, its own process, on loopback) serves the
study; simulated participants (:mod:`participant_driver`) click through the pages
with answers drawn from :func:`dubfiv.study.results.simulate.participant_plans`, whose
model has a known effect of the condition. In each condition one participant fails a
comprehension check (the page ends there) and one an attention check (finishes,
excluded later); one participant closes the tab midway and comes back (the page
resumes where it stopped); afterwards one finished participant opens the link again
(the collector refuses politely). Then ``dubfiv_study_results`` reads the database and
must recover the effect within its interval and count every exclusion.

Run on SQLite, and on PostgreSQL where the test server starts (``postgres_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_check import require_browser
from hosted_study import host_study, require_node_modules
from participant_driver import (
    Visit,
    arm_of,
    click_through,
    open_participant,
    run_participant,
    study_url,
)

from dubfiv.cli.study_results import main as results_main
from dubfiv.study.content import Study
from dubfiv.study.jspsych.records import arms, participant_row
from dubfiv.study.jspsych.writer import write_jspsych
from dubfiv.study.results.simulate import (
    ParticipantPlan,
    ParticipantPlans,
    SimulationConfig,
    participant_plans,
    spoil_plan,
)

PER_CONDITION = 33  # arrivals per condition: 1 fails comprehension, 1 attention -> >= 30 used
CONCURRENT = 4
TRUE_EFFECTS = {"inn": 1.3, "concepts": 0.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def collector(folder: Path, database: str) -> Iterator[str]:
    """``dubfiv_study_serve FOLDER --database URL`` in a process of its own; yields its URL."""
    port = _free_port()
    log = (folder.parent / "collector.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dubfiv.cli.study_serve", str(folder), "--port", str(port),
         "--database", database], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the collector did not start: " + (
                        folder.parent / "collector.log").read_text()) from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collector.sqlite'}"
    from postgres_server import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"))


class Cohort:
    """The plans waiting per arm; each arrival takes the next plan of the arm it got.
    The first arrival of an arm fails a comprehension check, the second an attention
    check."""

    def __init__(self, study: Study, plans: ParticipantPlans) -> None:
        self.queues: dict[str, list[ParticipantPlan]] = {}
        for arm, key in arms(study).items():
            queue = list(plans.plans[key])
            queue[0] = spoil_plan(study, queue[0], "comprehension")
            queue[1] = spoil_plan(study, queue[1], "attention")
            self.queues[arm] = queue
        self.taken: dict[str, ParticipantPlan] = {}  # PROLIFIC_PID -> plan

    def plan_for(self, pid: str, arm: str) -> dict[str, int]:
        plan = self.queues[arm].pop(0)
        self.taken[pid] = plan
        return plan.answers


async def _resuming_participant(browser: Any, base: str, pid: str, cohort: Cohort) -> Visit:
    """Closes the tab after the first explanation page, opens the link again in the
    same browser, and finishes."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        first = Visit(pid)
        page = await open_participant(context, first)
        await page.goto(study_url(base, pid))
        first.arm = await arm_of(page)
        plan = cohort.plan_for(pid, first.arm)
        await click_through(page, first, plan, stop_after="explanation_1")
        await page.close()
        second = Visit(pid)
        page = await open_participant(context, second)
        await page.goto(study_url(base, pid))
        second.arm = await arm_of(page)
        await click_through(page, second, plan)
        second.pages = [*first.pages, "<reload>", *second.pages]
        second.errors += first.errors
        return second
    finally:
        await context.close()


async def _play(binary: str, base: str, cohort: Cohort, n: int) -> tuple[list[Visit], Visit]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=binary,
                                                   args=["--no-sandbox", "--disable-gpu"])
        gate = asyncio.Semaphore(CONCURRENT)

        async def one(i: int) -> Visit:
            pid = f"{0x5eed0000 + i:024x}"
            async with gate:
                if i == 7:
                    return await _resuming_participant(browser, base, pid, cohort)
                return await run_participant(browser, base, pid,
                                             lambda arm, pid=pid: cohort.plan_for(pid, arm))

        visits = await asyncio.gather(*(one(i) for i in range(n)))
        finished = next(v for v in visits if v.end == "redirected")
        again = await run_participant(browser, base, finished.pid,
                                      lambda arm: pytest.fail("a finished PID got an arm"))
        await browser.close()
    return list(visits), again


def test_simulated_participants_through_the_served_study(database: str, full_study_dir,
                                                         tmp_path: Path) -> None:
    binary = require_browser()
    study, folder = full_study_dir
    study = host_study(study, folder)
    study.prolific_completion_code = "C0MPL3TE"
    for attribute in study.attributes:  # five attributes with a known truth
        attribute.relevant = attribute.key in ("arm_position", "obj_color")
    study.save(folder)
    write_jspsych(study, folder, jspsych_dir=require_node_modules())
    plans = participant_plans(study, SimulationConfig(
        n_per_condition=PER_CONDITION + 5, reference_accuracy=0.6,
        log_odds_effects=TRUE_EFFECTS, participant_sd=0.5, seed=11))
    cohort = Cohort(study, plans)
    n = PER_CONDITION * len(study.conditions)

    started = time.perf_counter()
    with collector(folder, database) as base:
        visits, again = asyncio.run(_play(binary, base, cohort, n))
    seconds = time.perf_counter() - started

    # every path ended as it should, with no error on any page
    assert [e for v in visits for e in v.errors] == []
    ends = Counter(v.end for v in visits)
    assert ends == {"redirected": n - 3, "comprehension": 3}, ends
    assert all(v.redirect and v.redirect.endswith("cc=C0MPL3TE") for v in visits
               if v.end == "redirected")
    resumed = next(v for v in visits if "<reload>" in v.pages)
    cut = resumed.pages.index("<reload>")
    assert resumed.pages[cut - 1] == "explanation_1"
    same_arm = next(v for v in visits if v.arm == resumed.arm and v.end == "redirected"
                    and v is not resumed and "comprehension" in v.pages)
    # after the reload it goes on from the next page: none again, none skipped
    assert resumed.pages[:cut] + resumed.pages[cut + 1:] == same_arm.pages
    assert again.end == "refused" and again.arm is None

    # the database holds every answer each participant gave, once
    from dubfiv.study.collector.store import open_store

    store = open_store(database)
    try:
        stored = store.records_by_participant()
        assert store.refusals() == 1
    finally:
        store.close()
    assert len(stored) == n
    by_pid = {participant_row(study, recs, "x")["PROLIFIC_PID"]: participant_row(
        study, recs, "x") for recs in stored.values()}
    for pid, plan in cohort.taken.items():
        row = by_pid[pid]
        asked = plan.answers if plan.end == "finished" else {
            t: a for t, a in plan.answers.items() if not t.startswith(
                ("relevance", "confidence", "predict", "attention"))}
        assert {t: row.get(t) for t in asked} == {t: str(a) for t, a in asked.items()}, pid
        assert row["condition"] == plan.condition

    # one analysis: the effect within its interval, every exclusion counted
    out = tmp_path / "results"
    assert results_main(["--study", str(folder), "--database", database,
                         "--min-duration-s", "0", "--output", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["runtime"]["name"] == "jspsych/collector"
    assert results["runtime"]["refused"] == 1
    excluded = results["exclusions"]["excluded"]
    assert excluded["failed_comprehension"] == 3 and excluded["failed_attention"] == 3
    assert sum(excluded.values()) == 6 and results["n_used"] == n - 6
    accuracy = results["accuracy"]
    assert min(c["n_participants"] for c in accuracy["conditions"].values()) >= 30
    contrasts = accuracy["primary"]["contrasts"]
    for key, effect in TRUE_EFFECTS.items():
        truth = plans.truth["marginal_log_odds_ratio"][key]
        low, high = contrasts[key]["log_odds_ratio_ci95"]
        assert low <= truth <= high, (key, truth, contrasts[key])
        print(f"\n{key}: log OR {contrasts[key]['log_odds_ratio']:.2f} [{low:.2f}, {high:.2f}], "
              f"truth {truth:.2f} (conditional {effect})")
    assert contrasts["inn"]["log_odds_ratio_ci95"][0] > 0  # the effect is found
    print(f"{n} participants + 1 refused in {seconds:.0f} s")
