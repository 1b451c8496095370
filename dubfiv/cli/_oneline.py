"""Shared pieces of the command-line tools: one-line errors, flag names and exit codes.

Library messages name the parameter at fault (``docs/runs.md``, "Errors"): in
backticks (`` `dataset_dir` ``), or as the leading word of a
:class:`~dubfiv.errors.ParameterError` whose ``parameter`` is that name. Every
command words them with its own flags the same way: :func:`flags_of` maps each
parameter to the flag that sets it, and :func:`flag_message` (called by
:func:`fail`, and so by :func:`guarded` and :func:`run_main`) rewrites the message
with that map.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

__all__ = ["RUN_RENAMES", "OneLineParser", "error_bases", "fail", "flag_message", "flags_of",
           "guarded", "in_flags", "run_main"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are a single line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def flags_of(parser: argparse.ArgumentParser, **renames: str) -> dict[str, str]:
    """Parameter name -> flag of a command.

    Every option maps its ``dest`` to its long flag (the one spelled like the
    ``dest`` where there are several); ``renames`` add or override entries where
    the library's parameter is called otherwise (``run_dir="--model"``).
    """
    flags: dict[str, str] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs and action.dest != "help":
            flags[action.dest] = next((s for s in longs if s[2:] == action.dest), longs[0])
    return {**flags, **renames}


def in_flags(text: str, flags: Mapping[str, str] | None) -> str:
    """``text`` with each backticked parameter that ``flags`` knows replaced by its flag."""
    if not flags:
        return text
    return _PARAMETER.sub(lambda m: flags.get(m.group(1), m.group(0)), text)


def flag_message(error: BaseException | str, flags: Mapping[str, str] | None) -> str:
    """The message of ``error`` on one line, worded in a command's ``flags`` (from
    :func:`flags_of`).

    An error's ``parameter`` (:class:`~dubfiv.errors.ParameterError`) that ``flags``
    knows becomes its flag: the message's leading parameter name is replaced by the
    flag (``rows 0 must be ...`` -> ``--rows 0 must be ...``), or the flag is put in
    front (``--rows: ...``) where the message does not name it; then every backticked
    parameter is replaced (:func:`in_flags`).
    """
    text = " ".join(str(error).split("\n"))
    parameter = getattr(error, "parameter", None)
    flag = flags.get(parameter) if flags and isinstance(parameter, str) else None
    if flag and f"`{parameter}`" not in text:
        if re.match(rf"{re.escape(parameter)}\b", text):
            text = flag + text[len(parameter):]
        else:
            text = f"{flag}: {text}"
    return in_flags(text, flags)


def fail(prog: str, error: BaseException | str, status: int = 1,
         flags: Mapping[str, str] | None = None) -> int:
    """Print ``<prog>: error: <message>`` on one line to stderr; return ``status``.

    ``flags`` (from :func:`flags_of`) words the library's parameter names as flags
    (:func:`flag_message`).
    """
    print(f"{prog}: error: {flag_message(error, flags)}", file=sys.stderr)
    return status


def error_bases() -> tuple[type[BaseException], ...]:
    """:class:`~dubfiv.errors.DubfivError`, and :class:`~two4two.errors.Two4TwoError` once
    :mod:`two4two` is imported (before that nothing can raise it)."""
    from dubfiv.errors import DubfivError

    if "two4two.errors" not in sys.modules:
        return (DubfivError,)
    return (DubfivError, sys.modules["two4two.errors"].Two4TwoError)


def guarded(prog: str, parser: argparse.ArgumentParser, work: Callable[[], int],
            also: tuple[type[BaseException], ...] = (), interrupted: str | None = None,
            **renames: str) -> int:
    """``work()``'s exit status; an error of :func:`error_bases` (or of ``also``) instead
    prints one line worded in the command's flags (:func:`flags_of` with ``renames``) and
    gives 1, and so does a failed file operation (a full disk, a read-only folder: the
    line names the path and the fix); with ``interrupted``, Ctrl-C prints that line and
    gives 130."""
    try:
        return work()
    except (*error_bases(), *also) as error:
        return fail(prog, error, flags=flags_of(parser, **renames))
    except OSError as error:
        from two4two.files import describe_os_error

        return fail(prog, describe_os_error(error))
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        return fail(prog, interrupted, 130)


RUN_RENAMES = {"run_dir": "--model", "head_index": "--head", "output_dir": "--output"}
"""Parameters of the run-analysing functions whose flags have other names."""


def run_main(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             run: Callable[[argparse.Namespace], int], **options: Any) -> int:
    """Parse ``argv`` and return ``run(args)`` under :func:`guarded` (``options``: its
    ``also``, ``interrupted`` and renames)."""
    args = parser.parse_args(argv)
    return guarded(prog, parser, lambda: run(args), **options)
