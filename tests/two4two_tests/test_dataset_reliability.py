"""The dataset writer never loses work: one render per folder, kills, full disks, damage.

Most tests use the fake renderer (``two4two_fakes``); two run the real
``two4two_render_dataset`` with Blender: two renders started together on one
folder, and a render killed with SIGKILL that the next run takes over.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from cluster_fakes import tree_digest
from disk_faults import mount_small_disk
from PIL import Image
from two4two_fakes import TINY_SPLITS, FakeRenderer, wait_for_recorded, write_config

from two4two import cli_tool, dataset
from two4two.blender import RenderError, WorkerCrashError
from two4two.cli_tool import render_dataset
from two4two.dataset import LOCK, DatasetError, DatasetLockedError
from two4two.files import owner_tag
from two4two.pytorch import Two4Two, Two4TwoDatasetError
from two4two.scene_parameters import SceneValueError, load_jsonl

PROG = "two4two_render_dataset"
REAL_SPLITS = """
resolution = [32, 32]
render_samples = 2
n_processes = 1
[[dataset.split]]
name = "train"
n_samples = {n}
"""


def tiny(tmp_path: Path, output: Path | None = None, extra: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_config(tmp_path / "tiny.toml", output or tmp_path / "data",
                        splits=TINY_SPLITS, extra=extra)


def one_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{PROG}: error:"), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def fake_cli(monkeypatch: pytest.MonkeyPatch, renderer: FakeRenderer | None = None) -> None:
    """Make the command render with the fake renderer instead of Blender."""
    use = renderer or FakeRenderer()
    monkeypatch.setattr(dataset, "_render_pooled", lambda config, progress, sampler=None:
                        dataset._render_all(config, use, progress, sampler))


def intact(directory: Path, n: int) -> list:
    args = json.loads((directory / "split_args.json").read_text())
    scenes = load_jsonl(directory / "parameters.jsonl")
    assert args["complete"] is True and len(scenes) == n == len({p.id for p in scenes})
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]
    return scenes


# --------------------------------------------------------------------------- one render per folder


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from two4two.dataset import LOCK
    from two4two.locking import FolderLock
    FolderLock(sys.argv[1], name=LOCK, purpose="rendering").acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_second_render_into_a_busy_folder_stops_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(data)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        renderer = FakeRenderer()
        with pytest.raises(DatasetLockedError) as caught:
            render_dataset(tiny(tmp_path), render_fn=renderer, progress=False)
        assert caught.value.holder is not None and caught.value.holder.pid == holder.pid
        assert renderer.rendered == [] and sorted(p.name for p in data.iterdir()) == [LOCK]
        fake_cli(monkeypatch)
        assert cli_tool.main([str(tiny(tmp_path)), "--no-progress"]) == 1
        one_line(capsys.readouterr().err, str(data), "is in use", f"pid {holder.pid}",
                 "rendering", "kill")
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is taken over, the render completes
    render_dataset(tiny(tmp_path), render_fn=FakeRenderer(), progress=False)
    intact(data / "train", 6)
    assert not (data / LOCK).exists()


def _real_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "two4two", str(config), "--no-progress"]


def test_two_real_renders_started_together(tmp_path: Path) -> None:
    """The audit's case: two commands at once on one folder. One renders, the other stops
    at once in one line; the folder ends complete with every scene once."""
    config = write_config(tmp_path / "real.toml", tmp_path / "data",
                          splits=REAL_SPLITS.format(n=12))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first, second = (subprocess.Popen(_real_command(config), cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    results = [p.communicate(timeout=300) for p in (first, second)]
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 1], results
    loser = results[[first.returncode, second.returncode].index(1)][1]
    one_line(loser, "is in use", "rendering")
    intact(tmp_path / "data" / "train", 12)
    rerun = subprocess.run(_real_command(config), cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    intact(tmp_path / "data" / "train", 12)


def test_a_killed_real_render_leaves_nothing_that_blocks_or_lingers(tmp_path: Path) -> None:
    """SIGKILL mid-split: the lock, the workers' RAM-disk folder and temporary files of the
    dead run are taken over or removed by the next run, which completes the split."""
    config = write_config(tmp_path / "real.toml", tmp_path / "data",
                          splits=REAL_SPLITS.format(n=40))
    train = tmp_path / "data" / "train"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(_real_command(config), cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_recorded(train / "parameters.jsonl", 3, process)
        scratch = [p for p in Path("/dev/shm").glob(f"two4two-render-pid{process.pid}-*")]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "data" / LOCK).exists()  # kill -9 leaves the file behind
    rerun = subprocess.run(_real_command(config), cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    intact(train, 40)
    assert not (tmp_path / "data" / LOCK).exists()
    if Path("/dev/shm").is_dir():
        assert scratch, "the killed render had no scratch folder named after its process"
        assert not any(p.exists() for p in scratch)


# --------------------------------------------------------------------------- seeded ids


def test_ids_come_from_the_seeded_plan(tmp_path: Path) -> None:
    a = render_dataset(tiny(tmp_path / "a"), render_fn=FakeRenderer(), progress=False)
    b = render_dataset(tiny(tmp_path / "b"), render_fn=FakeRenderer(), progress=False)
    c = render_dataset(tiny(tmp_path / "c", extra="seed = 7\n"), render_fn=FakeRenderer(),
                       progress=False)
    ids = [[p.id for p in load_jsonl(d / "parameters.jsonl")] for d in (a[0], b[0], c[0])]
    assert ids[0] == ids[1] and not set(ids[0]) & set(ids[2])
    assert all(uuid.UUID(i).version == 4 for i in ids[0])
    clones = load_jsonl(a[2] / "parameters.jsonl")
    again = load_jsonl(b[2] / "parameters.jsonl")
    assert [p.id for p in clones] == [p.id for p in again]
    all_ids = [p.id for d in a for p in load_jsonl(d / "parameters.jsonl")]
    assert len(all_ids) == len(set(all_ids))  # splits and interventions never share ids


def test_an_id_that_is_no_file_name_is_refused_when_read(tmp_path: Path) -> None:
    render_dataset(tiny(tmp_path), render_fn=FakeRenderer(), progress=False)
    path = tmp_path / "data" / "train" / "parameters.jsonl"
    lines = path.read_text().splitlines()
    state = json.loads(lines[3])
    state["id"] = "../../../x"
    lines[3] = json.dumps(state)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(Two4TwoDatasetError, match=r"line 4 is not a valid scene: id '\.\./"):
        Two4Two(tmp_path / "data", "train")
    with pytest.raises(SceneValueError, match="not a scene id"):
        load_jsonl(path)


# --------------------------------------------------------------------------- damaged splits


def _cut_last_line(path: Path) -> bytes:
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: start + (len(data) - start) // 2])
    return data


def test_a_cut_last_line_is_an_error_for_training_and_restored_by_a_rerun(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    train = tmp_path / "data" / "train"
    before = _cut_last_line(train / "parameters.jsonl")
    with pytest.raises(Two4TwoDatasetError, match=r"parameters.jsonl: line 6 is cut off.*"
                                                  r"two4two_render_dataset"):
        Two4Two(tmp_path / "data", "train")
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)
    assert (train / "parameters.jsonl").read_bytes() == before  # the same scene, same id
    assert renderer.rendered == [load_jsonl(train / "parameters.jsonl")[-1].id]
    assert len(Two4Two(tmp_path / "data", "train")) == 6


def test_a_damaged_middle_line_is_restored_from_the_plan(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    path = tmp_path / "data" / "test" / "parameters.jsonl"
    before = path.read_bytes()
    lines = before.decode().splitlines()
    lines[1] = lines[1][:40]
    path.write_text("\n".join(lines) + "\n")
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)
    assert path.read_bytes() == before
    ids = [p.id for p in load_jsonl(path)]
    assert renderer.rendered == ids[1:]  # from the damaged line on
    intact(tmp_path / "data" / "test", 5)


def test_a_split_marked_complete_with_lines_missing(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    path = tmp_path / "data" / "train" / "parameters.jsonl"
    before = path.read_bytes()
    path.write_bytes(b"".join(before.splitlines(keepends=True)[:4]))
    with pytest.raises(Two4TwoDatasetError, match="holds 4 scenes but the split is complete "
                                                  "with 6"):
        Two4Two(tmp_path / "data", "train")
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    assert path.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong_size", "deleted"])
def test_a_corrupt_png_in_a_finished_split_is_rendered_again(tmp_path: Path,
                                                             damage: str) -> None:
    config = tiny(tmp_path)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    train = tmp_path / "data" / "train"
    scenes = load_jsonl(train / "parameters.jsonl")
    victim = train / (scenes[3].mask_filename if damage == "truncated" else scenes[3].filename)
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:-30])
    elif damage == "garbage":
        data = bytearray(victim.read_bytes())
        data[60:70] = b"0123456789"
        victim.write_bytes(bytes(data))
    elif damage == "wrong_size":
        Image.new("RGB", (16, 16)).save(victim, format="PNG")
    else:
        victim.unlink()
    renderer = FakeRenderer()
    render_dataset(config, render_fn=renderer, progress=False)
    assert renderer.rendered == [scenes[3].id]
    intact(train, 6)
    assert Two4Two(tmp_path / "data", "train")[3][0].shape == (3, 32, 32)


def test_damage_of_an_older_split_that_cannot_be_replanned_names_the_fix(tmp_path: Path
                                                                         ) -> None:
    """A split whose ids were random (rendered before ids were seeded): its lost line
    cannot be restored, and the error says how to start the split over."""
    config = tiny(tmp_path)
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    path = tmp_path / "data" / "train" / "parameters.jsonl"
    scenes = load_jsonl(path)
    for scene in scenes:
        scene.id = str(uuid.uuid4())
    path.write_text("".join(json.dumps(s.state_dict()) + "\n" for s in scenes[:5]))
    with pytest.raises(DatasetError, match=r"line.*force_overwrite = true"):
        render_dataset(config, render_fn=FakeRenderer(), progress=False)


# --------------------------------------------------------------------------- full, read-only disks


def test_a_full_disk_while_planning_is_one_line_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    with mount_small_disk(tmp_path / "disk", size_kib=512) as disk:
        config = tiny(tmp_path, output=disk.path / "data")
        disk.fill(leave_bytes=2048)  # room for folders and the lock, not for a plan
        renderer = FakeRenderer()
        fake_cli(monkeypatch, renderer)
        assert cli_tool.main([str(config), "--no-progress"]) == 1
        line = one_line(capsys.readouterr().err, "No space left on device", "free some space")
        assert str(disk.path / "data") in line
        assert renderer.rendered == []
        leftovers = [p for p in (disk.path / "data").rglob("*")
                     if p.name.endswith(".tmp") or p.name == "planned.jsonl" or p.name == LOCK]
        assert leftovers == []
        disk.free_space()
        fake_cli(monkeypatch)
        assert cli_tool.main([str(config), "--no-progress"]) == 0
        intact(disk.path / "data" / "train", 6)
        intact(disk.path / "data" / "test_obj_color", 5)


def test_a_full_disk_while_rendering_resumes_where_it_stopped(tmp_path: Path) -> None:
    with mount_small_disk(tmp_path / "disk", size_kib=1024) as disk:
        config = tiny(tmp_path, output=disk.path / "data")
        renderer = FakeRenderer()
        renderer.fail_after = 3  # stop, fill the disk, and go on writing
        with pytest.raises(KeyboardInterrupt):
            render_dataset(config, render_fn=renderer, progress=False)
        disk.fill()
        with pytest.raises(OSError):
            render_dataset(config, render_fn=FakeRenderer(), progress=False)
        disk.free_space()
        render_dataset(config, render_fn=FakeRenderer(), progress=False)
        assert [p.id for p in intact(disk.path / "data" / "train", 6)][:3] == renderer.rendered


def test_a_read_only_dataset_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    with mount_small_disk(tmp_path / "disk", size_kib=512) as disk:
        config = tiny(tmp_path, output=disk.path / "data")
        disk.read_only()
        fake_cli(monkeypatch)
        assert cli_tool.main([str(config), "--no-progress"]) == 1
        one_line(capsys.readouterr().err, str(disk.path / "data"), "read-only")


def test_stale_temporary_files_of_dead_writers_go_live_ones_stay(tmp_path: Path) -> None:
    config = tiny(tmp_path)
    renderer = FakeRenderer()
    renderer.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        render_dataset(config, render_fn=renderer, progress=False)
    train = tmp_path / "data" / "train"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    host = owner_tag().split("-")[1]
    leftover = train / f".planned.jsonl.pid{dead.stdout.strip()}-{host}.abc.tmp"
    leftover.write_text("half a plan")
    render_dataset(config, render_fn=FakeRenderer(), progress=False)
    assert not leftover.exists()
    intact(train, 6)


# --------------------------------------------------------------------------- Blender crashes


def test_a_crashed_worker_costs_only_its_image(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """A worker dying by SIGSEGV (seen once in CI) restarts the workers and goes on: the
    dataset equals one rendered without the crash, every scene rendered once."""
    reference = FakeRenderer()
    render_dataset(tiny(tmp_path / "a"), render_fn=reference, progress=False)
    crashing = FakeRenderer()
    crashing.fail_after, crashing.fail_with = 2, WorkerCrashError
    render_dataset(tiny(tmp_path / "b"), render_fn=crashing, progress=False)
    assert tree_digest(tmp_path / "b" / "data") == tree_digest(tmp_path / "a" / "data")
    assert crashing.rendered == reference.rendered
    err = capsys.readouterr().err
    assert "injected failure; going on with fresh workers (restart 1 of 2)" in err
    assert str(tmp_path / "b" / "data" / "train") in err


def test_a_worker_crashing_again_and_again_stops_the_render(tmp_path: Path) -> None:
    calls = []

    def always_crashing(params, **kwargs):
        calls.append(len(params))
        raise WorkerCrashError("Blender worker 0 died: killed by signal 11 (SIGSEGV)")

    with pytest.raises(WorkerCrashError, match="SIGSEGV"):
        render_dataset(tiny(tmp_path), render_fn=always_crashing, progress=False)
    assert calls == [6] * (dataset.CRASH_RETRIES + 1)


def test_a_render_killed_from_outside_is_not_retried(tmp_path: Path) -> None:
    renderer = FakeRenderer()
    renderer.fail_after, renderer.fail_with = 2, RenderError  # e.g. SIGKILL by the OOM killer
    with pytest.raises(RenderError):
        render_dataset(tiny(tmp_path), render_fn=renderer, progress=False)
    assert len(renderer.calls) == 1
