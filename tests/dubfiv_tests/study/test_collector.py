"""The collector's API, store, export and command line (fast: in-process app, SQLite in tmp).

Every test that writes runs on SQLite and, where the private test server started
(``postgres_url``), on PostgreSQL. The real server under load is in
``test_collector_load.py``.
"""

from __future__ import annotations

import csv
import json
import random
import socket
import warnings
from collections import Counter
from pathlib import Path

import pytest
from postgres_server import fresh_database
from starlette.exceptions import StarletteDeprecationWarning

from dubfiv.cli import study_serve
from dubfiv.study.collector import CollectorSettings, StoreError, open_store
from dubfiv.study.collector.app import COMPLETION_URL, REFUSED_HTML, create_app
from dubfiv.study.collector.assign import choose_arm
from dubfiv.study.collector.public import public_file
from dubfiv.study.collector.store import database_url, hash_token, shown_url
from dubfiv.study.content import (
    CheckQuestion,
    Condition,
    Page,
    PredictionTask,
    Study,
    StudyImage,
    default_attention_checks,
)
from dubfiv.study.jspsych.records import arms

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; httpx works the same here
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

CODE = "C0MPL3TE"
SECRET = "do-not-serve-this-secret"


def make_study(folder: Path, prolific: str | None = CODE) -> Study:
    """Three conditions (baseline, inn, concepts), two tasks, checks; study.json, a stub
    public/ (index.html, jspsych/plugin.js) and a private records/ file."""
    image = StudyImage("public/a1b2c3d4e5f60718.png", width=4, height=4)
    study = Study(
        name=f"collector test {SECRET}",
        conditions=[Condition(key, key.title(), "", [Page("P", "", [image])])
                    for key in ("baseline", "inn", "concepts")],
        tasks=[PredictionTask("t0", image, 1.5, "Stretchy"),
               PredictionTask("t1", image, -0.5, "Peaky")],
        checks=[CheckQuestion("comprehension_1", "comprehension", "Q?", ["a", "b"], 2),
                *default_attention_checks()],
        prolific_completion_code=prolific, public_dir="public", seed=11)
    (folder / "public" / "jspsych").mkdir(parents=True)
    (folder / "public" / "index.html").write_text("<!doctype html><p>the page</p>\n")
    (folder / "public" / "jspsych" / "plugin.js").write_text("// plugin\n")
    (folder / "public" / "a1b2c3d4e5f60718.png").write_bytes(b"\x89PNG fake")
    (folder / "records").mkdir()
    (folder / "records" / "image_names.json").write_text(json.dumps({"secret": SECRET}))
    study.save(folder)
    return study


@pytest.fixture()
def study_folder(tmp_path: Path) -> tuple[Study, Path]:
    folder = tmp_path / "study"
    return make_study(folder), folder


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database: SQLite in tmp, or one on the PostgreSQL test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'collector.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def served(study_folder, store_url):
    """(study, folder, store, client) of the app on ``store_url``."""
    study, folder = study_folder
    store = open_store(store_url)
    app = create_app(folder, store, CollectorSettings(max_body_bytes=4096, seed=5))
    with TestClient(app) as client:
        yield study, folder, store, client
    store.close()


def start(client, **body) -> dict:
    answer = client.post("/api/sessions", json={"token": None, **body})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    return answer.json()


