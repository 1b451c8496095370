"""The exception of the workflow tools (bad input; the CLIs print it as one line)."""

from __future__ import annotations

from dubfiv.errors import DubfivError

__all__ = ["WorkflowError"]


class WorkflowError(DubfivError, ValueError):
    """Bad input to a workflow tool; the message names the file or flag and the fix."""
