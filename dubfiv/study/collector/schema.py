"""The collector's tables (SQLAlchemy 2 declarative models).

``sessions``: one row per participant. ``participant`` is the session id the page
records as ``dubfiv_participant``; ``token_sha256`` the hex SHA-256 of the session's
bearer token (the token itself is never stored); ``arm`` the opaque arm id
(:func:`dubfiv.study.jspsych.records.arm_id`) and ``condition`` its condition key;
the Prolific ids from the URL; ``started_at``/``updated_at``/``ended_at`` naive UTC
times; ``end_reason`` ``finished``, ``declined``, ``device``, ``comprehension`` or
NULL while the session runs.

``pages``: the trial records of one page of one participant as JSON text (a list of
objects); (``participant``, ``page``) is unique, a page saved again replaces its row
(``id`` keeps the order of first saves).

``refusals``: each start refused because that Prolific id (or session) already
finished or was screened out; ``reason`` is how that earlier session ended.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["ID_LENGTH", "PAGE_NAME_LENGTH", "URL_FIELD_LENGTH", "Base", "PageRow",
           "RefusalRow", "SessionRow"]

ID_LENGTH = 32
PAGE_NAME_LENGTH = 64
URL_FIELD_LENGTH = 128
"""Longest Prolific id (``PROLIFIC_PID``, ``STUDY_ID``, ``SESSION_ID``) stored."""


class Base(DeclarativeBase):
    """Declarative base of the collector's tables."""


class SessionRow(Base):
    """A participant's session."""

    __tablename__ = "sessions"

    participant: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    arm: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    condition: Mapped[str] = mapped_column(String(64))
    prolific_pid: Mapped[str | None] = mapped_column(String(URL_FIELD_LENGTH), unique=True)
    study_id: Mapped[str | None] = mapped_column(String(URL_FIELD_LENGTH))
    session_id: Mapped[str | None] = mapped_column(String(URL_FIELD_LENGTH))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    end_reason: Mapped[str | None] = mapped_column(String(16))


class PageRow(Base):
    """The trial records of one page of one participant."""

    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("participant", "page", name="uq_pages_participant_page"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("sessions.participant", ondelete="CASCADE"))
    page: Mapped[str] = mapped_column(String(PAGE_NAME_LENGTH))
    records: Mapped[str] = mapped_column(Text)
    saved_at: Mapped[dt.datetime] = mapped_column(DateTime)


class RefusalRow(Base):
    """A refused start (the participant had already finished or was screened out)."""

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prolific_pid: Mapped[str | None] = mapped_column(String(URL_FIELD_LENGTH), index=True)
    refused_at: Mapped[dt.datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(String(16))
