"""The jsPsych export (issue 20, part 1): pinned packages, ``experiment.json``, the hosted
folder, the flags, and the page itself clicked through in Chromium (preview mode).

The study is the fake one of ``conftest.py`` (``full_study_dir``) with its images moved
into ``public/`` under neutral names, as the export does (``hosted_study.host_study``). The
jsPsych files come from the local install ``<repo>/.cache/jspsych/node_modules``
(``./dev test`` makes it with ``npm ci --prefix .cache/jspsych``): no CDN is reachable
here, so every browser test loads the local copies (``--jspsych-dir``). Tests that need
it, or Chromium, skip with the reason when it is missing.

The browser helpers (:func:`serve`, :func:`click_through`, :func:`answer_plan`, ...)
are shared with ``test_jatos.py``; ``hosted_study.py`` holds the study's layout and the
local install.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser_check import PageProblems, chromium, require_browser
from hosted_study import host_study, require_node_modules

from dubfiv.cli.export_user_study import build_parser
from dubfiv.cli.export_user_study import main as export_main
from dubfiv.study.build.export import check_public_folder
from dubfiv.study.build.export_config import ExportConfig, ExportError, check_runtimes
from dubfiv.study.build.names import NAMES_RECORD
from dubfiv.study.build.readme import readme_text
from dubfiv.study.content import Study
from dubfiv.study.jspsych.experiment import FORMAT, build_experiment, read_salt
from dubfiv.study.jspsych.packages import (
    NPM_DIR,
    PACKAGES,
    JsPsychPackageError,
    check_local,
)
from dubfiv.study.jspsych.records import (
    EXPERIMENT_JSON,
    arm_id,
    arms,
    check_hash,
    participant_row,
)
from dubfiv.study.jspsych.writer import JATOS_INPUT, PAGE_FILES, write_jspsych
from dubfiv.study.layout import attention_slots, participant_pages

CODE = "ABC123"  # the fake study's Prolific completion code
TIMEOUT_MS = 15_000


# ---------------------------------------------------------------------- shared helpers


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """``folder`` over HTTP on 127.0.0.1 (a port of its own); yields the base URL. A POST
    gets the plain server's HTML error, as from any static host."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def chromium_browser() -> contextlib.AbstractContextManager[Any]:
    """The system Chromium (Playwright), or skip."""
    return chromium(require_browser())


def watch_errors(page: Any) -> list[str]:
    """Uncaught exceptions, console errors and failed loads of ``page`` (a list that
    fills up)."""
    return PageProblems(page).errors


def answer_plan(study: Study, wrong: str | None = None) -> dict[str, int]:
    """Answers to every question (tag -> 1-based choice): the right one of each check,
    varied ones elsewhere; ``wrong``: this check's tag gets a wrong answer."""
    plan = {"consent": 1, "device": 1}
    for chk in study.checks:
        plan[chk.tag] = chk.correct if chk.tag != wrong else chk.correct % len(chk.choices) + 1
    for i in range(len(study.attributes)):
        plan[f"relevance_{i + 1}"] = 1 + i % 2
        plan[f"confidence_{i + 1}"] = 1 + (2 * i) % len(study.confidence_answers)
    for k, task in enumerate(study.tasks):
        plan[f"predict_{task.key}"] = 2 - k % 2
    return plan


def expected_pages(study: Study, condition_key: str) -> list[str]:
    """The page names a participant who finishes sees, from the study and the layout."""
    names = ["consent"]
    if study.tutorial or study.comprehension_page is not None:
        names += ["tutorial_intro"] + [f"tutorial_{i + 1}" for i in range(len(study.tutorial))]
    if study.comprehension_page is not None:
        names.append("comprehension")
    names += ["condition_intro"] + [f"explanation_{i + 1}" for i in
                                    range(len(study.condition(condition_key).pages))]
    names.append("attributes")
    _, slots = attention_slots(study)
    for i in range(len(study.tasks)):
        names += [f"check_{c.tag}" for c in slots.get(i, [])] + [f"task_{i + 1}"]
    return [*names, "end"]


_NEXT_PAGE_JS = """last => {
    if (!document.getElementById('dubfiv-display')) return {page: '#left'};  // redirected
    const el = document.querySelector('.dubfiv-page');
    return el && el.dataset.page !== last ?
        {page: el.dataset.page, end: el.dataset.end || null, html: el.innerHTML} : false;
}"""
_IMAGES_JS = """() => Array.from(document.querySelectorAll('.dubfiv-page img'))
    .map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"""


@dataclasses.dataclass
class Trip:
    """One participant's way through the page: pages seen, answers clicked, the end."""

    pages: list[str] = dataclasses.field(default_factory=list)
    clicked: dict[str, int] = dataclasses.field(default_factory=dict)
    end: str | None = None
    end_html: str = ""
    images: dict[str, list[str]] = dataclasses.field(default_factory=dict)


