"""The one error base of :mod:`dubfiv`.

Every exception that :mod:`dubfiv` raises on purpose (bad input, a missing
file, a failed check) derives from :class:`DubfivError`, so a caller (and each
``dubfiv_*`` command) catches that one class. Subclasses also derive from the
built-in type that fits (``ValueError``, ``RuntimeError``, ...) so existing
``except ValueError`` code keeps working.

Messages name the parameter at fault, never a command-line flag: in backticks
(`` `n_rows` must be at least 1 ``), or as the leading word of a
:class:`ParameterError` that carries it in ``parameter`` (``rows 0 must be at
least 1``). Each command words both as its own flags with one function,
:func:`dubfiv.cli._oneline.flag_message` (see ``docs/runs.md``, "Errors").
"""

from __future__ import annotations

__all__ = ["DubfivError", "ParameterError"]


class DubfivError(Exception):
    """Base of every deliberate :mod:`dubfiv` error; its message names the input and the fix."""


class ParameterError(DubfivError, ValueError):
    """A function was given a value it cannot use (the message names the parameter).

    ``parameter``, if given, is the name of the setting at fault, so that a command
    can name its own flag for it; a message that starts with that name gets the flag
    in its place, any other gets the flag in front.
    """

    def __init__(self, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