def bearer(session: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


def save(client, session: dict, page: str, records: list[dict] | None = None, **kwargs):
    records = [{"dubfiv_page": page, "time_elapsed": 1000}] if records is None else records
    return client.post(f"/api/sessions/{session['participant']}/pages",
                       json={"page": page, "records": records},
                       headers=kwargs.pop("headers", bearer(session)), **kwargs)


def end(client, session: dict, reason: str, headers: dict | None = None):
    return client.post(f"/api/sessions/{session['participant']}/end", json={"end": reason},
                       headers=headers or bearer(session))


def finish_pages(study: Study) -> list[str]:
    return ["attributes"] + [f"task_{i + 1}" for i in range(len(study.tasks))]


# --------------------------------------------------------------------------- sessions


def test_session_pages_and_prolific_redirect(served) -> None:
    study, _, store, client = served
    session = start(client, PROLIFIC_PID="pid-1", STUDY_ID="s", SESSION_ID="x")
    assert session["arm"] in arms(study)
    assert session["saved"] == [] and session["elapsed_ms"] == 0
    assert save(client, session, "consent").json() == {"saved": "consent"}
    early = end(client, session, "finished")  # the attribute and task pages are missing
    assert early.status_code == 409 and "task_2" in early.json()["error"]
    for page in finish_pages(study):
        assert save(client, session, page).status_code == 200
    done = end(client, session, "finished")
    assert done.status_code == 200
    assert done.json() == {"redirect": f"{COMPLETION_URL}{CODE}", "html": study.end_text}
    assert end(client, session, "finished").json() == done.json()  # a retried request
    assert end(client, session, "device").status_code == 409
    assert save(client, session, "end").status_code == 409  # the session has ended
    records = store.records_by_participant()[session["participant"]]
    assert [r["dubfiv_page"] for r in records] == ["consent", *finish_pages(study)]
    assert {r["dubfiv_arm"] for r in records} == {session["arm"]}


def test_screened_out_and_non_prolific_messages(tmp_path: Path, store_url: str) -> None:
    study = make_study(tmp_path / "s", prolific=None)
    store = open_store(store_url)
    with TestClient(create_app(tmp_path / "s", store)) as client:
        out = start(client)
        assert end(client, out, "device").json() == {
            "redirect": None, "html": study.early_end_text("device")}
        done = start(client)
        for page in finish_pages(study):
            save(client, done, page)
        assert end(client, done, "finished").json() == {"redirect": None,
                                                        "html": study.end_text}
    store.close()


def test_finished_or_screened_out_pid_is_refused(served) -> None:
    study, _, store, client = served
    for pid, reason in (("finisher", "finished"), ("decliner", "declined")):
        session = start(client, PROLIFIC_PID=pid)
        if reason == "finished":
            for page in finish_pages(study):
                save(client, session, page)
        assert end(client, session, reason).status_code == 200
        again = client.post("/api/sessions", json={"PROLIFIC_PID": pid, "token": None})
        assert again.status_code == 403
        assert again.json() == {"refused": "finished", "html": REFUSED_HTML}
        # the old token of the ended session is refused as well
        assert client.post("/api/sessions", json={"token": session["token"]}
                           ).status_code == 403
    assert store.refusals() == 4
    assert sorted(store.end_counts().items()) == [("declined", 1), ("finished", 1)]


def test_reload_resumes_and_another_browser_gets_a_new_token(served) -> None:
    _, _, store, client = served
    first = start(client, PROLIFIC_PID="p-resume")
    save(client, first, "consent", [{"dubfiv_page": "consent", "dubfiv_answers": {"consent": 1}}])
    save(client, first, "tutorial_intro")
    reload = start(client, token=first["token"], PROLIFIC_PID="p-resume")
    assert (reload["participant"], reload["token"], reload["arm"]) == (
        first["participant"], first["token"], first["arm"])
    assert [r["dubfiv_page"] for r in reload["saved"]] == ["consent", "tutorial_intro"]
    assert reload["saved"][0]["dubfiv_answers"] == {"consent": 1}
    assert reload["elapsed_ms"] >= 0
    other = start(client, PROLIFIC_PID="p-resume")  # the link opened in another browser
    assert other["participant"] == first["participant"] and other["token"] != first["token"]
    assert save(client, first, "tutorial_1").status_code == 401  # the old token is replaced
    assert save(client, other, "tutorial_1").status_code == 200
    no_pid = start(client, token=other["token"])  # a reload without the URL's ids
    assert no_pid["participant"] == first["participant"]
    assert len(store.arm_counts(counted_only=False)) == 1  # one session in all
    assert store.refusals() == 0


def test_resaving_a_page_replaces_it(served) -> None:
    _, _, store, client = served
    session = start(client)
    save(client, session, "task_1", [{"dubfiv_page": "task_1", "v": 1}])
    save(client, session, "consent")
    save(client, session, "task_1", [{"dubfiv_page": "task_1", "v": 2}, {"v": 3}])
    assert store.page_counts() == {session["participant"]: 2}
    records = store.records_by_participant()[session["participant"]]
    assert [r.get("v") for r in records] == [2, 3, None]  # first-save order of pages


def test_server_sets_participant_and_arm(served) -> None:
    _, _, store, client = served
    session = start(client)
    save(client, session, "consent", [{"dubfiv_participant": "someone-else",
                                       "dubfiv_arm": "other-arm", "x": 1}])
    (record,) = store.records_by_participant()[session["participant"]]
    assert record == {"dubfiv_participant": session["participant"],
                      "dubfiv_arm": session["arm"], "x": 1}


def test_tokens_guard_each_session(served) -> None:
    _, _, store, client = served
    alice, bob = start(client), start(client)
    save(client, alice, "consent", [{"who": "alice"}])
    before = store.records_by_participant()
    assert save(client, alice, "consent", [{"who": "bob"}], headers=bearer(bob)
                ).status_code == 401
    assert save(client, alice, "consent", [{"who": "nobody"}], headers={}).status_code == 401
    assert save(client, alice, "consent", headers={"Authorization": "Basic abc"}
                ).status_code == 401
    assert end(client, alice, "declined", headers=bearer(bob)).status_code == 401
    ghost = {"participant": "0123456789abcdef", "token": bob["token"]}
    assert save(client, ghost, "consent").status_code == 401
    assert store.records_by_participant() == before
    assert store.end_counts() == {"running": 2}


def test_size_limit_stores_nothing(served) -> None:
    _, _, store, client = served
    session = start(client)
    big = [{"filler": "x" * 5000}]
    answer = save(client, session, "consent", big)
    assert answer.status_code == 413
    url = f"/api/sessions/{session['participant']}/pages"
    body = json.dumps({"page": "consent", "records": big}).encode()

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    assert client.post(url, content=chunks(), headers=bearer(session)).status_code == 413
    assert client.post("/api/sessions", content=b"[" * 5000).status_code == 413
    assert store.page_counts() == {}


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'{"page": "consent", "records": [NaN]}',
    b'{"page": "Consent!", "records": []}', b'{"page": "consent", "records": {}}',
    b'{"page": "consent", "records": [1]}', b'{"page": "consent"}'])