def _next_page(page: Any, last: str) -> dict[str, Any]:
    """The page shown once it is not ``last``: ``{page, end, html}`` (``page`` ``#left``:
    the browser left the study, e.g. for Prolific's completion page)."""
    from playwright.sync_api import Error as PlaywrightError

    for _ in range(3):
        try:
            return page.wait_for_function(_NEXT_PAGE_JS, arg=last,
                                          timeout=TIMEOUT_MS).json_value()
        except PlaywrightError as exc:  # a navigation destroyed the page's context
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
    raise AssertionError(f"the page kept navigating after {last!r}")


def click_through(page: Any, plan: Mapping[str, int],
                  on_page: Callable[[str], None] | None = None, limit: int = 80) -> Trip:
    """Answer each page from ``plan`` (as a participant would: check the radio buttons,
    press the page's button) until ``data-page="ended"`` (or the browser leaves the study:
    ``Trip.end`` ``left``); ``on_page(name)`` runs on each page before it is answered.
    Every page's images must have loaded."""
    trip = Trip()
    last = ""
    for _ in range(limit):
        shown = _next_page(page, last)
        name = last = shown["page"]
        if name == "#left":
            trip.end = "left"
            return trip
        if name == "ended":  # read at once: a redirect may follow
            trip.end, trip.end_html = shown["end"], shown["html"]
            return trip
        current = page.locator(f".dubfiv-page[data-page='{name}']")
        trip.pages.append(name)
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.dubfiv-page img'))"
            ".every(i => i.complete)", timeout=TIMEOUT_MS)
        images = page.evaluate(_IMAGES_JS)
        assert all(ok for _, ok in images), (name, images)
        trip.images[name] = [src for src, _ in images]
        if on_page is not None:
            on_page(name)
        tags = page.evaluate("() => Array.from(new Set(Array.from(document.querySelectorAll("
                             "'.dubfiv-page input[type=radio]')).map(r => r.name)))")
        for tag in tags:
            page.check(f".dubfiv-page input[name='{tag}'][value='{plan[tag]}']")
            trip.clicked[tag] = plan[tag]
        if tags:
            page.click("#jspsych-survey-html-form-next")
        else:
            buttons = current.locator(".jspsych-btn")
            assert buttons.count() == 1, name  # a text page has exactly one button
            buttons.click()
    raise AssertionError(f"no end after {limit} pages: {trip.pages}")


# ---------------------------------------------------------------------- fixtures


@pytest.fixture()
def hosted(full_study_dir: tuple[Study, Path]) -> tuple[Study, Path]:
    study, folder = full_study_dir
    return host_study(study, folder), folder


@pytest.fixture()
def local_page(hosted: tuple[Study, Path]) -> tuple[Study, Path]:
    """The hosted study with its jsPsych page (local jsPsych copies)."""
    study, folder = hosted
    page = write_jspsych(study, folder, require_node_modules())
    check_public_folder(folder, study, page)
    return study, folder


def _experiment(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "public" / EXPERIMENT_JSON).read_text(encoding="utf-8"))


def _sri(path: Path) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


# ---------------------------------------------------------------------- the pins


def test_pins_are_our_package_json() -> None:
    wanted = json.loads((NPM_DIR / "package.json").read_text())["dependencies"]
    assert {p.name: p.version for p in PACKAGES} == wanted
    lock = json.loads((NPM_DIR / "package-lock.json").read_text())["packages"]
    for package in PACKAGES:
        assert lock[f"node_modules/{package.name}"]["version"] == package.version
        for file in package.files:
            assert package.url(file) == (f"https://unpkg.com/{package.name}@{package.version}"
                                         f"/{file.path}")
            assert re.fullmatch(r"sha384-[A-Za-z0-9+/]{64}", file.integrity)
    assert [f.path for f in PACKAGES[0].files] == ["css/jspsych.css",
                                                   "dist/index.browser.min.js"]
    assert all([f.path for f in p.files] == ["dist/index.browser.min.js"] for p in PACKAGES[1:])


def test_pins_equal_a_local_npm_ci() -> None:
    """The constants are the versions and SHA-384 hashes of an ``npm ci`` of our files."""
    modules = require_node_modules()
    for package in PACKAGES:
        meta = json.loads((modules / package.name / "package.json").read_text())
        assert meta["version"] == package.version, package.name
        for file in package.files:
            assert _sri(modules / package.name / file.path) == file.integrity, file.path
    assert set(check_local(modules).values()) == {
        modules / p.name / f.path for p in PACKAGES for f in p.files}


