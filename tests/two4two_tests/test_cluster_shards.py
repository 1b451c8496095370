"""Sharded (SLURM job array) rendering, with the fake renderer and a fake executor:
shards, markers, status, resubmission and assembly, compared byte for byte with a
local render of the same config. The real SLURM runs are in test_cluster_slurm.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cluster_fakes import FakeExecutor, FakeQueue, ids_of, tree_digest
from two4two_fakes import TINY_SPLITS, FakeRenderer, write_config

from two4two import cli_tool
from two4two.cli_tool import render_dataset
from two4two.cluster.settings import SlurmSettings, parse_minutes
from two4two.cluster.shards import DONE, FAILED, SHARDS, cut_shards, file_sha256, shard_dir
from two4two.cluster.status import format_status
from two4two.cluster.submit import (
    ShardsFailedError,
    dataset_status,
    submit_dataset,
    wait_for_dataset,
)
from two4two.cluster.task import ShardJob, render_shard
from two4two.dataset import DatasetError
from two4two.dataset_config import DatasetConfigError, load_dataset_configs

SIZE = SlurmSettings(shard_size=2)


def configs(tmp_path: Path, extra: str = ""):
    local = write_config(tmp_path / "local.toml", tmp_path / "local", splits=TINY_SPLITS,
                         extra=extra)
    cluster = write_config(tmp_path / "cluster.toml", tmp_path / "cluster",
                           splits=TINY_SPLITS, extra=extra)
    return local, load_dataset_configs(cluster)[0]


def test_cut_shards_covers_the_plan_in_order() -> None:
    shards = cut_shards("train", 11, 4)
    assert [(s.start, s.stop) for s in shards] == [(0, 4), (4, 8), (8, 11)]
    assert [s.name for s in shards] == ["00000", "00001", "00002"]
    assert cut_shards("train", 4, 4)[0].count == 4 and len(cut_shards("t", 4, 4)) == 1
    with pytest.raises(ValueError):
        cut_shards("train", 4, 0)


@pytest.mark.parametrize(("text", "minutes"), [
    (90, 90), ("90", 90), ("1:30:00", 90), ("1:30:01", 91), ("2-00:00:00", 2880),
    ("1-2", 1560), ("10:30", 11)])
def test_slurm_time_limits_read_as_sbatch_reads_them(text, minutes) -> None:
    assert parse_minutes(text) == minutes


def test_the_slurm_table_and_render_device_are_checked(tmp_path: Path) -> None:
    def load(extra: str):  # [dataset.slurm] tables go last, after the sampler's
        top, _, table = extra.partition("[dataset.slurm]")
        path = write_config(tmp_path / "c.toml", tmp_path / "d", splits=TINY_SPLITS,
                            extra=top, sampler_config="obj_color_slope = 2.5\n"
                            + (f"[dataset.slurm]{table}" if table else ""))
        return load_dataset_configs(path)[0]

    config = load('render_device = "optix"\n[dataset.slurm]\npartition = "gpu"\n'
                  'time = "2:00:00"\nshard_size = 250\nextra = {qos = "long", mem = "4G"}\n')
    assert config.render_device == "optix" and config.slurm.time == 120
    assert config.slurm.executor_parameters()["additional_parameters"] == \
        {"qos": "long", "mem": "4G"}
    assert config.slurm.executor_parameters()["partition"] == "gpu"
    for extra, key in (('render_device = "metal"\n', "render_device"),
                       ("[dataset.slurm]\nshard_sise = 3\n", "slurm.shard_sise"),
                       ("[dataset.slurm]\ntime = \"soon\"\n", "slurm.time"),
                       ("[dataset.slurm]\ncpus_per_task = 0\n", "slurm.cpus_per_task")):
        with pytest.raises(DatasetConfigError, match=key.replace(".", r"\.")):
            load(extra)


def test_a_sharded_render_is_the_local_render_byte_for_byte(tmp_path: Path) -> None:
    local_file, config = configs(tmp_path)
    render_dataset(local_file, render_fn=FakeRenderer(), progress=False)
    executor = FakeExecutor(FakeRenderer())
    first = submit_dataset(config, settings=SIZE, executor=executor, progress=False,
                           queue=FakeQueue())
    # 6 train scenes + 5 test scenes and two intervention sets of 5: 3 + 3 * 3 shards
    assert len(first.submitted) == 12 and first.job_ids[0] == "77_0"
    assert first.complete == [] and (tmp_path / "cluster" / SHARDS).is_dir()
    for shard in first.submitted:
        marker = json.loads((shard_dir(config.output_dir, shard) / DONE).read_text())
        assert marker["count"] == shard.count and len(marker["files"]) == 2 * shard.count + 1
    rows = dataset_status(config, FakeQueue(), assemble=False)
    assert [r.counts["done"] for r in rows] == [3, 3, 3, 3] and all(r.all_done for r in rows)
    rows = dataset_status(config, FakeQueue())  # assembles
    assert all(r.complete for r in rows)
    assert not (tmp_path / "cluster" / SHARDS).exists()
    local, cluster = tree_digest(tmp_path / "local"), tree_digest(tmp_path / "cluster")
    assert len(local) == 2 * 21 + 4 * 2 + 2 and local == cluster
    for name in ("train", "test", "test_obj_color"):
        assert ids_of(tmp_path / "local" / name) == ids_of(tmp_path / "cluster" / name)
    again = submit_dataset(config, settings=SIZE, executor=executor, progress=False,
                           queue=FakeQueue())
    assert again.submitted == [] and len(again.complete) == 4


def test_status_counts_every_state_and_a_rerun_submits_only_what_is_missing(
        tmp_path: Path) -> None:
    _, config = configs(tmp_path)
    renderer = FakeRenderer()
    renderer.fail_after, renderer.fail_with = 1, RuntimeError  # shard 0 of train fails
    executor = FakeExecutor(renderer)
    first = submit_dataset(config, settings=SIZE, executor=executor, progress=False,
                           queue=FakeQueue())
    ids = first.job_ids
    # pretend: train's shard 2 is still running, test's shard 0 pending (their files
    # exist from the in-process run, but without a marker they count as not done)
    for shard in first.submitted[2:4]:
        (shard_dir(config.output_dir, shard) / DONE).unlink()
    queue = FakeQueue({ids[2]: "running", ids[3]: "pending"})
    rows = {r.dirname: r for r in dataset_status(config, queue, assemble=False)}
    train = rows["train"]
    assert train.counts == {"done": 1, "running": 1, "pending": 0, "failed": 1, "missing": 0}
    assert "RuntimeError: injected failure" in train.errors[0]
    assert (shard_dir(config.output_dir, first.submitted[0]) / FAILED).is_file()
    assert rows["test"].counts["pending"] == 1 and rows["test_obj_color"].all_done
    table = format_status(config.output_dir, list(rows.values()))
    assert "injected failure" in table and "train" in table
    # a rerun assembles the finished intervention sets and submits only the failed shard
    # (the running and pending ones are still in the queue)
    executor.render_fn = None
    rerun = submit_dataset(config, settings=SIZE, executor=executor, progress=False,
                           queue=queue)
    assert [(s.dirname, s.index) for s in rerun.submitted] == [("train", 0)]
    assert {p.name for p in rerun.assembled} == {"test_obj_color", "test_spherical_bg_color"}
    # the shard that failed after one image keeps it: the next task renders the other
    # one; the shards that "ended" with their files written but no marker render nothing
    executor.render_fn = renderer
    n_before = len(renderer.rendered)
    again = submit_dataset(config, settings=SIZE, executor=executor, progress=False,
                           queue=FakeQueue())
    assert [(s.dirname, s.index) for s in again.submitted] == [("train", 0), ("train", 2),
                                                                ("test", 0)]
    assert len(renderer.rendered) - n_before == 1
    assert all(r.complete for r in dataset_status(config, FakeQueue()))


def test_wait_follows_the_array_and_names_failed_shards(tmp_path: Path) -> None:
    _, config = configs(tmp_path)
    renderer = FakeRenderer()
    renderer.fail_after, renderer.fail_with = 3, RuntimeError
    submission = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                                progress=False, queue=FakeQueue())
    with pytest.raises(ShardsFailedError, match=r"1 shard\(s\).*train shard 1 .*injected"):
        wait_for_dataset(config, submission, poll_s=0, progress=False)
    submission = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                                progress=False, queue=FakeQueue())
    assert len(submission.submitted) == 1
    written = wait_for_dataset(config, submission, poll_s=0, progress=False)
    assert [p.name for p in written] == ["train", "test", "test_obj_color",
                                         "test_spherical_bg_color"]


def test_assembly_refuses_a_changed_file_and_resumes_after_an_interruption(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local_file, config = configs(tmp_path)
    render_dataset(local_file, render_fn=FakeRenderer(), progress=False)
    first = submit_dataset(config, settings=SIZE, executor=FakeExecutor(FakeRenderer()),
                           progress=False, queue=FakeQueue())
    shard = first.submitted[1]
    folder = shard_dir(config.output_dir, shard)
    png = next(folder.glob("*_mask.png"))
    original = png.read_bytes()
    png.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(DatasetError, match="checksum"):
        dataset_status(config, FakeQueue())
    png.write_bytes(original)
    # an assembly killed after moving files: the rerun recognises them by checksum
    from two4two.cluster import assemble

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(assemble, "finish_split", killed)
    with pytest.raises(KeyboardInterrupt):
        dataset_status(config, FakeQueue())
    monkeypatch.undo()
    assert all(r.complete for r in dataset_status(config, FakeQueue()))
    assert tree_digest(tmp_path / "local") == tree_digest(tmp_path / "cluster")


def test_a_folder_keeps_its_first_shard_size(tmp_path: Path) -> None:
    _, config = configs(tmp_path)
    submit_dataset(config, settings=SIZE, executor=FakeExecutor(None), progress=False,
                   queue=FakeQueue({}))
    rerun = submit_dataset(config, settings=SlurmSettings(shard_size=5),
                           executor=FakeExecutor(None), progress=False, queue=FakeQueue())
    assert [(s.dirname, s.start, s.stop) for s in rerun.submitted[:4]] == [
        ("train", 0, 2), ("train", 2, 4), ("train", 4, 6), ("test", 0, 2)]
    assert len(rerun.submitted) == 12


def test_the_command_line_reads_the_slurm_flags(tmp_path: Path, capsys) -> None:
    args = cli_tool._parser().parse_args([
        "c.toml", "--executor", "slurm", "--shard-size", "250", "--slurm-time", "1:00:00",
        "--slurm-partition", "gpu", "--slurm-cpus-per-task", "4", "--slurm-gpus-per-task",
        "1", "--slurm-extra", "qos=long", "--slurm-extra=--mem=8G"])
    overrides = cli_tool._slurm_overrides(args)
    settings = SlurmSettings().replace(**overrides)
    assert settings == SlurmSettings(partition="gpu", time=60, cpus_per_task=4,
                                     gpus_per_task=1, extra={"qos": "long", "mem": "8G"},
                                     shard_size=250)
    config = write_config(tmp_path / "c.toml", tmp_path / "d", splits=TINY_SPLITS)
    for flags, word in ((["--shard-size", "0"], "--shard-size"),
                        (["--slurm-extra", "qos"], "--slurm-extra"),
                        (["--slurm-time", "later"], "--slurm-time")):
        assert cli_tool.main([str(config), "--executor", "slurm", *flags]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and word in err


def test_a_cluster_render_refuses_force_overwrite_and_a_local_render_its_shards(
        tmp_path: Path) -> None:
    _, config = configs(tmp_path)
    submit_dataset(config, settings=SIZE, executor=FakeExecutor(None), progress=False,
                   queue=FakeQueue())
    with pytest.raises(DatasetError, match="force_overwrite"):
        submit_dataset(dataclasses.replace(config, force_overwrite=True), settings=SIZE,
                       executor=FakeExecutor(None), progress=False, queue=FakeQueue())
    # --status never deletes, whatever the config says
    rows = dataset_status(dataclasses.replace(config, force_overwrite=True), FakeQueue())
    assert [r.counts["failed"] for r in rows] == [3, 3, 3, 3]
    assert (tmp_path / "cluster" / "train" / "planned.jsonl").is_file()
    with pytest.raises(DatasetError, match=r"SLURM job array .*--status"):
        render_dataset(tmp_path / "cluster.toml", render_fn=FakeRenderer(), progress=False)


def test_without_sbatch_nothing_is_planned(tmp_path: Path, capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "data", splits=TINY_SPLITS)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    monkeypatch.setattr(cli_tool, "_check_bpy", lambda: None)
    assert cli_tool.main([str(config), "--executor", "slurm", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch is not on PATH" in err
    assert not (tmp_path / "data").exists()


def _complete_cluster_render(tmp_path: Path, renderer: FakeRenderer):
    local_file, config = configs(tmp_path)
    render_dataset(local_file, render_fn=FakeRenderer(), progress=False)
    first = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                           progress=False, queue=FakeQueue())
    assert all(r.complete for r in dataset_status(config, FakeQueue()))
    return config, first


def test_a_damaged_image_of_a_finished_folder_renders_that_image_only(tmp_path: Path) -> None:
    renderer = FakeRenderer()
    config, _ = _complete_cluster_render(tmp_path, renderer)
    mask = next((tmp_path / "cluster" / "train").glob("*_mask.png"))
    mask.write_bytes(mask.read_bytes()[:40])  # cut short
    n_before = len(renderer.rendered)
    again = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                           progress=False, queue=FakeQueue())
    assert [s.dirname for s in again.submitted] == ["train"] * 3
    assert len(renderer.rendered) - n_before == 1  # the others are linked in, not rendered
    assert all(r.complete for r in dataset_status(config, FakeQueue()))
    assert tree_digest(tmp_path / "local") == tree_digest(tmp_path / "cluster")


def test_an_image_failing_after_assembly_unmarks_its_shard(tmp_path: Path) -> None:
    local_file, config = configs(tmp_path)
    render_dataset(local_file, render_fn=FakeRenderer(), progress=False)
    renderer = FakeRenderer()
    first = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                           progress=False, queue=FakeQueue())
    shard = first.submitted[1]
    folder = shard_dir(config.output_dir, shard)
    png = sorted(folder.glob("*_mask.png"))[0]
    png.write_bytes(png.read_bytes()[:40])  # damaged after its task checked it ...
    marker = json.loads((folder / DONE).read_text())
    marker["files"][png.name] = file_sha256(png)  # ... with a checksum to match
    (folder / DONE).write_text(json.dumps(marker))
    with pytest.raises(DatasetError, match=r"after assembly \(1 file"):
        dataset_status(config, FakeQueue())
    assert not (tmp_path / "cluster" / "train" / png.name).exists()
    assert not (folder / DONE).exists()
    n_before = len(renderer.rendered)
    again = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                           progress=False, queue=FakeQueue())
    assert again.submitted == [shard] and len(renderer.rendered) - n_before == 1
    assert all(r.complete for r in dataset_status(config, FakeQueue()))
    assert tree_digest(tmp_path / "local") == tree_digest(tmp_path / "cluster")


def test_leftover_shards_of_a_finished_folder_and_stale_tasks_change_nothing(
        tmp_path: Path) -> None:
    config, first = _complete_cluster_render(tmp_path, FakeRenderer())
    # an assembly cut short after marking the folder complete leaves its shards
    leftover = tmp_path / "cluster" / SHARDS / "train"
    leftover.mkdir(parents=True)
    (leftover / "cut.json").write_text('{"n_samples": 6, "shard_size": 2}')
    assert all(r.complete for r in dataset_status(config, FakeQueue(), assemble=False))
    submit_dataset(config, settings=SIZE, executor=FakeExecutor(None), progress=False,
                   queue=FakeQueue())
    assert not (tmp_path / "cluster" / SHARDS).exists()
    # a task that starts after its folder was finished writes nothing
    stale = ShardJob(config, first.submitted[0])
    assert render_shard(stale, render_fn=FakeRenderer()) is None
    assert not (tmp_path / "cluster" / SHARDS).exists()


@pytest.mark.parametrize(("device", "n_processes", "env", "expected"), [
    ("cpu", 0, {"SLURM_CPUS_PER_TASK": "4"}, (4, 1)),
    ("cpu", 16, {"SLURM_CPUS_PER_TASK": "1"}, (1, 1)),  # never more than SLURM gave
    ("cpu", 2, {"SLURM_CPUS_PER_TASK": "8"}, (2, 4)),
    ("cuda", 0, {"SLURM_CPUS_PER_TASK": "8", "CUDA_VISIBLE_DEVICES": "2,5"}, (2, 4)),
    ("optix", 0, {"SLURM_CPUS_PER_TASK": "4", "CUDA_VISIBLE_DEVICES": ""}, (1, 4)),
])
def test_a_task_sizes_its_render_pool_by_what_slurm_gave_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device, n_processes, env,
        expected) -> None:
    from two4two.cluster.task import task_resources

    _, config = configs(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = dataclasses.replace(config, render_device=device, n_processes=n_processes)
    assert task_resources(config) == expected


def test_a_requeued_task_waits_for_its_first_run_to_let_go_of_the_shard(
        tmp_path: Path) -> None:
    import threading

    from two4two.cluster.task import SHARD_LOCK, ShardLockedError, _shard_lock
    from two4two.locking import FolderLock

    _, config = configs(tmp_path)
    first = submit_dataset(config, settings=SIZE, executor=FakeExecutor(None), progress=False,
                           queue=FakeQueue())
    job = ShardJob(config, first.submitted[0])
    job.folder.mkdir(parents=True)
    dying = FolderLock(job.folder, name=SHARD_LOCK, purpose="test", error=ShardLockedError)
    dying.acquire()
    with pytest.raises(ShardLockedError):
        _shard_lock(job.folder, wait_s=0)
    threading.Timer(1.5, dying.release).start()
    marker = render_shard(job, render_fn=FakeRenderer())  # waits, then renders
    assert marker is not None and marker.count == 2


def test_status_assembles_but_never_deletes_under_force_overwrite(tmp_path: Path) -> None:
    local_file, config = configs(tmp_path)
    render_dataset(local_file, render_fn=FakeRenderer(), progress=False)
    renderer = FakeRenderer()
    renderer.fail_after, renderer.fail_with = 12, RuntimeError  # test_obj_color's 1st shard
    first = submit_dataset(config, settings=SIZE, executor=FakeExecutor(renderer),
                           progress=False, queue=FakeQueue())
    forced = dataclasses.replace(config, force_overwrite=True)
    rows = {r.dirname: r for r in dataset_status(forced, FakeQueue())}  # assembles
    assert rows["train"].complete and rows["test"].complete
    assert rows["test_obj_color"].counts["failed"] == 1
    failed = next(s for s in first.submitted if s.dirname == "test_obj_color")
    assert render_shard(ShardJob(config, failed), render_fn=FakeRenderer()) is not None
    rows = {r.dirname: r for r in dataset_status(forced, FakeQueue())}  # assembles the rest
    assert all(r.complete for r in rows.values())
    for name in ("train", "test"):
        assert tree_digest(tmp_path / "cluster" / name) == tree_digest(tmp_path / "local" / name)