def test_malformed_page_saves_are_422(served, body: bytes) -> None:
    _, _, store, client = served
    session = start(client)
    answer = client.post(f"/api/sessions/{session['participant']}/pages", content=body,
                         headers=bearer(session))
    assert answer.status_code == 422 and answer.json()["error"]
    assert store.page_counts() == {}


def test_malformed_starts_and_ends_are_422(served) -> None:
    _, _, _, client = served
    assert client.post("/api/sessions", json={"PROLIFIC_PID": "x" * 500}).status_code == 422
    assert client.post("/api/sessions", json={"PROLIFIC_PID": 5}).status_code == 422
    session = start(client)
    assert end(client, session, "bored").status_code == 422


# --------------------------------------------------------------------------- assignment


def test_choose_arm_picks_the_fewest_ties_at_random() -> None:
    rng = random.Random(0)
    assert choose_arm(["a", "b", "c"], {"a": 2, "b": 1, "c": 2}, rng) == "b"
    picks = Counter(choose_arm(["a", "b", "c"], {"a": 1}, rng) for _ in range(300))
    assert set(picks) == {"b", "c"} and min(picks.values()) > 100


def test_assignment_is_balanced_without_screened_out_sessions(served) -> None:
    study, _, store, client = served
    counted: Counter[str] = Counter()
    screened: Counter[str] = Counter()
    for i in range(30):
        session = start(client, PROLIFIC_PID=f"balanced-{i}")
        if i % 4 == 3:  # every fourth is screened out at once: it must not count
            end(client, session, "device")
            screened[session["arm"]] += 1
        else:
            counted[session["arm"]] += 1
        assert max(counted.values()) - min(counted[a] for a in arms(study)) <= 1
    assert sum(counted.values()) == 23 and sum(screened.values()) == 7
    assert store.arm_counts() == dict(counted)
    assert store.arm_counts(counted_only=False) == dict(counted + screened)