def _bad_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "node_modules"
    shutil.copytree(require_node_modules(), dest)
    return dest


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_a_wrong_local_install_is_a_one_line_error(tmp_path: Path) -> None:
    modules = _bad_copy(tmp_path)
    meta_path = modules / "@jspsych" / "plugin-preload" / "package.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] = "2.0.0"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(JsPsychPackageError) as info:
        check_local(modules)
    line = _one_line(str(info.value))
    assert str(meta_path) in line and "2.0.0" in line and "2.1.0" in line
    assert f"npm ci --prefix {tmp_path}" in line and str(NPM_DIR / "package.json") in line
    assert info.value.parameter == "jspsych_dir"

    meta["version"] = "2.1.0"
    meta_path.write_text(json.dumps(meta))
    script = modules / "jspsych" / "dist" / "index.browser.min.js"
    script.write_bytes(script.read_bytes() + b"\n// changed\n")
    with pytest.raises(JsPsychPackageError) as info:
        check_local(modules)
    line = _one_line(str(info.value))
    assert str(script) in line and "sha384" in line and "npm ci --prefix" in line

    script.unlink()
    with pytest.raises(JsPsychPackageError, match="is missing"):
        check_local(modules)
    with pytest.raises(JsPsychPackageError, match="not a folder"):
        check_local(tmp_path / "nowhere")
    with pytest.raises(JsPsychPackageError, match="no readable"):
        check_local(tmp_path)  # a folder, but no node_modules


# ---------------------------------------------------------------------- experiment.json


def test_experiment_json_is_the_study_without_answers(local_page) -> None:
    study, folder = local_page
    exp = _experiment(folder)
    salt = exp["salt"]
    assert exp["format"] == FORMAT and re.fullmatch(r"[0-9a-f]{16}", salt)
    assert exp == build_experiment(study, salt)
    assert exp["title"] == study.title and exp["prolific"] is True
    assert exp["consent"]["text"] == study.consent_text
    assert exp["consent"]["choices"] == [study.consent_agree, study.consent_decline]
    assert exp["device"]["choices"] == study.device_choices
    # arms: the opaque ids of records.arm_id, in study order, with each condition's content
    assert list(exp["arms"]) == [arm_id(study, c.key) for c in study.conditions]
    assert arms(study) == {a: c.key for a, c in zip(exp["arms"], study.conditions,
                                                    strict=True)}
    for cond, arm in zip(study.conditions, exp["arms"].values(), strict=True):
        assert set(arm) == {"title", "intro", "pages"}
        assert (arm["title"], arm["intro"]) == (cond.title, cond.intro)
        assert [p["title"] for p in arm["pages"]] == [p.title for p in cond.pages]
        for page, shown in zip(cond.pages, arm["pages"], strict=True):
            assert [i["src"] for i in shown["images"]] == [study.hosted_path(i)
                                                            for i in page.images]
            grid = page.grid
            assert shown["grid"] == (None if grid is None else dataclasses.asdict(grid))
            assert all((folder / "public" / i["src"]).is_file() for i in shown["images"])
    # attributes in study order; the questions and their choices
    assert exp["attributes"]["labels"] == [a.label for a in study.attributes]
    assert exp["attributes"]["relevance"]["choices"] == study.relevance_answers
    assert exp["attributes"]["confidence"]["choices"] == study.confidence_answers
    assert exp["prediction"]["choices"] == study.class_names
    # tasks: key and image only, the image without its caption
    assert [t["key"] for t in exp["tasks"]] == [t.key for t in study.tasks]
    for i, (task, shown) in enumerate(zip(study.tasks, exp["tasks"], strict=True)):
        assert set(shown) == {"key", "image"}
        assert shown["image"]["src"] == study.hosted_path(task.image)
        assert shown["image"]["alt"] == f"Image {i + 1}" and shown["image"]["caption"] == ""
    # the tutorial and the comprehension checks, with the hash instead of the answer
    assert [p["title"] for p in exp["tutorial"]["pages"]] == [p.title for p in study.tutorial]
    checks = exp["comprehension"]["checks"]
    assert [c["tag"] for c in checks] == [c.tag for c in study.checks_of("comprehension")]
    for chk, shown in zip(study.checks_of("comprehension"), checks, strict=True):
        assert set(shown) == {"tag", "text", "choices", "hash"}
        assert shown["hash"] == check_hash(salt, chk.tag, chk.correct)
        assert all(check_hash(salt, chk.tag, c) != shown["hash"]
                   for c in range(1, len(chk.choices) + 1) if c != chk.correct)
    # attention checks where the layout puts them, without answers
    on_attributes, slots = attention_slots(study)
    assert [c["tag"] for c in exp["attention"]["attributes"]] == [c.tag for c in on_attributes]
    assert [[c["tag"] for c in cs] for cs in exp["attention"]["before_task"]] == [
        [c.tag for c in slots.get(i, [])] for i in range(len(study.tasks))]
    shown_checks = exp["attention"]["attributes"] + [
        c for cs in exp["attention"]["before_task"] for c in cs]
    assert all(set(c) == {"tag", "text", "choices"} for c in shown_checks)
    assert exp["end_text"] == study.end_text
    assert exp["early_end"] == {r: study.early_end_text(r)
                                for r in ("declined", "device", "comprehension")}
    assert json.loads((folder / JATOS_INPUT).read_text()) == {
        "prolific_completion_url": f"https://app.prolific.com/submissions/complete?cc={CODE}"}


