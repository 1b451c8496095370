"""The collector's database: sessions, the trial records of each page, refusals.

:func:`open_store` opens (and creates the tables of) a database given by an
SQLAlchemy URL: ``sqlite:///PATH`` (the default of ``dubfiv_study_serve``; WAL
journal, a busy timeout and ``BEGIN IMMEDIATE`` so that many concurrent writers
wait for each other instead of failing) or ``postgresql://USER:PASSWORD@HOST:PORT/DB``
(mapped to the psycopg 3 driver, ``postgresql+psycopg://``). The tables are those
of :mod:`dubfiv.study.collector.schema`.

The analysis reads a store with :meth:`Store.records_by_participant` and
:meth:`Store.refusals`; the server writes with :meth:`Store.start_session`,
:meth:`Store.save_page` and :meth:`Store.end_session`. Every method is safe to call
from several threads. Database failures raise :class:`StoreError` naming the URL
without its password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import random
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from dubfiv.study.collector.assign import COUNTED_ENDS, choose_arm
from dubfiv.study.collector.errors import StoreError
from dubfiv.study.collector.schema import Base, PageRow, RefusalRow, SessionRow
from dubfiv.study.jspsych.records import ARM_FIELD, PARTICIPANT_FIELD

__all__ = ["EndResult", "ProlificIds", "Refused", "Started", "Store", "database_url",
           "hash_token", "open_store", "shown_url"]

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long an SQLite writer waits for the lock before it fails (seconds)."""
POSTGRES_CONNECT_TIMEOUT_S = 10
_ASSIGN_LOCK_KEY = 0x64756266  # PostgreSQL advisory lock serialising session starts
_SESSIONS = SessionRow.__table__
_PAGES = PageRow.__table__
_REFUSALS = RefusalRow.__table__

P = ParamSpec("P")
R = TypeVar("R")


