"""Atomic folder builds and manifest.json."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import dubfiv
from dubfiv.study.build import bundle
from dubfiv.study.build.bundle import (
    MANIFEST,
    BundleError,
    build_atomically,
    check_writable,
    verify_manifest,
    write_manifest,
)


def _fill(folder: Path, tag: str) -> None:
    (folder / "images").mkdir()
    (folder / "images" / "a.png").write_bytes(bytes(range(256)) * 3 + tag.encode())
    (folder / "study.json").write_text(json.dumps({"tag": tag}))
    (folder / "empty.txt").write_bytes(b"")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_manifest_lists_every_file_with_hashes(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    _fill(folder, "x")
    run = tmp_path / "runs" / "model_2024"
    config = tmp_path / "model.toml"
    config.write_text("a = 1\n")
    manifest = write_manifest(folder, run, config, ["dubfiv_export_user_study", "--model",
                                                    str(run), "--seed", "1"])
    on_disk = json.loads((folder / MANIFEST).read_text())
    assert on_disk == manifest
    expected = {rel: (len(data), hashlib.sha256(data).hexdigest())
                for rel, data in _snapshot(folder).items() if rel != MANIFEST}
    assert {e["path"]: (e["bytes"], e["sha256"]) for e in manifest["files"]} == expected
    assert manifest["library"]["version"] == dubfiv.__version__
    assert manifest["run"] == {"path": str(run), "name": "model_2024"}
    assert manifest["config"]["sha256"] == hashlib.sha256(b"a = 1\n").hexdigest()
    assert manifest["command_line"]["args"][-2:] == ["--seed", "1"]
    assert verify_manifest(folder) == []


def test_verify_detects_tampering(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    _fill(folder, "x")
    write_manifest(folder, None, None, "cmd --flag 'a b'")
    assert json.loads((folder / MANIFEST).read_text())["command_line"]["args"] == [
        "cmd", "--flag", "a b"]
    data = bytearray((folder / "images" / "a.png").read_bytes())
    data[10] ^= 1  # same size, different content
    (folder / "images" / "a.png").write_bytes(bytes(data))
    (folder / "study.json").write_text("longer than before, surely")
    (folder / "empty.txt").unlink()
    (folder / "extra.txt").write_text("?")
    problems = verify_manifest(folder)
    assert any(p.startswith("images/a.png: sha256 differs") for p in problems), problems
    assert any(p.startswith("study.json: ") and "bytes" in p for p in problems), problems
    assert "empty.txt: listed but missing" in problems
    assert "extra.txt: present but not in the manifest" in problems
    assert len(problems) == 4
    (folder / MANIFEST).unlink()
    assert verify_manifest(folder) == [f"{folder / MANIFEST} is missing"]


def test_failed_build_leaves_old_folder_intact(tmp_path: Path) -> None:
    dest = tmp_path / "study"
    build_atomically(dest, lambda tmp: (_fill(tmp, "old"), write_manifest(tmp, None, None, "c")))
    before = _snapshot(dest)

    def failing(tmp: Path) -> None:
        _fill(tmp, "new")
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError, match="render failed"):
        build_atomically(dest, failing)
    assert _snapshot(dest) == before
    assert _leftovers(tmp_path, "study") == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_successful_build_replaces_old_folder(tmp_path: Path, monkeypatch, exchange: bool
                                              ) -> None:
    if not exchange:
        monkeypatch.setattr(bundle, "_exchange", lambda a, b: False)
    dest = tmp_path / "study"
    build_atomically(dest, lambda tmp: (_fill(tmp, "old"), (tmp / "stale.txt").write_text("s"),
                                        write_manifest(tmp, None, None, "c")))
    result = build_atomically(dest, lambda tmp: (_fill(tmp, "new"),
                                                 write_manifest(tmp, None, None, "c"))[1])
    assert json.loads((dest / "study.json").read_text()) == {"tag": "new"}
    assert not (dest / "stale.txt").exists()
    assert result["files"][0]["path"] == "empty.txt"
    assert verify_manifest(dest) == []
    assert _leftovers(tmp_path, "study") == []
    assert oct(dest.stat().st_mode & 0o777) == oct(0o755)


def test_builds_missing_parents(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "study"
    build_atomically(dest, lambda tmp: _fill(tmp, "x"))
    assert (dest / "study.json").is_file()


def test_refuses_to_replace_foreign_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        build_atomically(home, lambda tmp: _fill(tmp, "x"))
    assert (home / "thesis.tex").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    check_writable(tmp_path / "empty")  # an empty folder may be replaced


def test_unusable_destinations_fail_early(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(BundleError, match="exists and is not a folder"):
        check_writable(afile)
    with pytest.raises(BundleError, match="is not a folder"):
        check_writable(afile / "sub" / "study")
    called = []
    with pytest.raises(BundleError):
        build_atomically(afile / "study", lambda tmp: called.append(tmp))
    assert called == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_read_only_parent_fails_early(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(BundleError, match="cannot write in"):
            check_writable(parent / "study")
    finally:
        parent.chmod(0o755)


def test_read_only_filesystem_fails_early() -> None:
    ro = Path("/proc/self")  # not writable, even for root
    if not ro.is_dir():
        pytest.skip("no /proc on this system")
    with pytest.raises(BundleError, match="cannot write in"):
        check_writable(ro / "study")
