"""The study page in JATOS mode, against a stand-in ``jatos`` object.

JATOS cannot be installed here, so a stand-in (:data:`STAND_IN`, injected with
``page.add_init_script``) plays ``jatos.js``: it records every call, ``onLoad(fn)``
calls ``fn``, ``urlQueryParameters`` holds Prolific's ids, ``studyJsonInput`` the
completion URL of ``records/jatos_study_input.json``, and ``batchSession`` is an
object in memory that the test carries from one participant to the next (as JATOS
shares it across a batch). One test serves the page below ``/publix/`` with a
``jatos.js`` file instead, as JATOS does, to show that ``index.html`` loads it there
and nowhere else.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hosted_study import host_study, require_node_modules
from test_jspsych_export import (
    answer_plan,
    chromium_browser,
    click_through,
    serve,
    watch_errors,
)

from dubfiv.study.content import Study
from dubfiv.study.jspsych.records import (
    arm_id,
    arms,
    check_hash,
    group_by_participant,
    participant_row,
)
from dubfiv.study.jspsych.writer import JATOS_INPUT, write_jspsych

QUERY = {"PROLIFIC_PID": "5f0c1a2b3c4d5e6f7a8b9c0d", "STUDY_ID": "study77",
         "SESSION_ID": "session88"}
BATCH_KEY = "dubfiv_arm_counts"

STAND_IN = """
(() => {
  const setup = __SETUP__;
  const calls = [];
  const batch = setup.batch;
  const copy = (v) => (v === undefined ? null : JSON.parse(JSON.stringify(v)));
  const call = (name, args) => calls.push({name: name, args: copy(Array.from(args))});
  window.__jatosStandIn = {calls: calls, batch: batch};
  const jatos = {
    urlQueryParameters: setup.query,
    studyJsonInput: setup.input,
    onLoad(fn) { call("onLoad", []); fn(); },
    batchSession: {
      get(name) { call("batchSession.get", [name]); return copy(batch[name]); },
      set(name, value) {
        call("batchSession.set", [name, value]);
        batch[name] = copy(value);
        return Promise.resolve();
      },
      replace(obj) {
        call("batchSession.replace", [obj]);
        Object.keys(batch).forEach((k) => delete batch[k]);
        Object.assign(batch, copy(obj));
        return Promise.resolve();
      },
    },
    submitResultData(data) { call("submitResultData", [data]); return Promise.resolve(); },
    endStudy(...args) { call("endStudy", args); return Promise.resolve(); },
    endStudyAndRedirect(...args) { call("endStudyAndRedirect", args); },
  };
  if (setup.ajax) {
    jatos.endStudyAjax = (...args) => { call("endStudyAjax", args); return Promise.resolve(); };
  }
  window.jatos = jatos;
})();
"""


def stand_in(batch: dict[str, Any], study_input: dict[str, Any], ajax: bool = False) -> str:
    setup = {"batch": batch, "input": study_input, "query": QUERY, "ajax": ajax}
    return STAND_IN.replace("__SETUP__", json.dumps(setup))


def seeded_order(n: int, seed: str) -> list[int]:
    """The page's attribute order for participant ``seed``, computed here: a Fisher-Yates
    shuffle whose step i swaps i with FNV-1a("<seed>:order:<i>") mod (i+1)."""
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(check_hash(seed, "order", i), 16) % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order


@pytest.fixture()
def jatos_study(full_study_dir: tuple[Study, Path]) -> tuple[Study, Path, dict[str, Any]]:
    """The full fake study with its page (local jsPsych) and its JATOS study input."""
    study, folder = full_study_dir
    study = host_study(study, folder)
    write_jspsych(study, folder, require_node_modules())
    return study, folder, json.loads((folder / JATOS_INPUT).read_text())


def _participant(browser: Any, base: str, script: str, plan: dict[str, int],
                 on_page: Any = None) -> tuple[Any, Any, list[dict[str, Any]], list[str]]:
    """One participant in a fresh context: (page, trip, the stand-in's calls, errors)."""
    context = browser.new_context()
    page = context.new_page()
    errors = watch_errors(page)
    page.add_init_script(script)
    page.goto(f"{base}/index.html")
    trip = click_through(page, plan, (lambda name: on_page(page, name)) if on_page else None)
    calls = page.evaluate("window.__jatosStandIn.calls")
    return page, trip, calls, errors


def _named(calls: list[dict[str, Any]], name: str) -> list[list[Any]]:
    return [c["args"] for c in calls if c["name"] == name]


def test_a_finisher_is_stored_page_by_page_and_sent_to_prolific(jatos_study) -> None:
    study, folder, study_input = jatos_study
    url = study_input["prolific_completion_url"]
    assert url.endswith("cc=ABC123")
    plan = answer_plan(study)
    seen: dict[str, Any] = {}

    def on_page(page: Any, name: str) -> None:
        if name == "attributes":
            seen["participant"] = page.evaluate("window.dubfivStudy.participant")
            seen["rows"] = [page.evaluate(
                f"Array.from(document.querySelectorAll('.dubfiv-matrix')[{m}]"
                ".querySelectorAll('tr[data-row]')).map(r => r.dataset.row)") for m in (0, 1)]

    with serve(folder / "public") as base, chromium_browser() as browser:
        page, trip, calls, errors = _participant(browser, base, stand_in({}, study_input),
                                                 plan, on_page)
        assert errors == []
        assert trip.end == "finished" and study.end_text in trip.end_html
        info = page.evaluate("window.dubfivStudy")
    assert calls[0]["name"] == "onLoad" and info["mode"] == "jatos"
    # one submitResultData per page: all records so far, as a JSON array text
    submitted = [json.loads(args[0]) for args in _named(calls, "submitResultData")]
    assert len(submitted) == len(trip.pages)
    for i, records in enumerate(submitted):
        assert [r["dubfiv_page"] for r in records] == trip.pages[:i + 1]
    records = submitted[-1]
    assert all(r["dubfiv_mode"] == "jatos" and r["dubfiv_arm"] == info["arm"]
               and r["PROLIFIC_PID"] == QUERY["PROLIFIC_PID"]
               and r["SESSION_ID"] == QUERY["SESSION_ID"]
               and isinstance(r["rt"], int) and r["trial_type"] for r in records)
    assert [r.get("dubfiv_end") for r in records] == [None] * (len(records) - 1) + ["finished"]
    elapsed = [r["time_elapsed"] for r in records]
    assert elapsed == sorted(elapsed)
    # the analysis reads them back into the answers clicked
    grouped = group_by_participant(records)
    assert list(grouped) == [info["participant"]]
    row = participant_row(study, grouped[info["participant"]], "jspsych/jatos")
    assert {tag: row[tag] for tag in trip.clicked} == {t: str(v) for t, v in trip.clicked.items()}
    assert row["condition"] == arms(study)[info["arm"]] and row["Finished"] == "1"
    assert row["PROLIFIC_PID"] == QUERY["PROLIFIC_PID"] and row["StartDate"]
    assert row["DistributionChannel"] == "anonymous"
    # the redirect, through JATOS, and nothing else ends the study
    assert _named(calls, "endStudyAndRedirect") == [[url, True, "dubfiv_end: finished"]]
    assert _named(calls, "endStudy") == []
    # the batch counted the arm; the rows are in the participant's own order
    assert _named(calls, "batchSession.set") == [[BATCH_KEY, {info["arm"]: 1}]]
    order = seeded_order(len(study.attributes), seen["participant"])
    assert seen["rows"] == [[f"{m}_{i + 1}" for i in order] for m in ("relevance", "confidence")]
    assert order != sorted(order) or seeded_order(7, "other") != list(range(7))


def test_arms_are_balanced_and_screened_out_participants_see_why(jatos_study) -> None:
    """Six participants through one batch session: each arm twice, least used first; each
    ends early (declined, device, a wrong comprehension answer) with endStudy, not the
    redirect, and sees the early-end text."""
    study, folder, study_input = jatos_study
    batch: dict[str, Any] = {}
    assigned = []
    plans = [({**answer_plan(study), "consent": 2}, "declined", 1),
             ({**answer_plan(study), "device": 2}, "device", 1),
             (answer_plan(study, wrong="comprehension_1"), "comprehension", 5)]
    with serve(folder / "public") as base, chromium_browser() as browser:
        for k in range(6):
            plan, end, n_pages = plans[k % 3]
            page, trip, calls, errors = _participant(browser, base, stand_in(batch, study_input),
                                                     plan)
            assert errors == []
            assert trip.end == end and len(trip.pages) == n_pages
            assert html.unescape(study.early_end_text(end)) in trip.end_html
            assert "Please return your submission" in trip.end_html
            assert _named(calls, "endStudy") == [[False, f"dubfiv_end: {end}"]]
            assert _named(calls, "endStudyAndRedirect") == []
            last = json.loads(_named(calls, "submitResultData")[-1][0])
            assert len(last) == n_pages and last[-1]["dubfiv_end"] == end
            row = participant_row(study, last, "jspsych/jatos")
            assert row["Finished"] == "0" and row["consent"] == str(plan["consent"])
            batch = page.evaluate("window.__jatosStandIn.batch")
            assigned.append(page.evaluate("window.dubfivStudy.arm"))
            page.context.close()
        every = sorted(arms(study))
        assert sorted(assigned[:3]) == every and sorted(assigned[3:]) == every
        assert batch == {BATCH_KEY: {a: 2 for a in every}}
        # the least used arm is taken even when the others are far ahead
        lagging = arm_id(study, "inn")
        counts = {a: (0 if a == lagging else 5) for a in every}
        page, *_ = _participant(browser, base, stand_in({BATCH_KEY: counts}, study_input),
                                {**answer_plan(study), "consent": 2})
        assert page.evaluate("window.dubfivStudy.arm") == lagging
        assert page.evaluate("window.__jatosStandIn.batch")[BATCH_KEY][lagging] == 1


def test_without_a_completion_url_the_study_ends_in_place(jatos_study) -> None:
    """No ``prolific_completion_url``: a finisher sees the end text and the study ends
    without a redirect; where jatos.js has endStudyAjax (which stays on the page), the
    page uses it."""
    study, folder, _ = jatos_study
    with serve(folder / "public") as base, chromium_browser() as browser:
        _, trip, calls, errors = _participant(browser, base, stand_in({}, {}, ajax=True),
                                              answer_plan(study))
        assert errors == [] and trip.end == "finished" and study.end_text in trip.end_html
        assert _named(calls, "endStudyAjax") == [[True, "dubfiv_end: finished"]]
        assert _named(calls, "endStudy") == _named(calls, "endStudyAndRedirect") == []


def test_index_loads_jatos_js_under_publix_only(jatos_study, tmp_path: Path) -> None:
    """Served below ``/publix/`` (JATOS' study paths) index.html loads ``jatos.js`` beside
    it before the runtime starts; served anywhere else it asks for no jatos.js."""
    study, folder, study_input = jatos_study
    root = tmp_path / "server"
    component = root / "publix" / "4f1c2d" / "8a9b"
    shutil.copytree(folder / "public", component)
    (component / "jatos.js").write_text(stand_in({}, study_input))
    shutil.copytree(folder / "public", root / "plain")
    with serve(root) as base, chromium_browser() as browser:
        page = browser.new_page()
        errors = watch_errors(page)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{base}/publix/4f1c2d/8a9b/index.html")
        trip = click_through(page, {**answer_plan(study), "consent": 2})
        assert trip.end == "declined" and errors == []
        assert page.evaluate("window.dubfivStudy.mode") == "jatos"
        assert f"{base}/publix/4f1c2d/8a9b/jatos.js" in requested
        requested.clear()
        page.goto(f"{base}/plain/index.html?preview=1")
        page.wait_for_selector(".dubfiv-page[data-page=consent]")
        assert not [u for u in requested if "jatos" in u]
        assert page.evaluate("window.dubfivStudy.mode") == "preview"
