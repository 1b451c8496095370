"""Atomic file writes for :mod:`dubfiv`: the shared writer of :mod:`two4two.files`.

A crash or Ctrl-C leaves the old file or the new one, never a truncated one, and
the new file gets the usual permissions (``0o666`` minus the umask, not the
``0o600`` of a temporary file).
"""

from __future__ import annotations

from two4two.files import atomic_write, atomic_write_text, umask

__all__ = ["atomic_write", "atomic_write_text", "umask"]