def test_public_reveals_nothing(local_page) -> None:
    """Every hosted file (the page, the images, the jsPsych copies) is free of condition
    keys, logits, labels, the completion code, the image-name table and the answers."""
    study, folder = local_page
    public = folder / "public"
    files = {p.relative_to(public).as_posix(): p.read_bytes()
             for p in public.rglob("*") if p.is_file()}
    assert set(PAGE_FILES) <= set(files)
    table = json.loads((folder / NAMES_RECORD).read_text())
    secrets = [CODE, table["secret"], study.name, "images/", *(e["key"] for e in table["images"]),
               *(repr(t.model_logit) for t in study.tasks),
               *(f'"{c.key}"' for c in study.conditions),
               '"correct":', '"true_label":', '"model_logit":', '"relevant":']
    for rel, data in files.items():
        for secret in secrets:
            assert secret.encode() not in data, (rel, secret)
    ours = "\n".join(files[rel].decode() for rel in PAGE_FILES)
    for cond in study.conditions:  # not even as a word of the page's own files
        assert not re.search(rf"\b{cond.key}\b", ours), cond.key
    exp = _experiment(folder)
    text = json.dumps(exp)
    for name in study.class_names:  # only as the prediction question's choices
        assert text.count(json.dumps(name)) == 1, name
    assert not (public / "records").exists() and not (public / JATOS_INPUT).exists()


def test_the_hosted_folder_check_refuses_extras_and_leaks(local_page) -> None:
    study, folder = local_page
    page = ["index.html", "dubfiv-study.js", EXPERIMENT_JSON]
    page += [str(p.relative_to(folder / "public")) for p in (folder / "public" / "jspsych")
             .rglob("*") if p.is_file()]
    check_public_folder(folder, study, page)
    extra = folder / "public" / "notes.txt"
    extra.write_text("hello")
    with pytest.raises(ExportError, match=r"notes\.txt"):
        check_public_folder(folder, study, page)
    extra.unlink()
    exp_path = folder / "public" / EXPERIMENT_JSON
    original = exp_path.read_text()
    exp = json.loads(original)
    exp["tasks"][0]["model_logit"] = 1.5
    exp_path.write_text(json.dumps(exp))
    with pytest.raises(ExportError, match="model_logit"):
        check_public_folder(folder, study, page)
    exp = json.loads(original)
    exp["end_text"] += f"<p>Your code: {CODE}</p>"
    exp_path.write_text(json.dumps(exp))
    with pytest.raises(ExportError, match="completion code"):
        check_public_folder(folder, study, page)
    key = json.loads((folder / NAMES_RECORD).read_text())["images"][0]["key"]
    exp = json.loads(original)
    exp["tutorial"]["intro"] += f"<!-- {key} -->"  # an image's descriptive key
    exp_path.write_text(json.dumps(exp))
    with pytest.raises(ExportError, match="private word"):
        check_public_folder(folder, study, page)
    exp_path.write_text(original)
    with pytest.raises(ExportError, match=r"index\.html"):  # the page's files are not optional
        check_public_folder(folder, study, [])


def test_the_salt_is_random_per_export_and_kept_by_a_reexport(hosted) -> None:
    study, folder = hosted
    write_jspsych(study, folder)
    first = read_salt(folder / "public")
    assert first and first != build_experiment(study, "x" * 16)["salt"]
    write_jspsych(study, folder)
    assert read_salt(folder / "public") != first  # a new export draws a new one ...
    write_jspsych(study, folder, salt=first)  # ... the exporter passes the old one
    assert read_salt(folder / "public") == first
    assert read_salt(folder / "nowhere") is None


# ---------------------------------------------------------------------- index.html


