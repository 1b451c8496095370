"""Folder locks, owner-tagged temporary files and one-line disk errors (two4two.files/locking)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from disk_faults import failing_writes, mount_small_disk

from two4two.files import (
    atomic_write_many,
    atomic_write_text,
    describe_os_error,
    make_owned_temp_dir,
    owner_is_dead,
    owner_tag,
    pid_is_alive,
    remove_stale,
)
from two4two.locking import FolderLock, FolderLockedError

HOLD = textwrap.dedent("""
    import sys, time
    from two4two.locking import FolderLock
    lock = FolderLock(sys.argv[1], purpose="testing")
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def _hold_in_child(folder: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(FolderLockedError) as caught:
            FolderLock(tmp_path, purpose="testing").acquire()
        assert caught.value.holder is not None and caught.value.holder.pid == child.pid
        message = str(caught.value)
        assert f"pid {child.pid}" in message and "this machine" in message
        assert "\n" not in message
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    child = _hold_in_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert (tmp_path / ".lock").exists()  # left behind by kill -9
    with FolderLock(tmp_path) as lock:
        assert lock.held
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_the_lock_file_is_removed_and_can_be_taken_again(tmp_path: Path) -> None:
    for _ in range(3):
        with FolderLock(tmp_path, name=".x.lock"):
            with pytest.raises(FolderLockedError):
                FolderLock(tmp_path, name=".x.lock").acquire()
    assert list(tmp_path.iterdir()) == []


def test_the_error_class_can_be_the_callers(tmp_path: Path) -> None:
    class MyError(RuntimeError):
        pass

    with FolderLock(tmp_path), pytest.raises(MyError, match="in use"):
        FolderLock(tmp_path, error=MyError).acquire()


def test_pid_liveness_and_owner_tags() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert pid_is_alive(os.getpid())
    child.wait()
    assert not pid_is_alive(child.pid)
    assert not owner_is_dead(f".x.{owner_tag()}.abc.tmp")
    assert owner_is_dead(f".x.pid{child.pid}-{owner_tag().split('-')[1]}.abc.tmp")
    assert not owner_is_dead(f".x.pid{child.pid}-00000000.abc.tmp")  # another host: kept
    assert not owner_is_dead(".x.abc.tmp")  # no owner: kept


def test_a_zombie_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(f"/proc/{child.pid}/stat") as handle:
            if handle.read().rsplit(")", 1)[-1].split()[0] == "Z":
                break
        time.sleep(0.05)
    assert not pid_is_alive(child.pid)  # exited, not yet reaped
    child.wait()


def test_remove_stale_keeps_live_and_foreign_entries(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = owner_tag().split("-")[1]
    dead_file = tmp_path / f".a.pid{child.pid}-{host}.x.tmp"
    dead_dir = tmp_path / f".study.building-pid{child.pid}-{host}-y"
    live = tmp_path / f".a.{owner_tag()}.z.tmp"
    untagged = tmp_path / ".a.q.tmp"
    for path in (dead_file, live, untagged):
        path.write_text("x")
    dead_dir.mkdir()
    (dead_dir / "answers.json").write_text("{}")
    removed = remove_stale(tmp_path, ".*")
    assert sorted(removed) == sorted([dead_file, dead_dir])
    assert live.exists() and untagged.exists() and not dead_dir.exists()
    assert make_owned_temp_dir(tmp_path, ".q-").name.startswith(f".q-{owner_tag()}-")


def test_atomic_write_many_changes_all_or_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "results.json", tmp_path / "figure.png"
    atomic_write_many({a: lambda t: t.write_text("old a"), b: lambda t: t.write_text("old b")})
    with failing_writes(monkeypatch, after=1) as failed, pytest.raises(OSError) as caught:
        atomic_write_many({a: lambda t: t.write_text("new a"),
                           b: lambda t: t.write_text("new b")})
    assert caught.value.errno == errno.ENOSPC and len(failed) == 1
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "results.json"]


def test_describe_os_error_is_one_line_with_a_fix() -> None:
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/x.png")
    text = describe_os_error(error)
    assert text.startswith("/data/x.png: No space left on device; free some space")
    read_only = describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/y"))
    assert "read-only" in read_only and "/mnt/y" in read_only


def test_a_full_tmpfs_keeps_the_old_file(tmp_path: Path) -> None:
    with mount_small_disk(tmp_path / "disk", size_kib=256) as disk:
        target = disk.path / "plan.jsonl"
        atomic_write_text(target, "old\n")
        disk.fill()
        with pytest.raises(OSError) as caught:
            atomic_write_text(target, "x" * 100_000)
        assert caught.value.errno == errno.ENOSPC
        assert target.read_text() == "old\n"
        assert sorted(p.name for p in disk.path.iterdir()) == [".filler", "plan.jsonl"]
        disk.free_space()
        disk.read_only()
        with pytest.raises(OSError) as caught:
            atomic_write_text(target, "new\n")
        assert caught.value.errno == errno.EROFS
