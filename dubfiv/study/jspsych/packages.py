"""The jsPsych packages the study page loads, pinned by version and content hash.

The page (``public/index.html``) loads four npm packages: ``jspsych`` (the
library and its stylesheet) and three plugins. Each file is pinned twice:

* by exact version in its CDN URL (``https://unpkg.com/<name>@<version>/<file>``);
* by its Subresource Integrity hash (``sha384-<base64 of the SHA-384 of the file>``),
  which the browser checks before running it, so a CDN that served other bytes
  under that URL would stop the page instead of changing it.

The versions are those of ``npm/package.json`` beside this module (with its
``package-lock.json``); the hashes were computed once from an ``npm ci`` of that
file and are constants here. A study that must not depend on a CDN copies the
files from such a local install into ``public/jspsych/`` (``--jspsych-dir``,
:func:`copy_local`), after checking each file's version and hash against the pins
(:func:`check_local`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

from dubfiv.errors import ParameterError

__all__ = [
    "LOCAL_DIR",
    "NPM_DIR",
    "PACKAGES",
    "JsPsychPackageError",
    "Package",
    "PinnedFile",
    "check_local",
    "copy_local",
    "local_paths",
    "sri_hash",
]

NPM_DIR = Path(__file__).with_name("npm")
"""The folder holding our ``package.json`` and ``package-lock.json`` (the pinned versions)."""
LOCAL_DIR = "jspsych"
"""Folder under ``public/`` that holds the local copies (``public/jspsych/<name>/<file>``)."""
CDN = "https://unpkg.com"
PARAMETER = "jspsych_dir"
"""The :class:`~dubfiv.study.build.export_config.ExportConfig` field errors name."""


class JsPsychPackageError(ParameterError):
    """A local jsPsych install does not hold the pinned files (``parameter`` ``jspsych_dir``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, PARAMETER)


@dataclasses.dataclass(frozen=True)
class PinnedFile:
    """One file of a package the page loads: its path inside the package (POSIX) and its
    Subresource Integrity hash (``sha384-...``)."""

    path: str
    integrity: str

    @property
    def is_css(self) -> bool:
        return self.path.endswith(".css")


@dataclasses.dataclass(frozen=True)
class Package:
    """An npm package at an exact version, the files the page loads from it, and the
    global name its browser build defines (``jsPsychModule``, ``jsPsychPreload``, ...)."""

    name: str
    version: str
    global_name: str
    files: tuple[PinnedFile, ...]

    def url(self, file: PinnedFile) -> str:
        """The file's CDN URL by exact version."""
        return f"{CDN}/{self.name}@{self.version}/{file.path}"

    def local_path(self, file: PinnedFile) -> str:
        """The file's path below ``public/`` when copied locally (``jspsych/<name>/<file>``)."""
        return f"{LOCAL_DIR}/{self.name}/{file.path}"


_JS = "dist/index.browser.min.js"

PACKAGES: tuple[Package, ...] = (
    Package("jspsych", "8.3.0", "jsPsychModule", (
        PinnedFile("css/jspsych.css",
                   "sha384-+gGUkbtw2BJWSroKW2jzIEXGe7KxdycJ0Bo+CqzpIOSBHOYEHHRWETaV+v2mpdWX"),
        PinnedFile(_JS,
                   "sha384-PPMNzYQfqrWFhrOxhpwxXmKK+LDH//fBCLsvA/JIRHOfiuOcZ2j8wJhqo87V4R4B"),
    )),
    Package("@jspsych/plugin-html-button-response", "2.1.0", "jsPsychHtmlButtonResponse", (
        PinnedFile(_JS,
                   "sha384-tPGtXEC8xEbInWvarnxvJ3fyzeXwRDS0QjGUts+TGQ9I8OCxiqsv9lxTS3mEN6um"),
    )),
    Package("@jspsych/plugin-survey-html-form", "2.1.0", "jsPsychSurveyHtmlForm", (
        PinnedFile(_JS,
                   "sha384-60fiNESvg3n32x9sx0QAOyIlVkUgaC20Fsuo/ROTm0DeXCwEfaJ0FfE674kO0F9n"),
    )),
    Package("@jspsych/plugin-preload", "2.1.0", "jsPsychPreload", (
        PinnedFile(_JS,
                   "sha384-BiUYHx4tdTYToceth936qf4Wkf+Ho2VZti/5bB5/nDiPRuTaZ37hrxkLsANkHGdp"),
    )),
)
"""The pinned packages, in the order the page loads them (``jspsych`` first)."""


def sri_hash(path: str | os.PathLike[str]) -> str:
    """The Subresource Integrity value of a file: ``sha384-`` + base64 of its SHA-384."""
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha384").digest()
    return "sha384-" + base64.b64encode(digest).decode("ascii")


def _fix(node_modules: Path) -> str:
    """How to get a good install, naming where ours lives."""
    prefix = node_modules.parent if node_modules.name == "node_modules" else node_modules
    return (f"install the pinned versions: copy {NPM_DIR}/package.json and "
            f"package-lock.json into {prefix}, run `npm ci --prefix {prefix}` and pass "
            f"{prefix / 'node_modules'}")


def _installed_version(package_dir: Path) -> str | None:
    try:
        data = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def check_local(node_modules: str | os.PathLike[str]) -> dict[str, Path]:
    """Check a local install against the pins; return ``public/``-relative path -> file.

    ``node_modules`` is the ``node_modules`` folder of an ``npm ci`` of our
    ``package.json`` (it holds ``jspsych/`` and ``@jspsych/...``).

    Raises:
        JsPsychPackageError: the folder, a package or a file is missing, a package has
            another version, or a file another hash (one line naming it and the fix).
    """
    root = Path(node_modules)
    if not root.is_dir():
        raise JsPsychPackageError(f"{PARAMETER} {root}: not a folder; {_fix(root)}")
    found: dict[str, Path] = {}
    for package in PACKAGES:
        package_dir = root / package.name
        version = _installed_version(package_dir)
        if version is None:
            raise JsPsychPackageError(
                f"{PARAMETER} {root}: no readable {package_dir / 'package.json'} (is it a "
                f"node_modules folder?); {_fix(root)}")
        if version != package.version:
            raise JsPsychPackageError(
                f"{PARAMETER} {root}: {package_dir / 'package.json'} is version {version}, "
                f"the page needs {package.name} {package.version}; {_fix(root)}")
        for file in package.files:
            path = package_dir / file.path
            if not path.is_file():
                raise JsPsychPackageError(f"{PARAMETER} {root}: {path} is missing; "
                                          f"{_fix(root)}")
            if sri_hash(path) != file.integrity:
                raise JsPsychPackageError(
                    f"{PARAMETER} {root}: {path} differs from the pinned {package.name} "
                    f"{package.version} (its sha384 is not {file.integrity}); {_fix(root)}")
            found[package.local_path(file)] = path
    return found


def local_paths() -> list[str]:
    """The ``public/``-relative paths of every pinned file when copied locally."""
    return [p.local_path(f) for p in PACKAGES for f in p.files]


def copy_local(node_modules: str | os.PathLike[str], public: str | os.PathLike[str]
               ) -> list[str]:
    """Copy the pinned files of a checked local install into ``public/jspsych/``.

    Returns the written paths, relative to ``public``.

    Raises:
        JsPsychPackageError: as :func:`check_local`.
    """
    files = check_local(node_modules)
    for rel, source in files.items():
        dest = Path(public) / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
    return list(files)