class _Tags(HTMLParser):
    """The attributes of each ``<script>`` and ``<link>`` (not what a script's code says)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "link"):
            self.tags.append((tag, dict(attrs)))


def test_index_loads_jspsych_from_the_cdn_with_integrity(hosted) -> None:
    study, folder = hosted
    page = write_jspsych(study, folder)
    assert page == list(PAGE_FILES)
    check_public_folder(folder, study, page)
    index = (folder / "public" / "index.html").read_text()
    tags = _Tags(index).tags
    for package in PACKAGES:
        for file in package.files:
            attrs = next(a for _, a in tags if package.url(file) in (a.get("src"), a.get("href")))
            assert attrs["integrity"] == file.integrity
            assert attrs["crossorigin"] == "anonymous"
    assert not (folder / "public" / "jspsych").exists()
    srcs = [a["src"] for t, a in tags if t == "script" and a.get("src")]
    assert srcs[-1] == "dubfiv-study.js" and srcs[0].startswith("https://unpkg.com/jspsych@")
    assert len(srcs) == 5 and "jatos.js" not in srcs  # jatos.js only under JATOS' /publix/
    assert "publix" in index and "jatos.js" in index  # the loader, see test_jatos.py
    assert f"<title>{study.title}</title>" in index


def test_jspsych_dir_copies_the_files_and_index_uses_them(hosted) -> None:
    study, folder = hosted
    modules = require_node_modules()
    page = write_jspsych(study, folder, modules)
    check_public_folder(folder, study, page)
    index = (folder / "public" / "index.html").read_text()
    assert "unpkg" not in index and "integrity=" not in index and "://" not in index
    for package in PACKAGES:
        for file in package.files:
            rel = f"jspsych/{package.name}/{file.path}"
            assert rel in page and f'"{rel}"' in index
            assert (folder / "public" / rel).read_bytes() == (
                modules / package.name / file.path).read_bytes()


# ---------------------------------------------------------------------- flags and README


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        status = export_main(argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    return status, capsys.readouterr().err


def test_runtime_and_jspsych_dir_flags(tmp_path: Path, capsys) -> None:
    base = ["--model", str(tmp_path / "no_run"), "--quiet"]
    parser = build_parser()
    assert parser.parse_args(base).runtimes == ("qualtrics", "jspsych")
    assert parser.parse_args([*base, "--runtime", "jspsych"]).runtimes == ("jspsych",)
    assert parser.parse_args([*base, "--runtime", "jspsych, qualtrics"]).runtimes == (
        "jspsych", "qualtrics")
    for bad in ("html", "jspsych,jspsych", ","):
        status, err = _cli([*base, "--runtime", bad], capsys)
        line = _one_line(err)
        assert status == 2 and "--runtime" in line and "qualtrics, jspsych" in line, line
    status, err = _cli([*base, "--jspsych-dir", str(tmp_path / "nowhere")], capsys)
    line = _one_line(err)
    assert status == 2 and line.startswith("dubfiv_export_user_study: error: --jspsych-dir")
    assert "npm ci --prefix" in line
    modules = _bad_copy(tmp_path)
    (modules / "jspsych" / "package.json").write_text('{"version": "7.3.4"}')
    status, err = _cli([*base, "--jspsych-dir", str(modules)], capsys)
    line = _one_line(err)
    assert status == 2 and "7.3.4" in line and str(modules / "jspsych" / "package.json") in line
    good = require_node_modules()
    status, err = _cli([*base, "--runtime", "qualtrics", "--jspsych-dir", str(good)], capsys)
    assert status == 2 and "--jspsych-dir" in _one_line(err)
    status, err = _cli([*base, "--runtime", "jspsych", "--jspsych-dir", str(good)], capsys)
    line = _one_line(err)  # the flags pass; the missing run is the export's error
    assert status == 1 and "--model" in line and "--jspsych" not in line


def test_the_library_checks_runtimes_by_field_name(tmp_path: Path) -> None:
    for runtimes in ((), ("html",), ("jspsych", "jspsych")):
        with pytest.raises(ExportError) as info:
            check_runtimes(ExportConfig(run_dir=tmp_path, runtimes=runtimes))
        assert info.value.parameter == "runtimes"
    with pytest.raises(ExportError) as info:
        check_runtimes(ExportConfig(run_dir=tmp_path, jspsych_dir=tmp_path / "nowhere"))
    assert info.value.parameter == "jspsych_dir" and "npm ci" in str(info.value)
    with pytest.raises(ExportError) as info:
        check_runtimes(ExportConfig(run_dir=tmp_path, runtimes=("qualtrics",),
                                    jspsych_dir=tmp_path))
    assert info.value.parameter == "jspsych_dir"
    check_runtimes(ExportConfig(run_dir=tmp_path))


def test_readme_says_how_to_run_each_runtime(hosted) -> None:
    study, _ = hosted
    jspsych = readme_text(study, Path("run"), "https://example.org/s", True, 7, ("jspsych",))
    assert "dubfiv_study_serve" in jspsych and "JATOS" in jspsych and "?preview=1" in jspsych
    assert "study.qsf" not in jspsych and "placeholder" not in jspsych
    assert "{{%PROLIFIC_PID%}}" in jspsych and "jatos_study_input.json" in jspsych
    qualtrics = readme_text(study, Path("run"), "https://example.org/s", True, 7,
                            ("qualtrics",))
    assert "study.qsf" in qualtrics and "placeholder" in qualtrics
    assert "dubfiv_study_serve" not in qualtrics and "JATOS" not in qualtrics


# ---------------------------------------------------------------------- in the browser


def test_preview_of_every_arm_runs_to_the_end(local_page) -> None:
    """``?preview=1&arm=<id>``: every page in the layout's order, each page's images
    loaded, the shuffled attribute rows, no JS error, and the end text."""
    study, folder = local_page
    plan = answer_plan(study)
    with serve(folder / "public") as base, chromium_browser() as browser:
        for cond in study.conditions:
            arm = arm_id(study, cond.key)
            page = browser.new_page()
            errors = watch_errors(page)
            page.goto(f"{base}/index.html?preview=1&arm={arm}&PROLIFIC_PID=p1")
            trip = click_through(page, plan)
            assert errors == []
            assert trip.end == "finished" and study.end_text in trip.end_html
            assert trip.pages == expected_pages(study, cond.key)
            assert len(trip.pages) == len(participant_pages(study, cond))
            assert page.evaluate("window.dubfivStudy.mode") == "preview"
            assert page.evaluate("window.dubfivStudy.arm") == arm
            assert "nothing is saved" in page.inner_text("#dubfiv-banner")
            assert trip.images["task_1"] == [study.hosted_path(study.tasks[0].image)]
            assert trip.images[f"explanation_{len(cond.pages)}"] == [
                study.hosted_path(i) for i in cond.pages[-1].images]
            assert set(trip.clicked) == set(plan)
            page.close()


def test_a_wrong_comprehension_answer_ends_politely(local_page) -> None:
    study, folder = local_page
    arm = arm_id(study, study.conditions[0].key)
    with serve(folder / "public") as base, chromium_browser() as browser:
        page = browser.new_page()
        errors = watch_errors(page)
        page.goto(f"{base}/index.html?preview=1&arm={arm}")
        trip = click_through(page, answer_plan(study, wrong="comprehension_2"))
        assert errors == []
        assert trip.pages[-1] == "comprehension" and trip.end == "comprehension"
        assert "Please return your submission" in trip.end_html
        assert page.inner_text(".dubfiv-page") in page.inner_text("body")
        # declining consent, and a phone, end at once too
        for plan, end in (({**answer_plan(study), "consent": 2}, "declined"),
                          ({**answer_plan(study), "device": 3}, "device")):
            page.goto(f"{base}/index.html?preview=1&arm={arm}")
            trip = click_through(page, plan)
            assert (trip.pages, trip.end) == (["consent"], end)
        assert errors == []


def test_without_a_backend_the_page_says_how_to_run_it(local_page) -> None:
    _, folder = local_page
    with serve(folder / "public") as base, chromium_browser() as browser:
        page = browser.new_page()
        errors = watch_errors(page)
        page.goto(f"{base}/index.html")
        ended = page.wait_for_selector(".dubfiv-page[data-page=ended]", timeout=TIMEOUT_MS)
        assert ended.get_attribute("data-end") == "error"
        assert "dubfiv_study_serve" in ended.inner_text() and "JATOS" in ended.inner_text()
        page.goto(f"{base}/index.html?preview=1&arm=0123456789")
        ended = page.wait_for_selector(".dubfiv-page[data-page=ended]", timeout=TIMEOUT_MS)
        assert ended.get_attribute("data-end") == "error" and "no arm" in ended.inner_text()
        assert page.evaluate("typeof window.dubfivStudy") == "undefined"
        # the static server answers POST api/sessions with an HTML 501: not a collector
        assert [e for e in errors if "501" not in e] == []


# ---------------------------------------------------------------------- the whole export


@pytest.fixture(scope="module")
def jspsych_export(small_run: Path, small_dataset: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """``dubfiv_export_user_study --runtime jspsych --jspsych-dir ...`` of the small run
    (baseline condition, no tutorial: seconds once the run's analysis cache is warm)."""
    modules = require_node_modules()
    run = tmp_path_factory.mktemp("jspsych_export") / "run"
    shutil.copytree(small_run, run,
                    ignore=shutil.ignore_patterns("user_study", "ground_truth", "analysis"))
    out = run.parent / "study"
    args = ["--model", str(run), "--output", str(out), "--condition", "baseline",
            "--no_tutorial", "--dataset_dir", str(small_dataset.parent), "--n_samples", "0",
            "--rows", "2", "--n_tasks", "4", "--device", "cpu", "--quiet",
            "--runtime", "jspsych", "--jspsych-dir", str(modules),
            "--prolific-completion-code", "XYZ789"]
    assert export_main(args) == 0
    return out, args


def test_export_with_jspsych_only(jspsych_export: tuple[Path, list[str]]) -> None:
    out, _ = jspsych_export
    study = Study.load(out)
    assert not (out / "study.qsf").exists()
    manifest = {e["path"] for e in json.loads((out / "manifest.json").read_text())["files"]}
    for rel in (*PAGE_FILES, "jspsych/jspsych/dist/index.browser.min.js"):
        assert f"public/{rel}" in manifest
    assert JATOS_INPUT in manifest and "XYZ789" in (out / JATOS_INPUT).read_text()
    hosted = b"".join(p.read_bytes() for p in (out / "public").rglob("*") if p.is_file())
    assert b"XYZ789" not in hosted and b'"baseline"' not in hosted
    readme = (out / "README.md").read_text()
    assert "dubfiv_study_serve" in readme and "study.qsf" not in readme
    export_info = json.loads((out / "export.json").read_text())
    assert export_info["config"]["runtimes"] == ["jspsych"]
    assert not any("placeholder" in n for n in export_info["notes"])
    with serve(out / "public") as base, chromium_browser() as browser:
        page = browser.new_page()
        errors = watch_errors(page)
        page.goto(f"{base}/?preview=1")
        trip = click_through(page, answer_plan(study))
        assert errors == [] and trip.end == "finished"
        assert trip.pages == expected_pages(study, "baseline")


def test_a_reexport_keeps_the_hosted_page(jspsych_export: tuple[Path, list[str]]) -> None:
    out, args = jspsych_export
    before = {p.relative_to(out).as_posix(): p.read_bytes()
              for p in (out / "public").rglob("*") if p.is_file()}
    assert export_main(args) == 0
    after = {p.relative_to(out).as_posix(): p.read_bytes()
             for p in (out / "public").rglob("*") if p.is_file()}
    assert after == before  # same image names, same salt, same page


# ---------------------------------------------------------------------- the collector backend


PROLIFIC_DONE = "https://app.prolific.com/submissions/complete?cc=ZZZ999"


class FakeCollector:
    """The collector's HTTP API, answered in memory through Playwright routes (so the
    page's collector backend is tested apart from the server): a session ``p1`` with
    token ``tok1``; ``saved`` records and ``elapsed_ms`` of an earlier visit; the next
    ``fail_saves`` page saves answer 503; ``refuse``: 403 with this HTML."""

    def __init__(self, arm: str, saved: list[dict[str, Any]] | None = None,
                 elapsed_ms: int = 0, fail_saves: int = 0, refuse: str | None = None) -> None:
        self.arm, self.saved, self.elapsed_ms = arm, saved or [], elapsed_ms
        self.fail_saves, self.refuse = fail_saves, refuse
        self.requests: list[tuple[str, Any, str | None]] = []
        self.pages: dict[str, list[dict[str, Any]]] = {}
        self.ended: str | None = None

    def attach(self, page: Any) -> None:
        page.route("**/api/**", self._answer)
        page.route(f"{PROLIFIC_DONE.split('/submissions')[0]}/**", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<html><body>done</body></html>"))

    def _answer(self, route: Any, request: Any) -> None:
        from urllib.parse import urlparse

        path = urlparse(request.url).path
        body = request.post_data_json
        auth = request.headers.get("authorization")
        self.requests.append((path, body, auth))
        if path == "/api/sessions":
            if self.refuse is not None:
                route.fulfill(status=403, json={"refused": "finished", "html": self.refuse})
                return
            route.fulfill(json={"participant": "p1", "token": "tok1", "arm": self.arm,
                                "saved": self.saved, "elapsed_ms": self.elapsed_ms})
        elif auth != "Bearer tok1":
            route.fulfill(status=401, json={"error": "wrong token"})
        elif path == "/api/sessions/p1/pages":
            if self.fail_saves > 0:
                self.fail_saves -= 1
                route.fulfill(status=503, json={"error": "the database failed"})
                return
            self.pages[body["page"]] = body["records"]
            route.fulfill(json={"saved": body["page"]})
        elif path == "/api/sessions/p1/end":
            self.ended = body["end"]
            finished = body["end"] == "finished"
            route.fulfill(json={"redirect": PROLIFIC_DONE if finished else None,
                                "html": f"<p>Server says: {body['end']}.</p>"})
        else:
            route.fulfill(status=404, json={"error": "not found"})

    def posts(self, path: str) -> list[Any]:
        return [body for p, body, _ in self.requests if p == path]


def _collector_page(browser: Any, base: str, fake: FakeCollector, pid: str,
                    storage: dict[str, str] | None = None) -> tuple[Any, list[str]]:
    page = browser.new_context().new_page()
    errors = watch_errors(page)
    fake.attach(page)
    if storage:
        page.add_init_script(f"Object.entries({json.dumps(storage)}).forEach("
                             "([k, v]) => window.localStorage.setItem(k, v));")
    page.goto(f"{base}/index.html?PROLIFIC_PID={pid}&STUDY_ID=st1&SESSION_ID=se1")
    return page, errors


def _http_errors_only(errors: list[str], *codes: int) -> bool:
    """Only the console's notes on the given HTTP statuses (a browser logs every failed
    fetch as an error, even one the page handles)."""
    return all(any(f"status of {c}" in e or e.startswith(f"HTTP {c}:") for c in codes)
               for e in errors)


def test_collector_backend_saves_each_page_retries_and_redirects(local_page) -> None:
    study, folder = local_page
    cond = study.conditions[1]
    fake = FakeCollector(arm_id(study, cond.key), fail_saves=2)
    plan = answer_plan(study)
    salt = _experiment(folder)["salt"]
    with serve(folder / "public") as base, chromium_browser() as browser:
        page, errors = _collector_page(browser, base, fake, "pidA")
        trip = click_through(page, plan)
        page.wait_for_url(PROLIFIC_DONE, timeout=TIMEOUT_MS)
        assert trip.end in ("finished", "left") and _http_errors_only(errors, 503)
        assert fake.ended == "finished"
        # each page stored once, in order, after two failed tries of the first one
        assert list(fake.pages) == expected_pages(study, cond.key)
        assert len(fake.posts("/api/sessions/p1/pages")) == len(fake.pages) + 2
        assert fake.posts("/api/sessions") == [{"token": None, "PROLIFIC_PID": "pidA",
                                                "STUDY_ID": "st1", "SESSION_ID": "se1"}]
        records = [r for recs in fake.pages.values() for r in recs]
        assert all(r["dubfiv_mode"] == "collector" and r["dubfiv_participant"] == "p1"
                   and r["PROLIFIC_PID"] == "pidA" for r in records)
        row = participant_row(study, records, "jspsych/collector")
        assert {t: row[t] for t in trip.clicked} == {t: str(v) for t, v in trip.clicked.items()}
        assert row["condition"] == cond.key and row["Finished"] == "1"
        # the token was kept: a second visit of the same PID sends it
        page.goto(f"{base}/index.html?PROLIFIC_PID=pidA")
        page.wait_for_selector(".dubfiv-page[data-page=consent]")
        assert fake.posts("/api/sessions")[-1]["token"] == "tok1"
        assert page.evaluate(f"window.localStorage.getItem('dubfiv:{salt}:pidA')") == "tok1"


def test_collector_backend_resumes_a_session(local_page) -> None:
    """A reload: the stored pages are skipped, the clock goes on from ``elapsed_ms``, the
    start time stays; a session whose last stored page ended it only ends."""
    study, folder = local_page
    cond = study.conditions[0]
    pages = expected_pages(study, cond.key)
    started = "2026-01-02T03:04:05.000Z"
    saved = [{"dubfiv_page": name, "dubfiv_started": started, "time_elapsed": 1000 * i,
              "dubfiv_answers": {}} for i, name in enumerate(pages[:5])]
    salt = _experiment(folder)["salt"]
    with serve(folder / "public") as base, chromium_browser() as browser:
        fake = FakeCollector(arm_id(study, cond.key), saved=saved, elapsed_ms=600_000)
        page, errors = _collector_page(browser, base, fake, "pidB",
                                       {f"dubfiv:{salt}:pidB": "tokB"})
        trip = click_through(page, answer_plan(study))
        assert errors == [] and trip.pages == pages[5:]
        assert fake.posts("/api/sessions")[0]["token"] == "tokB"
        first = fake.pages[pages[5]][0]
        assert first["time_elapsed"] >= 600_000 and first["dubfiv_started"] == started
        assert list(fake.pages) == pages[5:] and fake.ended == "finished"

        done = [{"dubfiv_page": "consent", "dubfiv_started": started, "dubfiv_end": "device"}]
        fake = FakeCollector(arm_id(study, cond.key), saved=done)
        page, errors = _collector_page(browser, base, fake, "pidC")
        trip = click_through(page, answer_plan(study))
        assert errors == [] and trip.pages == [] and fake.pages == {}
        assert (trip.end, fake.ended) == ("device", "device")
        assert "Server says: device." in trip.end_html


def test_collector_backend_failures_and_refusals(local_page) -> None:
    study, folder = local_page
    arm = arm_id(study, study.conditions[0].key)
    with serve(folder / "public") as base, chromium_browser() as browser:
        fake = FakeCollector(arm, fail_saves=100)
        page, errors = _collector_page(browser, base, fake, "pidD")
        trip = click_through(page, answer_plan(study))
        assert trip.pages == ["consent"] and trip.end == "error"
        assert "previous page are safe" in trip.end_html and "reload" in trip.end_html
        assert len(fake.posts("/api/sessions/p1/pages")) == 4 and fake.ended is None
        assert _http_errors_only(errors, 503)

        fake = FakeCollector(arm, refuse="<p>You took part already.</p>")
        page, errors = _collector_page(browser, base, fake, "pidE")
        trip = click_through(page, {})
        assert trip.end == "refused" and "You took part already." in trip.end_html
        assert page.evaluate("typeof window.dubfivStudy") == "undefined"
        assert _http_errors_only(errors, 403)


def test_the_page_with_the_real_collector(local_page, tmp_path: Path) -> None:
    """``dubfiv_study_serve`` (when present) and the page together: a Prolific
    participant finishes, is sent to the completion URL, and cannot start again."""
    pytest.importorskip("dubfiv.study.collector.app", reason="no collector in this checkout")
    import subprocess
    import sys
    import time

    study, folder = local_page
    study.save(folder)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dubfiv.cli.study_serve", str(folder),
                                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT)
    try:
        found = None
        for _ in range(300):  # the server prints its address once it listens
            found = re.search(r"http://127\.0\.0\.1:\d+", log.read_text(errors="replace"))
            if found or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert found, log.read_text(errors="replace")
        base = found.group(0)
        done = f"https://app.prolific.com/submissions/complete?cc={CODE}"
        with chromium_browser() as browser:
            page = browser.new_page()
            errors = watch_errors(page)
            page.route("https://app.prolific.com/**", lambda route: route.fulfill(
                status=200, content_type="text/html", body="<html><body>done</body></html>"))
            page.goto(f"{base}/?PROLIFIC_PID=pidR&STUDY_ID=st&SESSION_ID=se")
            trip = click_through(page, answer_plan(study))
            page.wait_for_url(done, timeout=TIMEOUT_MS)
            assert errors == [] and trip.end in ("finished", "left")
            again = browser.new_page()
            again.goto(f"{base}/?PROLIFIC_PID=pidR&STUDY_ID=st&SESSION_ID=se")
            ended = again.wait_for_selector(".dubfiv-page[data-page=ended]",
                                            timeout=TIMEOUT_MS)
            assert ended.get_attribute("data-end") == "refused"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