# --------------------------------------------------------------------------- public/


@pytest.mark.parametrize("raw", [
    b"/../study.json", b"/%2e%2e/study.json", b"/%2e%2e%2fstudy.json", b"/..%2fstudy.json",
    b"//etc/passwd", b"/records/image_names.json", b"/%252e%252e/study.json",
    b"/%252e%252e%252fstudy.json", b"/jspsych/../../study.json", b"/jspsych/", b"/jspsych",
    b"/public/index.html", b"/..\\study.json", b"/%5c..%5cstudy.json", b"/index.html%00",
    b"/.hidden", b"/link_out.json", b"/api/sessions", b"/nope.html", b"/%ff"])
def test_public_file_refuses(study_folder, raw: bytes) -> None:
    _, folder = study_folder
    public = folder / "public"
    (public / ".hidden").write_text("hidden")
    (public / "link_out.json").symlink_to(folder / "study.json")
    assert public_file(public.resolve(), raw) is None


def test_public_file_serves_files_below_public(study_folder) -> None:
    _, folder = study_folder
    public = (folder / "public").resolve()
    (public / "link_in.js").symlink_to(public / "jspsych" / "plugin.js")
    assert public_file(public, b"/") == public / "index.html"
    assert public_file(public, b"/index.html") == public / "index.html"
    assert public_file(public, b"/jspsych/plugin.js") == public / "jspsych" / "plugin.js"
    assert public_file(public, b"/jspsych/%70lugin.js") == public / "jspsych" / "plugin.js"
    assert public_file(public, b"/link_in.js") == public / "jspsych" / "plugin.js"


def test_app_serves_public_and_nothing_else(served) -> None:
    _, _, _, client = served
    start(client, PROLIFIC_PID="someone")
    page = client.get("/?PROLIFIC_PID=abc")
    assert page.status_code == 200 and "the page" in page.text
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/jspsych/plugin.js").headers["content-type"].startswith(
        "text/javascript")
    assert client.head("/").status_code == 200
    for url in ("/jspsych/", "/records/image_names.json", "/study.json", "/api/export",
                "/api/sessions", "/api/sessions/abc", "/api/sessions/abc/pages",
                "/api/sessions/abc/end"):
        answer = client.get(url)
        assert answer.status_code in (404, 405), url
        assert SECRET not in answer.text and "someone" not in answer.text
    assert client.post("/api/export").status_code in (404, 405)
    assert client.delete("/api/sessions").status_code in (404, 405)


# --------------------------------------------------------------------------- export


def _answers(page: str, i: int) -> dict:
    return {"consent": {"consent": 1, "device": 1},
            "attributes": {"relevance_1": 1 + i % 2, "confidence_1": 3},
            "task_1": {"predict_t0": 1 + i % 2}, "task_2": {"predict_t1": 2}}.get(page, {})


