"""Which file of ``public/`` a request path names, if any.

Only regular files below the hosted folder are served: the path is percent-decoded
once and refused when it holds ``..`` or ``.`` segments, hidden names (a leading
``.``), empty segments (``//``), backslashes, NUL or other control characters, or a
``%`` left after decoding (a double-encoded path); the file is then resolved (so a
symbolic link that leads out of the folder is refused) and must be a regular file
inside it. ``/`` means ``index.html``; no other folder is served (no listings).
The API's prefix ``api/`` is never a file.
"""

from __future__ import annotations

import mimetypes
import stat
from pathlib import Path
from urllib.parse import unquote

__all__ = ["INDEX", "media_type", "public_file"]

INDEX = "index.html"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml",
          ".txt": "text/plain; charset=utf-8", ".map": "application/json"}


def _segments(raw_path: bytes) -> list[str] | None:
    try:
        path = unquote(raw_path.decode("ascii"), errors="strict")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return None
    if not path.startswith("/"):
        return None
    rest = path[1:]
    if rest == "":
        return [INDEX]
    if "\\" in rest or "%" in rest or any(ord(c) < 32 or ord(c) == 127 for c in rest):
        return None
    parts = rest.split("/")
    if any(not part or part.startswith(".") for part in parts) or parts[0] == "api":
        return None
    return parts


def public_file(root: Path, raw_path: bytes) -> Path | None:
    """The regular file below ``root`` (already resolved) that the request path
    ``raw_path`` (as received, percent-encoded, without the query) names, else ``None``."""
    parts = _segments(raw_path)
    if parts is None:
        return None
    try:
        resolved = root.joinpath(*parts).resolve(strict=True)
        mode = resolved.stat().st_mode
    except (OSError, RuntimeError, ValueError):
        return None
    if not resolved.is_relative_to(root) or resolved == root or not stat.S_ISREG(mode):
        return None
    return resolved


def media_type(path: Path) -> str:
    """The Content-Type of a served file (by its suffix)."""
    known = _TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"
