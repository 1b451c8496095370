"""The one error base of :mod:`two4two`.

Every exception that :mod:`two4two` raises on purpose (a bad config, a missing
dataset, a failed render) derives from :class:`Two4TwoError`. Subclasses also
derive from the built-in type that fits (``ValueError``, ``RuntimeError``, ...)
so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["Two4TwoError"]


class Two4TwoError(Exception):
    """Base of every deliberate :mod:`two4two` error; its message names the input and the fix."""