def test_export_writes_one_row_per_participant(served, store_url: str, tmp_path: Path,
                                               capsys) -> None:
    study, folder, _, client = served
    sent = {}
    for i in range(4):
        session = start(client, PROLIFIC_PID=f"export-{i}")
        pages = ["consent", *finish_pages(study)][: 5 if i < 3 else 2]
        for k, page in enumerate(pages):
            record = {"dubfiv_page": page, "time_elapsed": 1000 * (k + 1),
                      "dubfiv_started": "2026-01-02T03:04:05Z", "dubfiv_mode": "collector",
                      "dubfiv_answers": _answers(page, i), "PROLIFIC_PID": f"export-{i}"}
            if k == len(pages) - 1 and i < 3:
                record["dubfiv_end"] = "finished"
            save(client, session, page, [record])
        if i < 3:
            end(client, session, "finished")
        sent[session["participant"]] = (i, session["arm"])
    empty = start(client)["participant"]  # opened, nothing saved: a row with its id only
    out = tmp_path / "responses.csv"
    assert study_serve.main([str(folder), "--database", store_url, "--export", str(out)]) == 0
    assert "wrote 5 response row(s)" in capsys.readouterr().out
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and {r["ResponseId"] for r in rows} == {*sent, empty}
    assert {k: v for k, v in rows[-1].items() if v} == {
        "ResponseId": empty, "Finished": "0", "runtime": "jspsych/collector"}
    rows = rows[:-1]
    conditions = arms(study)
    header = out.read_text().splitlines()[0].split(",")
    assert header[:2] == ["ResponseId", "StartDate"] and "predict_t1" in header
    for row in rows:
        i, arm = sent[row["ResponseId"]]
        assert row["runtime"] == "jspsych/collector"
        assert row["condition"] == conditions[arm]
        assert row["PROLIFIC_PID"] == f"export-{i}"
        assert row["Finished"] == ("1" if i < 3 else "0")
        assert row["consent"] == "1"
        assert row["predict_t0"] == ("" if i == 3 else str(1 + i % 2))
        assert row["StartDate"] == "2026-01-02 03:04:05"
        assert row["Duration (in seconds)"] == ("4" if i < 3 else "2")


# --------------------------------------------------------------------------- URLs, CLI


def test_database_urls() -> None:
    assert database_url("postgresql://u:p@h:5/d").drivername == "postgresql+psycopg"
    assert database_url("postgres://u:p@h/d").drivername == "postgresql+psycopg"
    assert database_url("sqlite:///x.db").drivername == "sqlite"
    for bad in ("mysql://u:pw@h/d", "not a url", "sqlite://", "sqlite:///:memory:"):
        with pytest.raises(StoreError) as info:
            open_store(bad)
        assert "pw" not in str(info.value)
    assert shown_url("postgresql://user:hunter2@host:5432/db") == \
        "postgresql://user:***@host:5432/db"
    assert hash_token("abc") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_cli_one_line_errors(tmp_path: Path, study_folder, capsys) -> None:
    _, folder = study_folder

    def error(*argv: str) -> str:
        assert study_serve.main(list(argv)) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "study.json" in error(str(tmp_path / "nowhere"))
    bare = tmp_path / "bare"
    make_study(bare)
    (bare / "public" / "index.html").unlink()
    assert "jsPsych runtime" in error(str(bare))
    line = error(str(folder), "--port", "0",
                 "--database", "postgresql://user:hunter2@127.0.0.1:1/db")
    assert "127.0.0.1:1" in line and "hunter2" not in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "in use" in error(str(folder), "--port", str(port))
    assert "--port" in error(str(folder), "--port", "70000")
    assert "only sqlite" in error(str(folder), "--database", "mysql://u:p@h/d")
    out = tmp_path / "out.csv"
    assert "--database" in error(str(folder), "--export", str(out))  # nothing collected yet
    assert not out.exists() and not (folder / "records" / "collector.sqlite").exists()


def test_cli_default_database_is_private(study_folder) -> None:
    _, folder = study_folder
    url = study_serve.default_database(folder)
    assert url == f"sqlite:///{(folder / 'records' / 'collector.sqlite').absolute()}"
    assert "public" not in url