def shown_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def database_url(url: str) -> URL:
    """The SQLAlchemy URL of ``url``; ``postgresql://`` and ``postgres://`` get the
    psycopg 3 driver.

    Raises:
        StoreError: not a URL, or a database other than SQLite and PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"database URL {shown_url(url)!r} is not a URL: give "
                         "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.get_driver_name() == "pysqlite":
        return parsed
    raise StoreError(f"database URL {shown_url(parsed)!r}: only sqlite:///PATH and "
                     "postgresql://USER:PASSWORD@HOST:PORT/DB are supported")


def hash_token(token: str) -> str:
    """Hex SHA-256 of a session token (what ``sessions.token_sha256`` stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _first_line(error: BaseException) -> str:
    inner = getattr(error, "orig", None) or error
    lines = str(inner).strip().splitlines()
    return lines[0] if lines else type(inner).__name__


@dataclasses.dataclass(frozen=True)
class ProlificIds:
    """Prolific's URL parameters of a session (``None`` where not given)."""

    pid: str | None = None
    study_id: str | None = None
    session_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Started:
    """A session started or resumed: its id, bearer token, arm, the trial records already
    stored (page-save order) and the milliseconds since it first started."""

    participant: str
    token: str
    arm: str
    saved: list[dict[str, Any]]
    elapsed_ms: int
    resumed: bool


@dataclasses.dataclass(frozen=True)
class Refused:
    """A start refused: that participant's session ended before, with ``reason``."""

    reason: str


@dataclasses.dataclass(frozen=True)
class EndResult:
    """What :meth:`Store.end_session` did: ``status`` is ``ended`` (now or before, with
    the same reason), ``unauthorized``, ``conflict`` (ended before with ``reason``) or
    ``missing_pages`` (``finished`` without the pages in ``missing``)."""

    status: str
    reason: str | None = None
    missing: tuple[str, ...] = ()


def _guard(method: Callable[P, R]) -> Callable[P, R]:
    """Run ``method`` under the store's lock; turn SQLAlchemy's errors into
    :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, Store)
        try:
            with store.lock:
                return method(*args, **kwargs)
        except SQLAlchemyError as error:
            raise StoreError(f"database {store.url}: {_first_line(error)}") from error

    return wrapper


class Store:
    """The collector's database (use :func:`open_store`).

    With SQLite, the store's own threads take turns (``lock``): SQLite has one writer
    at a time anyway, and its busy handler sleeps in steps of up to 100 ms, which
    under many concurrent writers costs far more than waiting on a lock; other
    processes (an export while the server runs) still wait on SQLite's busy timeout.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        """The database URL without its password."""
        self.lock: AbstractContextManager[Any] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._build_statements()

    # ------------------------------------------------------------------ reading

    @_guard
    def records_by_participant(self) -> dict[str, list[dict[str, Any]]]:
        """Every stored trial record, grouped by participant (sessions in start order),
        each participant's in page-save order, with ``dubfiv_participant`` and
        ``dubfiv_arm`` set to the session's own values. A session without any saved
        page (opened, nothing answered) maps to an empty list."""
        query = (select(_SESSIONS.c.participant, _PAGES.c.records, _SESSIONS.c.arm)
                 .outerjoin(_PAGES, _SESSIONS.c.participant == _PAGES.c.participant)
                 .order_by(_SESSIONS.c.started_at, _SESSIONS.c.participant, _PAGES.c.id))
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for participant, records, arm in conn.execute(query):
                group = out.setdefault(participant, [])
                if records is not None:
                    group.extend({**r, PARTICIPANT_FIELD: participant, ARM_FIELD: arm}
                                 for r in json.loads(records))
        return out

    @_guard
    def refusals(self) -> int:
        """How many starts were refused (the participant had finished or was screened out)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_REFUSALS)).scalar_one())

    @_guard
    def arm_counts(self, counted_only: bool = True) -> dict[str, int]:
        """Sessions per arm; ``counted_only``: those balanced assignment counts (running
        or finished), else all."""
        with self.engine.connect() as conn:
            return self._arm_counts(conn, counted_only)

    @_guard
    def end_counts(self) -> dict[str, int]:
        """Sessions per end reason (``running`` for those that have not ended)."""
        query = select(_SESSIONS.c.end_reason, func.count()).group_by(_SESSIONS.c.end_reason)
        with self.engine.connect() as conn:
            return {reason or "running": int(n) for reason, n in conn.execute(query)}

    @_guard
    def page_counts(self) -> dict[str, int]:
        """Stored page rows per participant."""
        query = select(_PAGES.c.participant, func.count()).group_by(_PAGES.c.participant)
        with self.engine.connect() as conn:
            return {participant: int(n) for participant, n in conn.execute(query)}

    # ------------------------------------------------------------------ writing

    @_guard
    def start_session(self, arms: Mapping[str, str], token: str | None, ids: ProlificIds,
                      rng: random.Random) -> Started | Refused:
        """Start a session, or resume one; or refuse.

        With a Prolific id, its session is resumed (a new token unless ``token`` is
        that session's) or, if it ended, the start is refused; without one, the
        session of ``token`` is resumed (refused if it ended). Otherwise a new session
        gets the arm of ``arms`` (arm id -> condition key) with the fewest counted
        sessions (:func:`~dubfiv.study.collector.assign.choose_arm`). A refusal adds a
        row to ``refusals``. Starts are serialised (SQLite's write lock, a PostgreSQL
        advisory lock) so that concurrent starts see each other's sessions.
        """
        now = _now()
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _ASSIGN_LOCK_KEY})
            row = None
            if ids.pid:
                row = conn.execute(select(_SESSIONS).where(
                    _SESSIONS.c.prolific_pid == ids.pid)).first()
            elif token:
                row = conn.execute(select(_SESSIONS).where(
                    _SESSIONS.c.token_sha256 == hash_token(token))).first()
            if row is not None:
                return self._resume(conn, row, token, ids, now)
            arm = choose_arm(list(arms), self._arm_counts(conn, True), rng)
            participant, new_token = secrets.token_hex(8), secrets.token_urlsafe(32)
            conn.execute(insert(_SESSIONS).values(
                participant=participant, token_sha256=hash_token(new_token), arm=arm,
                condition=arms[arm], prolific_pid=ids.pid, study_id=ids.study_id,
                session_id=ids.session_id, started_at=now, updated_at=now))
            return Started(participant, new_token, arm, [], 0, resumed=False)

    def _resume(self, conn: Connection, row: Any, token: str | None, ids: ProlificIds,
                now: dt.datetime) -> Started | Refused:
        if row.ended_at is not None:
            conn.execute(insert(_REFUSALS).values(
                prolific_pid=ids.pid or row.prolific_pid, refused_at=now, reason=row.end_reason))
            return Refused(row.end_reason)
        if token and hmac.compare_digest(row.token_sha256, hash_token(token)):
            new_token = token
        else:
            new_token = secrets.token_urlsafe(32)
        conn.execute(update(_SESSIONS).where(_SESSIONS.c.participant == row.participant)
                     .values(token_sha256=hash_token(new_token), updated_at=now))
        saved = [{**r, PARTICIPANT_FIELD: row.participant, ARM_FIELD: row.arm}
                 for (records,) in conn.execute(
                     select(_PAGES.c.records).where(_PAGES.c.participant == row.participant)
                     .order_by(_PAGES.c.id))
                 for r in json.loads(records)]
        elapsed_ms = max(0, int((now - row.started_at).total_seconds() * 1000))
        return Started(row.participant, new_token, row.arm, saved, elapsed_ms, resumed=True)

    @_guard
    def save_page(self, participant: str, token: str, page: str,
                  records: Sequence[Mapping[str, Any]]) -> str:
        """Store (or replace) the records of ``page``; returns ``saved``,
        ``unauthorized`` (no such session, or another session's token) or ``ended``.

        ``dubfiv_participant`` and ``dubfiv_arm`` of each record are set to the
        session's values.
        """
        now = _now()
        with self.engine.begin() as conn:
            row = self._session(conn, participant, token)
            if row is None:
                return "unauthorized"
            if row.ended_at is not None:
                return "ended"
            stamped = [{**r, PARTICIPANT_FIELD: participant, ARM_FIELD: row.arm}
                       for r in records]
            body = json.dumps(stamped, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False)
            conn.execute(self._upsert, {"b_participant": participant, "b_page": page,
                                        "b_records": body, "b_saved_at": now})
            conn.execute(self._touch, {"b_participant": participant, "b_now": now})
        return "saved"

    @_guard
    def end_session(self, participant: str, token: str, reason: str,
                    required_pages: Sequence[str] = ()) -> EndResult:
        """End a session with ``reason``; ``finished`` needs ``required_pages`` stored.

        Ending again with the same reason is answered as ended (a retried request).
        """
        now = _now()
        with self.engine.begin() as conn:
            row = self._session(conn, participant, token)
            if row is None:
                return EndResult("unauthorized")
            if row.ended_at is not None:
                return EndResult("ended" if row.end_reason == reason else "conflict",
                                 row.end_reason)
            if reason == "finished" and required_pages:
                have = set(conn.execute(select(_PAGES.c.page).where(
                    _PAGES.c.participant == participant)).scalars())
                missing = tuple(p for p in required_pages if p not in have)
                if missing:
                    return EndResult("missing_pages", missing=missing)
            conn.execute(update(_SESSIONS).where(_SESSIONS.c.participant == participant)
                         .values(ended_at=now, end_reason=reason, updated_at=now))
        return EndResult("ended", reason)

    def close(self) -> None:
        """Close the database's connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _arm_counts(conn: Connection, counted_only: bool) -> dict[str, int]:
        query = select(_SESSIONS.c.arm, func.count()).group_by(_SESSIONS.c.arm)
        if counted_only:
            ends = [e for e in COUNTED_ENDS if e is not None]
            query = query.where(_SESSIONS.c.end_reason.is_(None)
                                | _SESSIONS.c.end_reason.in_(ends))
        return {arm: int(n) for arm, n in conn.execute(query)}

    def _session(self, conn: Connection, participant: str, token: str) -> Any:
        """The session row of ``participant`` (locked for the transaction) if ``token``
        is its token, else ``None``."""
        row = conn.execute(self._select_session, {"b_participant": participant}).first()
        if row is None or not hmac.compare_digest(row.token_sha256, hash_token(token)):
            return None
        return row

    def _build_statements(self) -> None:
        """The statements of each page save, built once (bound by ``b_*`` parameters)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        participant = bindparam("b_participant")
        self._select_session = (select(_SESSIONS).where(_SESSIONS.c.participant == participant)
                                .with_for_update())
        upsert = dialect_insert(_PAGES).values(
            participant=participant, page=bindparam("b_page"),
            records=bindparam("b_records"), saved_at=bindparam("b_saved_at"))
        self._upsert = upsert.on_conflict_do_update(
            index_elements=[_PAGES.c.participant, _PAGES.c.page],
            set_={"records": upsert.excluded.records, "saved_at": upsert.excluded.saved_at})
        self._touch = (update(_SESSIONS).where(_SESSIONS.c.participant == participant)
                       .values(updated_at=bindparam("b_now")))


def _sqlite_engine(url: URL) -> Engine:
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        raise StoreError(f"database URL {shown_url(url)!r}: SQLite needs a file "
                         "(sqlite:///PATH)")
    if not Path(path).parent.is_dir():
        raise StoreError(f"database URL {shown_url(url)!r}: the folder {Path(path).parent} "
                         "does not exist; create it or give another path")
    engine = create_engine(url, pool_size=8, max_overflow=8, pool_timeout=120,
                           connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S,
                                         "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock at once: no deadlocks

    return engine


def open_store(url: str) -> Store:
    """Open the database at ``url`` (an SQLAlchemy URL, see the module docstring) and
    create its tables if missing.

    Raises:
        StoreError: a malformed or unsupported URL, a missing driver, or a database that
            cannot be reached or written (the message names the URL without password).
    """
    parsed = database_url(url)
    shown = shown_url(parsed)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed)
        else:
            engine = create_engine(parsed, pool_size=10, max_overflow=10, pool_timeout=120,
                                   pool_pre_ping=True,
                                   connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S})
    except (NoSuchModuleError, ImportError) as error:
        raise StoreError(f"database {shown}: its driver is missing ({_first_line(error)}); "
                         "pip install 'psycopg[binary]'") from None
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError as error:
        engine.dispose()
        raise StoreError(f"cannot open the database {shown}: {_first_line(error)}") from None
    return Store(engine, shown)
