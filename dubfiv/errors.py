"""The one error base of :mod:`dubfiv`.

Every exception that :mod:`dubfiv` raises on purpose (bad input, a missing
file, a failed check) derives from :class:`DubfivError`, so a caller (and each
``dubfiv_*`` command) catches that one class. Subclasses also derive from the
built-in type that fits (``ValueError``, ``RuntimeError``, ...) so existing
``except ValueError`` code keeps working.

Messages name the parameter at fault in backticks (`` `n_rows` must be at least
1 ``), never a command-line flag: each command maps parameter names to its own
flags (``dubfiv/cli/_oneline.py``; see ``docs/runs.md``, "Errors").
"""

from __future__ import annotations

__all__ = ["DubfivError", "ParameterError"]


class DubfivError(Exception):
    """Base of every deliberate :mod:`dubfiv` error; its message names the input and the fix."""


class ParameterError(DubfivError, ValueError):
    """A function was given a value it cannot use (the message names the parameter).

    ``parameter``, if given, is the name of the setting at fault, so that a command
    can name its own flag for it.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
