"""The one error base of :mod:`two4two`, and the renderer's errors.

Every exception that :mod:`two4two` raises on purpose (a bad config, a missing
dataset, a failed render) derives from :class:`Two4TwoError`. Subclasses also
derive from the built-in type that fits (``ValueError``, ``RuntimeError``, ...)
so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = ["RenderError", "Two4TwoError", "WorkerCrashError"]


class Two4TwoError(Exception):
    """Base of every deliberate :mod:`two4two` error; its message names the input and the fix."""


class RenderError(Two4TwoError, RuntimeError):
    """Rendering failed: ``bpy`` is missing, or a Blender worker failed or died.

    Raised by the renderer (:mod:`two4two.blender`, which exports it, and
    :mod:`two4two._blender.renderer`).

    ``details`` holds the worker's traceback or log tail, when there is one.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class WorkerCrashError(RenderError):
    """A Blender worker crashed by itself (SIGSEGV, SIGBUS, ...; see
    :data:`two4two._blender.pool.CRASH_SIGNALS`), not killed from outside."""
