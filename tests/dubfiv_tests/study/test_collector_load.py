"""The real collector (``dubfiv_study_serve`` under uvicorn, on 127.0.0.1) over HTTP.

Many participants at once lose nothing; bodies over the limit, foreign tokens, paths
outside ``public/`` and reads of stored data are refused over a real socket (raw
request targets, so no client normalises ``..`` away); a reload gets its records
back; finished Prolific ids are refused; assignment stays balanced.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from postgres_server import fresh_database

from dubfiv.study.collector import open_store
from dubfiv.study.collector.app import REFUSED_HTML, finish_pages
from dubfiv.study.collector.loadtest import (
    ServerProcess,
    run_load,
    simulated_pages,
    write_load_study,
)
from dubfiv.study.jspsych.records import arms

pytestmark = pytest.mark.timeout(120)
SECRET = "private-names-secret"
LIMIT = 256 * 1024  # the collector's default body limit


def request(url: str, method: str, target: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request with ``target`` sent byte for byte; (status, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        for key, value in {**(headers or {}),
                           **({"Content-Length": str(len(body))} if body is not None else {})
                           }.items():
            conn.putheader(key, value)
        conn.endheaders()
        if body is not None:
            try:
                conn.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered before reading it all: read that answer
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def post_json(url: str, target: str, data: object, token: str | None = None
              ) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, body = request(url, "POST", target, json.dumps(data).encode(), headers)
    return status, json.loads(body) if body else {}


@pytest.fixture()
def study_folder(tmp_path: Path):
    folder = tmp_path / "study"
    study = write_load_study(folder, n_tasks=3)  # 11 pages: keeps the load test short
    (folder / "records").mkdir()
    (folder / "records" / "image_names.json").write_text(json.dumps({"secret": SECRET}))
    (folder / "public" / "jspsych").mkdir()
    (folder / "public" / "jspsych" / "jspsych.js").write_text("// jspsych\n")
    (folder / "public" / "escape.json").symlink_to(folder / "study.json")
    return study, folder


def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A new, empty database: SQLite in tmp, or a schema on the PostgreSQL test server."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'load.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize(("backend", "n"), [
    ("sqlite", 200), ("postgresql", 100),
    pytest.param("postgresql", 200, marks=pytest.mark.slow)])  # ~20-30 s on 2 busy cores
def test_concurrent_participants_lose_nothing(request: pytest.FixtureRequest, study_folder,
                                              tmp_path: Path, backend: str, n: int) -> None:
    study, folder = study_folder
    database = database_url(request, backend, tmp_path)
    with ServerProcess(folder, database) as server:
        result = run_load(server.url, study, n, timeout_s=90)
    assert result.errors == [], (result.errors[:5], server.log()[-3000:])
    pages = [name for name, _ in simulated_pages(study)]
    assert result.page_saves == n * (len(pages) + 1)  # one page of each saved twice
    store = open_store(database)
    try:
        by_participant = store.records_by_participant()
        counts = store.page_counts()
        ends = store.end_counts()
        arm_counts = store.arm_counts()
    finally:
        store.close()
    assert sorted(by_participant) == sorted(result.participant_ids) and len(counts) == n
    for participant, records in by_participant.items():
        assert counts[participant] == len(pages)
        assert [r["dubfiv_page"] for r in records] == pages  # each page once, in order
        assert {r["dubfiv_participant"] for r in records} == {participant}
    assert ends == {"finished": n}
    assert sum(arm_counts.values()) == n and max(arm_counts.values()) - min(
        arm_counts.values()) <= 1


@pytest.fixture()
def server(study_folder, tmp_path: Path):
    study, folder = study_folder
    database = f"sqlite:///{tmp_path / 'guards.sqlite'}"
    with ServerProcess(folder, database) as running:
        yield study, running.url, database


def test_refusals_over_http(server) -> None:
    study, url, database = server
    status, alice = post_json(url, "/api/sessions", {"token": None, "PROLIFIC_PID": "alice"})
    assert status == 200
    _, bob = post_json(url, "/api/sessions", {"token": None})
    pages = f"/api/sessions/{alice['participant']}/pages"
    assert post_json(url, pages, {"page": "consent", "records": [{"who": "alice"}]},
                     alice["token"]) == (200, {"saved": "consent"})

    # over the size limit: 413, nothing stored (declared length; and a chunked body)
    huge = json.dumps({"page": "tutorial_1", "records": [{"x": "y" * LIMIT}]}).encode()
    status, _ = request(url, "POST", pages, huge, {"Authorization": f"Bearer {alice['token']}"})
    assert status == 413
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(huge[i:i + 65536]), huge[i:i + 65536])
                       for i in range(0, len(huge), 65536)) + b"0\r\n\r\n"
    status, _ = request_chunked(url, pages, chunked, alice["token"])
    assert status == 413

    # another participant's token: 401, nothing changed
    assert post_json(url, pages, {"page": "consent", "records": [{"who": "bob"}]},
                     bob["token"])[0] == 401
    assert post_json(url, f"/api/sessions/{alice['participant']}/end", {"end": "declined"},
                     bob["token"])[0] == 401

    # a reload gets the stored records back
    status, again = post_json(url, "/api/sessions", {"token": alice["token"],
                                                     "PROLIFIC_PID": "alice"})
    assert status == 200 and again["participant"] == alice["participant"]
    assert [r["who"] for r in again["saved"]] == ["alice"]

    # a finished Prolific id is refused politely
    for page in finish_pages(study):
        assert post_json(url, pages, {"page": page, "records": []}, alice["token"])[0] == 200
    status, done = post_json(url, f"/api/sessions/{alice['participant']}/end",
                             {"end": "finished"}, alice["token"])
    assert status == 200 and done["redirect"].endswith("cc=LOADTEST")
    assert post_json(url, "/api/sessions", {"token": None, "PROLIFIC_PID": "alice"}) == (
        403, {"refused": "finished", "html": REFUSED_HTML})

    store = open_store(database)
    try:
        records = store.records_by_participant()
        assert store.page_counts()[alice["participant"]] == 1 + len(finish_pages(study))
        assert store.refusals() == 1
    finally:
        store.close()
    assert records[alice["participant"]][0]["who"] == "alice"
    assert records[bob["participant"]] == []  # bob saved nothing


def request_chunked(url: str, target: str, chunked: bytes, token: str) -> tuple[int, bytes]:
    """A POST whose body is sent with ``Transfer-Encoding: chunked`` (no Content-Length)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", target)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        try:
            conn.send(chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


ESCAPES = ["/../study.json", "/%2e%2e/study.json", "/%2e%2e%2fstudy.json", "/..%2fstudy.json",
           "//etc/passwd", "/records/image_names.json", "/%252e%252e/study.json",
           "/%252e%252e%252fstudy.json", "/jspsych/../../study.json", "/escape.json",
           "/..%5cstudy.json", "/%2e%2e/records/image_names.json", "/study.json"]


def test_nothing_outside_public_and_no_reads(server, study_folder) -> None:
    _, folder = study_folder
    _, url, _ = server
    study_json = (folder / "study.json").read_bytes()
    passwd = Path("/etc/passwd").read_bytes()[:30]
    for target in ESCAPES:
        status, body = request(url, "GET", target)
        assert status == 404, target
        assert SECRET.encode() not in body and b"collector load test" not in body, target
        assert study_json[:40] not in body and (not passwd or passwd not in body), target
    status, body = request(url, "GET", "/")
    assert status == 200 and body == (folder / "public" / "index.html").read_bytes()
    assert request(url, "GET", "/jspsych/jspsych.js")[0] == 200
    for target in ("/jspsych/", "/jspsych", "/public/"):  # folders: no listings
        status, body = request(url, "GET", target)
        assert status == 404 and b"jspsych.js" not in body, target
    status, session = post_json(url, "/api/sessions", {"token": None, "PROLIFIC_PID": "carol"})
    assert status == 200
    pid = session["participant"]
    for target in ("/api/sessions", f"/api/sessions/{pid}", f"/api/sessions/{pid}/pages",
                   f"/api/sessions/{pid}/end", "/api/export", "/api/"):
        status, body = request(url, "GET", target,
                               headers={"Authorization": f"Bearer {session['token']}"})
        assert status in (404, 405), target
        assert b"carol" not in body and pid.encode() not in body, target


def test_balanced_assignment_over_http(server) -> None:
    study, url, _ = server
    counted: Counter[str] = Counter()
    for i in range(30):
        status, session = post_json(url, "/api/sessions", {"token": None,
                                                           "PROLIFIC_PID": f"seq-{i}"})
        assert status == 200
        if i % 5 == 4:  # screened out: not counted
            assert post_json(url, f"/api/sessions/{session['participant']}/end",
                             {"end": "comprehension"}, session["token"])[0] == 200
        else:
            counted[session["arm"]] += 1
    assert set(counted) == set(arms(study))
    assert max(counted.values()) - min(counted.values()) <= 1
