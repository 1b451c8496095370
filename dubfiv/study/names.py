"""Neutral file names for the images participants load, and the private table behind them.

Everything a participant's browser fetches lies in the hosted folder
``public/`` of a study. A file name such as ``row1_bin5.png`` or
``task03_stretchy.png`` would tell a curious participant what the image shows
(the logit bin, the label), so :class:`ImageNamer` gives every image an opaque
name: 16 hex digits of an HMAC-SHA256 of its descriptive key (e.g.
``baseline/row1_bin5``) under a key derived from the export's seed and the
study name. Names are therefore the same on a re-export with the same seed and
name (the hosted images keep matching the survey), and they reveal nothing
without the private table :data:`NAMES_RECORD` (``records/image_names.json``,
outside ``public/``), which maps each name back to its key. This hides
meaning from participants; it is not a secret against someone who knows the
seed and the study name.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

from dubfiv.errors import DubfivError

__all__ = ["NAMES_RECORD", "PUBLIC_DIR", "ImageNamer", "NamingError"]

PUBLIC_DIR = "public"
"""The folder of a study to put on a web server (only neutral-named images)."""
NAMES_RECORD = "records/image_names.json"
"""The private table: neutral name -> descriptive key (never hosted)."""
_HEX_DIGITS = 16


class NamingError(DubfivError, ValueError):
    """Two images were given the same descriptive key (a bug in the caller)."""


class ImageNamer:
    """Hands out ``public/<16 hex>.png`` paths for descriptive keys and remembers them.

    Args:
        seed: the export's seed.
        salt: more key material (the study name).
        public_dir: the hosted folder, relative to the study folder.
    """

    def __init__(self, seed: int, salt: str, public_dir: str = PUBLIC_DIR) -> None:
        self.public_dir = public_dir
        self._key = hashlib.sha256(f"dubfiv-study-names\0{seed}\0{salt}".encode()).digest()
        self._by_key: dict[str, str] = {}

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
        """The private table (JSON-ready): per neutral path its descriptive key."""
        return {"public_dir": self.public_dir,
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
