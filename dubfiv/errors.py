"""The one error base of :mod:`dubfiv`.

Every exception that :mod:`dubfiv` raises on purpose (bad input, a missing
file, a failed check) derives from :class:`DubfivError`, so a caller (and each
``dubfiv_*`` command) catches that one class. Subclasses also derive from the
built-in type that fits (``ValueError``, ``RuntimeError``, ...) so existing
``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["DubfivError"]


class DubfivError(Exception):
    """Base of every deliberate :mod:`dubfiv` error; its message names the input and the fix."""
