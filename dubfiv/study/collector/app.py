"""The collector's web app: ``public/`` and a three-call JSON API (Starlette).

Routes (bodies and answers are JSON; every API answer has ``Cache-Control: no-store``):

- ``POST /api/sessions`` ``{"token", "PROLIFIC_PID", "STUDY_ID", "SESSION_ID"}`` (each a
  string or null): 200 ``{"participant", "token", "arm", "saved", "elapsed_ms"}`` for a
  new or resumed session; 403 ``{"refused": "finished", "html"}`` for a participant
  who already finished or was screened out.
- ``POST /api/sessions/{participant}/pages`` (``Authorization: Bearer <token>``)
  ``{"page", "records"}``: 200 ``{"saved": page}``; saving a page again replaces it.
- ``POST /api/sessions/{participant}/end`` (Bearer) ``{"end": reason}``: 200
  ``{"redirect", "html"}``: Prolific's completion URL for finishers of a Prolific
  study, else null, and the message to show.
- ``GET``/``HEAD`` of a file of ``public/`` (:mod:`dubfiv.study.collector.public`);
  ``/`` is ``index.html``.

Errors: 401 (no or wrong token), 404 (anything else), 405, 409 (the session has
ended; ``finished`` before the attribute and task pages are stored), 413 (a body
over :attr:`CollectorSettings.max_body_bytes`), 422 (not the JSON described), 503
(the database failed); each answers ``{"error": "<one line>"}``. Nothing stored is
ever read back except a participant's own records when the session resumes.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from dubfiv.study.collector.errors import CollectorError, StoreError, StudyFolderError
from dubfiv.study.collector.public import INDEX, media_type, public_file
from dubfiv.study.collector.schema import ID_LENGTH, PAGE_NAME_LENGTH, URL_FIELD_LENGTH
from dubfiv.study.collector.settings import CollectorSettings
from dubfiv.study.collector.store import ProlificIds, Refused, Store
from dubfiv.study.content import Study
from dubfiv.study.jspsych.records import END_REASONS, arms

__all__ = ["COMPLETION_URL", "REFUSED_HTML", "ApiError", "check_public", "create_app",
           "finish_pages"]

LOG = logging.getLogger("dubfiv.collector")
COMPLETION_URL = "https://app.prolific.com/submissions/complete?cc="
REFUSED_HTML = (
    "<p>Our records show that you have already taken part in this study, or that it "
    "ended early for you, so it cannot be started again. Thank you for your interest!</p>"
    "<p>If you have a question, please contact the researchers (on Prolific: through "
    "its messages).</p>")
_PAGE_RE = re.compile(rf"^[a-z][a-z0-9_]{{0,{PAGE_NAME_LENGTH - 1}}}$")
_PARTICIPANT_RE = re.compile(rf"^[0-9A-Za-z_-]{{1,{ID_LENGTH}}}$")
_API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_FILE_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer"}


class ApiError(CollectorError):
    """A request the API answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_public(study_dir: Path) -> Path:
    """The resolved ``study_dir/public`` folder; raises :class:`StudyFolderError` if it
    has no ``index.html`` (the study was not exported for the jsPsych runtime)."""
    index = study_dir / "public" / INDEX
    if not index.is_file():
        raise StudyFolderError(f"{index} not found: export the study with the jsPsych "
                               "runtime (`runtimes` including 'jspsych')")
    return (study_dir / "public").resolve()


def finish_pages(study: Study) -> list[str]:
    """The pages that must be stored before a session may end ``finished``: the
    attribute page and every prediction task's page."""
    return ["attributes"] + [f"task_{i}" for i in range(1, len(study.tasks) + 1)]


def _api(data: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(dict(data), status_code=status, headers=_API_HEADERS)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request's body as a JSON object; the size limit is checked on the declared
    length and while the body streams in."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise ApiError(413, f"the request is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request is larger than {limit} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(422, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "the body must be a JSON object")
    return data


def _optional_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if (not isinstance(value, str) or len(value) > URL_FIELD_LENGTH
            or any(ord(c) < 32 or ord(c) == 127 for c in value)):
        raise ApiError(422, f"{key} must be a string of at most {URL_FIELD_LENGTH} "
                            "printable characters, or null")
    return value


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "no session token (Authorization: Bearer <token>)")
    return token.strip()


def _participant(request: Request) -> str:
    participant = request.path_params["participant"]
    if not _PARTICIPANT_RE.match(participant):
        raise ApiError(401, "unknown session or wrong token")
    return participant


