"""Neutral file names for the images participants load, and the private table behind them.

Everything a participant's browser fetches lies in the hosted folder
``public/`` of a study. A file name such as ``row1_bin5.png`` or
``task03_stretchy.png`` would tell a curious participant what the image shows
(the logit bin, the label), so :class:`ImageNamer` gives every image an opaque
name: 16 hex digits of an HMAC-SHA256 of its descriptive key (e.g.
``baseline/row1_bin5``) under a random secret of 32 bytes. The secret is kept
with the private table :data:`NAMES_RECORD` (``records/image_names.json``,
outside ``public/``), which maps each name back to its key; nothing that is
hosted or shown to participants lets anyone recompute the names, not even
with the source code, the seed and the study's name.

A re-export into the same folder reuses that folder's secret
(:func:`read_secret`), so the names stay the same and the hosted images keep
matching the survey; an export into a new folder gets a new secret and other
names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from dubfiv.errors import DubfivError

__all__ = ["NAMES_RECORD", "PUBLIC_DIR", "SECRET_BYTES", "ImageNamer", "NamingError",
           "read_secret"]

PUBLIC_DIR = "public"
"""The folder of a study to put on a web server (only neutral-named images)."""
NAMES_RECORD = "records/image_names.json"
"""The private table: neutral name -> descriptive key, and the naming secret (never hosted)."""
SECRET_BYTES = 32
"""Length of the random naming secret."""
_HEX_DIGITS = 16


class NamingError(DubfivError, ValueError):
    """Two images were given the same descriptive key, or the secret is unusable (a bug in
    the caller)."""


def read_secret(folder: str | os.PathLike[str]) -> bytes | None:
    """The naming secret of the study ``folder`` (an earlier export), or ``None``.

    ``None`` where the folder, its :data:`NAMES_RECORD` or a well-formed secret in it
    is missing (no earlier export, or one without a secret): the caller then
    draws a new secret, and the image names change.
    """
    path = Path(folder) / NAMES_RECORD
    try:
        secret = json.loads(path.read_text(encoding="utf-8")).get("secret")
        key = bytes.fromhex(secret)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
        return None
    return key if len(key) == SECRET_BYTES else None


class ImageNamer:
    """Hands out ``public/<16 hex>.png`` paths for descriptive keys and remembers them.

    Args:
        secret: the HMAC key (:data:`SECRET_BYTES` bytes); ``None`` draws a new random one
            (:mod:`secrets`). Pass an earlier export's (:func:`read_secret`) to keep its names.
        public_dir: the hosted folder, relative to the study folder.
    """

    def __init__(self, secret: bytes | None = None, public_dir: str = PUBLIC_DIR) -> None:
        if secret is None:
            secret = secrets.token_bytes(SECRET_BYTES)
        if not isinstance(secret, bytes) or len(secret) != SECRET_BYTES:
            raise NamingError(f"`secret` must be {SECRET_BYTES} random bytes (or None for a "
                              "new one), e.g. from read_secret(<earlier export>)")
        self.public_dir = public_dir
        self._key = secret
        self._by_key: dict[str, str] = {}

    @property
    def secret(self) -> bytes:
        """The HMAC key (private: it is written into :data:`NAMES_RECORD` only)."""
        return self._key

    def path(self, key: str) -> str:
        """The study-relative path (``public/<hex>.png``) of the image described by ``key``.

        Raises:
            NamingError: ``key`` was named before (each image is written once).
        """
        if key in self._by_key:
            raise NamingError(f"image key {key!r} was named twice")
        digest = hmac.new(self._key, key.encode(), hashlib.sha256).hexdigest()[:_HEX_DIGITS]
        rel = f"{self.public_dir}/{digest}.png"
        if rel in self._by_key.values():  # 64-bit collision: practically never
            raise NamingError(f"images {key!r} and another got the same name {rel}")
        self._by_key[key] = rel
        return rel

    def table(self) -> dict[str, Any]:
        """The private table (JSON-ready): the secret and, per neutral path, its key."""
        return {"public_dir": self.public_dir, "secret": self._key.hex(),
                "images": [{"path": rel, "key": key} for key, rel in self._by_key.items()]}

    def keys(self) -> dict[str, str]:
        """Descriptive key -> study-relative path, in naming order."""
        return dict(self._by_key)

    def write(self, folder: Path) -> Path:
        """Write :data:`NAMES_RECORD` into the study ``folder``; return its path."""
        from dubfiv.explain.records import write_json

        path = Path(folder) / NAMES_RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.table())
        return path
