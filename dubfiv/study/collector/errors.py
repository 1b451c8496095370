"""Errors of the collector; each is a :class:`~dubfiv.errors.DubfivError`."""

from __future__ import annotations

from dubfiv.errors import DubfivError

__all__ = ["CollectorError", "StoreError", "StudyFolderError"]


class CollectorError(DubfivError):
    """Base of the collector's deliberate errors."""


class StoreError(CollectorError, RuntimeError):
    """The database cannot be opened, reached or used (the message names its URL
    without the password)."""


class StudyFolderError(CollectorError, ValueError):
    """The study folder cannot be served (no ``study.json``, no ``public/index.html``)."""