class _Collector:
    """The endpoints, bound to one study and store."""

    def __init__(self, study: Study, store: Store, settings: CollectorSettings,
                 public: Path) -> None:
        self.study = study
        self.store = store
        self.settings = settings
        self.public = public
        self.arms = arms(study)
        self.rng = random.Random(settings.seed) if settings.seed is not None \
            else random.SystemRandom()

    async def start(self, request: Request) -> Response:
        body = await _read_json(request, self.settings.max_body_bytes)
        token = _optional_text(body, "token")
        ids = ProlificIds(*(_optional_text(body, k)
                            for k in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")))
        result = await run_in_threadpool(self.store.start_session, self.arms, token, ids,
                                         self.rng)
        if isinstance(result, Refused):
            return _api({"refused": "finished", "html": REFUSED_HTML}, 403)
        return _api({"participant": result.participant, "token": result.token,
                     "arm": result.arm, "saved": result.saved,
                     "elapsed_ms": result.elapsed_ms})

    async def save_page(self, request: Request) -> Response:
        participant = _participant(request)
        token = _bearer(request)
        body = await _read_json(request, self.settings.max_body_bytes)
        page, records = body.get("page"), body.get("records")
        if not isinstance(page, str) or not _PAGE_RE.match(page):
            raise ApiError(422, "page must be a page name (lower-case letters, digits, '_')")
        if (not isinstance(records, list) or len(records) > self.settings.max_records_per_page
                or not all(isinstance(r, dict) for r in records)):
            raise ApiError(422, "records must be a list of at most "
                                f"{self.settings.max_records_per_page} objects")
        outcome = await run_in_threadpool(self.store.save_page, participant, token, page,
                                          records)
        if outcome == "unauthorized":
            raise ApiError(401, "unknown session or wrong token")
        if outcome == "ended":
            raise ApiError(409, "the session has ended")
        return _api({"saved": page})

    async def end(self, request: Request) -> Response:
        participant = _participant(request)
        token = _bearer(request)
        body = await _read_json(request, self.settings.max_body_bytes)
        reason = body.get("end")
        if reason not in END_REASONS:
            raise ApiError(422, f"end must be one of {', '.join(END_REASONS)}")
        required = finish_pages(self.study) if self.settings.require_pages_to_finish else []
        result = await run_in_threadpool(self.store.end_session, participant, token, reason,
                                         required)
        if result.status == "unauthorized":
            raise ApiError(401, "unknown session or wrong token")
        if result.status == "conflict":
            raise ApiError(409, f"the session has already ended ({result.reason})")
        if result.status == "missing_pages":
            raise ApiError(409, "the study is not finished: pages not saved: "
                                + ", ".join(result.missing))
        if reason != "finished":
            return _api({"redirect": None, "html": self.study.early_end_text(reason)})
        code = self.study.prolific_completion_code
        return _api({"redirect": COMPLETION_URL + quote(code, safe="") if code else None,
                     "html": self.study.end_text})

    async def file(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
        path = public_file(self.public, raw)
        if path is None:
            raise HTTPException(404)
        return FileResponse(path, media_type=media_type(path), headers=_FILE_HEADERS)


async def _api_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return _api({"error": str(error)}, error.status)


async def _store_error(_request: Request, error: Exception) -> Response:
    LOG.error("%s", error)
    return _api({"error": "the database is not available; please try again"}, 503)


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(error.status_code,
                                                                 "bad request")
    return _api({"error": message}, error.status_code)


def create_app(study_dir: str | Path, store: Store,
               settings: CollectorSettings | None = None) -> Starlette:
    """The collector for the exported study in ``study_dir`` storing into ``store``.

    Raises:
        StudyError: ``study_dir/study.json`` is missing or unreadable.
        StudyFolderError: ``study_dir/public/index.html`` is missing.
    """
    study_dir = Path(study_dir)
    study = Study.load(study_dir)
    collector = _Collector(study, store, settings or CollectorSettings(),
                           check_public(study_dir))
    routes = [
        Route("/api/sessions", collector.start, methods=["POST"]),
        Route("/api/sessions/{participant}/pages", collector.save_page, methods=["POST"]),
        Route("/api/sessions/{participant}/end", collector.end, methods=["POST"]),
        Route("/{path:path}", collector.file, methods=["GET", "HEAD"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        ApiError: _api_error, StoreError: _store_error, HTTPException: _http_error})
    app.state.study = study
    app.state.store = store
    return app
