"""Issue 17, the study part: full and read-only disks, damaged response files, the
missing-dataset hint, leftovers of a killed export, and image names nobody can recompute.

The disk tests mount a small tmpfs (:func:`disk_faults.mount_small_disk`; they skip
where none can be mounted) or inject write failures (:func:`disk_faults.failing_writes`).
The export tests run the command on a copy of the small trained run (baseline
condition, no tutorial: a few seconds each once the analysis cache is warm).
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from disk_faults import failing_writes, mount_small_disk
from test_results import _simulate, _write_csv

import two4two.files
from dubfiv.cli.export_user_study import main as export_main
from dubfiv.cli.study_results import main as results_main
from dubfiv.study.build.bundle import MANIFEST, BundleError, build_atomically
from dubfiv.study.build.names import NAMES_RECORD, PUBLIC_DIR
from dubfiv.study.build.preview import render_preview
from dubfiv.study.content import DEFAULT_TITLE, Study
from dubfiv.study.qsf.writer import build_qsf, write_qsf
from dubfiv.study.results.analysis import ResultsError, analyse_study
from dubfiv.study.results.responses import read_responses

RESULT_FILES = ["accuracy.png", "results.json", "results.png"]
RUN_NAME = "model_private_name_7f3a"  # the run's folder: the study's internal name uses it


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _host_key() -> str:
    return two4two.files.owner_tag().split("-")[1]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------- 1. results on a bad disk


@pytest.fixture()
def responses(study_dir, tmp_path: Path) -> tuple[Path, Path]:
    """A study folder and its responses CSV (the layout of ``test_results.py``)."""
    study, folder = study_dir
    study.save(folder)
    qsf = write_qsf(folder / "study.qsf", study)
    csv_path = tmp_path / "responses.csv"
    _write_csv(csv_path, study, qsf, _simulate(study), numeric=True)
    return csv_path, folder


def _results(csv_path: Path, folder: Path, out: Path, *extra: str) -> int:
    return results_main(["--responses", str(csv_path), "--study", str(folder),
                         "--output", str(out), "--no-mixed-model", *extra])


def test_results_change_together_when_a_figure_cannot_be_written(
        responses, tmp_path: Path, monkeypatch, capsys) -> None:
    csv_path, folder = responses
    out = tmp_path / "results"
    assert _results(csv_path, folder, out) == 0
    before = _files(out)
    capsys.readouterr()
    with failing_writes(monkeypatch, after=1) as failed:  # results.json yes, the figures no
        assert _results(csv_path, folder, out, "--seed", "7") == 1
    assert failed
    assert _files(out) == before  # the previous set, not a new results.json with old figures
    assert sorted(p.name for p in out.iterdir()) == RESULT_FILES
    line = _one_line(capsys.readouterr().err)
    assert str(out) in line and "free some space" in line and "--output" in line


def test_results_on_a_full_and_a_read_only_disk(responses, tmp_path: Path, capsys) -> None:
    csv_path, folder = responses
    with mount_small_disk(tmp_path / "disk", 2048) as disk:
        out = disk.path / "results"
        assert _results(csv_path, folder, out) == 0
        before = _files(out)
        capsys.readouterr()
        # room for a new results.json but not for the figures
        disk.fill(leave_bytes=len(before["results.json"]) + 8192)
        assert _results(csv_path, folder, out, "--seed", "7") == 1
        assert _files(out) == before
        assert sorted(p.name for p in out.iterdir()) == RESULT_FILES
        line = _one_line(capsys.readouterr().err)
        assert line.startswith("dubfiv_study_results: error: ")
        assert str(out) in line and "free some space" in line
        # a first analysis on the full disk leaves nothing
        assert _results(csv_path, folder, disk.path / "fresh") == 1
        _one_line(capsys.readouterr().err)
        assert not (disk.path / "fresh" / "results.json").exists()
        disk.free_space()
        disk.read_only()
        assert _results(csv_path, folder, out, "--seed", "7") == 1
        line = _one_line(capsys.readouterr().err)
        assert str(out) in line and "read-only" in line and "writable folder" in line
        assert _files(out) == before


# ---------------------------------------------------------------------- 1. export on a bad disk


def _write_some(size: int):
    def build(tmp: Path) -> str:
        (tmp / "records").mkdir()
        (tmp / "records" / "task.json").write_text("{}")
        (tmp / "public").mkdir()
        (tmp / "public" / "a.png").write_bytes(os.urandom(size))
        (tmp / MANIFEST).write_text("{}")
        return "built"
    return build


def test_build_on_a_full_disk_leaves_the_old_folder(tmp_path: Path) -> None:
    with mount_small_disk(tmp_path / "disk", 1024) as disk:
        dest = disk.path / "study"
        assert build_atomically(dest, _write_some(1000)) == "built"
        before = _files(dest)
        disk.fill(leave_bytes=64 * 1024)
        with pytest.raises(BundleError) as info:
            build_atomically(dest, _write_some(512 * 1024))
        message = str(info.value)
        assert str(dest) in message and "free some space" in message and "\n" not in message
        assert _files(dest) == before
        assert sorted(p.name for p in disk.path.iterdir()) == [".filler", "study"]


def test_build_on_a_read_only_disk_fails_early(tmp_path: Path) -> None:
    with mount_small_disk(tmp_path / "disk", 1024) as disk:
        dest = disk.path / "study"
        build_atomically(dest, _write_some(1000))
        before = _files(dest)
        disk.read_only()
        called: list[Path] = []
        with pytest.raises(BundleError) as info:
            build_atomically(dest, called.append)
        assert "read-only" in str(info.value) and "writable folder" in str(info.value)
        assert called == [] and _files(dest) == before
        assert sorted(p.name for p in disk.path.iterdir()) == ["study"]


@pytest.fixture(scope="module")
def run_copy(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("reliability") / RUN_NAME
    shutil.copytree(small_run, dest,
                    ignore=shutil.ignore_patterns("user_study", "ground_truth", "analysis"))
    return dest


def _export_args(run: Path, out: Path, dataset_dir: Path, *extra: str) -> list[str]:
    return ["--model", str(run), "--output", str(out), "--condition", "baseline",
            "--no_tutorial", "--dataset_dir", str(dataset_dir), "--n_samples", "0",
            "--rows", "2", "--n_tasks", "4", "--device", "cpu", "--quiet",
            "--image-base-url", "https://example.org/s", *extra]


def test_export_to_a_full_or_read_only_disk_is_one_line(run_copy: Path, small_dataset: Path,
                                                        tmp_path: Path, capsys) -> None:
    with mount_small_disk(tmp_path / "disk", 1024) as disk:
        out = disk.path / "study"
        disk.fill(leave_bytes=16 * 1024)
        assert export_main(_export_args(run_copy, out, small_dataset.parent)) == 1
        line = _one_line(capsys.readouterr().err)
        assert line.startswith("dubfiv_export_user_study: error: --output")
        assert str(out) in line and "free some space" in line
        assert sorted(p.name for p in disk.path.iterdir()) == [".filler"]
        disk.free_space()
        disk.read_only()
        assert export_main(_export_args(run_copy, out, small_dataset.parent)) == 1
        line = _one_line(capsys.readouterr().err)
        assert "--output" in line and "read-only" in line and "writable folder" in line
        assert list(disk.path.iterdir()) == []


# ---------------------------------------------------------------------- 2. damaged responses


def _header_lines(text: str) -> int:
    """Physical lines of the three header rows (row 2 holds line breaks)."""
    rows = list(csv.reader(text.splitlines(keepends=True)))
    return sum(cell.count("\n") for row in rows[:3] for cell in row) + 3


def test_a_response_cut_in_the_middle_is_an_error(responses, tmp_path: Path, capsys) -> None:
    csv_path, folder = responses
    text = csv_path.read_text(encoding="utf-8-sig")
    last_start = text.rstrip("\n").rfind("\n") + 1
    line = text[:last_start].count("\n") + 1
    cut = tmp_path / "cut.csv"
    cut.write_text(text[:last_start + (len(text) - last_start) // 2], encoding="utf-8")
    with pytest.raises(ResultsError) as info:
        read_responses(cut)
    assert f"{cut}, line {line}:" in str(info.value) and "again" in str(info.value)
    assert _results(cut, folder, tmp_path / "out") == 1
    err = _one_line(capsys.readouterr().err)
    assert f"line {line}" in err and "export the responses from Qualtrics again" in err
    assert not (tmp_path / "out").exists()
    # the whole file reads, every row
    assert analyse_study(csv_path, folder)["n_rows"] == len(read_responses(csv_path).rows)


def test_a_quoted_field_left_open_is_an_error(responses, tmp_path: Path) -> None:
    csv_path, _ = responses
    text = csv_path.read_text(encoding="utf-8-sig")
    first_data = _header_lines(text) + 1
    lines = text.splitlines(keepends=True)
    # the first response's last cell opens a quote that never closes: the file was cut
    broken = "".join(lines[:first_data - 1]) + lines[first_data - 1].rstrip("\r\n") + ',"cut'
    path = tmp_path / "open.csv"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ResultsError) as info:
        read_responses(path)
    message = str(info.value)
    assert f"{path}, line {first_data}:" in message and "never closed" in message
    assert "Qualtrics again" in message


@pytest.mark.parametrize("kind", ["cp1252", "utf-16"])
def test_files_saved_by_excel_are_named_with_the_fix(responses, tmp_path: Path, capsys,
                                                     kind: str) -> None:
    csv_path, folder = responses
    text = csv_path.read_text(encoding="utf-8-sig")
    path = tmp_path / f"{kind}.csv"
    if kind == "cp1252":  # Excel's "CSV" on Windows: an accent in a free-text cell
        rows = text.split("\n")
        rows[-2] = rows[-2] + "é"
        path.write_bytes("\n".join(rows).encode("cp1252"))
        expected = "Windows-1252"
    else:  # Excel's "Unicode text": UTF-16 with a BOM, tab-separated
        tabbed = "\n".join("\t".join(row) for row in csv.reader(text.splitlines()))
        path.write_bytes(codecs.BOM_UTF16_LE + tabbed.encode("utf-16-le"))
        expected = "UTF-16"
    with pytest.raises(ResultsError) as info:
        read_responses(path)
    assert str(path) in str(info.value) and expected in str(info.value)
    assert _results(path, folder, tmp_path / "out") == 1
    err = _one_line(capsys.readouterr().err)
    assert expected in err and "CSV UTF-8" in err and "Qualtrics again" in err


# ---------------------------------------------------------------------- 3. the dataset hint


def test_missing_dataset_names_the_flag(run_copy: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "no_datasets_here"
    empty.mkdir()
    assert export_main(_export_args(run_copy, tmp_path / "s", empty)) == 1
    line = _one_line(capsys.readouterr().err)
    assert "set --dataset_dir to the folder that holds" in line, line
    assert "`" not in line and "dataset_dir=" not in line and "from_checkpoint" not in line
    assert not (tmp_path / "s").exists()


def test_missing_dataset_names_the_parameter_in_python(run_copy: Path, tmp_path: Path) -> None:
    from dubfiv.analysis import Analysis, AnalysisError

    with pytest.raises(AnalysisError) as info:
        Analysis.from_checkpoint(run_copy, dataset_dir=tmp_path, device="cpu", progress=False)
    assert "`dataset_dir`" in str(info.value)


# ---------------------------------------------------------------------- 4. leftovers


def test_stale_leftovers_of_dead_builds_are_removed(tmp_path: Path) -> None:
    parent = tmp_path / "out"
    parent.mkdir()
    host, dead = _host_key(), _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        planted = {}
        for kind in ("building", "old", "probe"):
            for who, pid in (("dead", dead), ("live", live.pid)):
                path = parent / f".study.{kind}-pid{pid}-{host}-x{kind[:2]}"
                (path / "records").mkdir(parents=True)
                (path / "records" / "task.json").write_text("{}")
                planted[(kind, who)] = path
        untagged = parent / ".study.building-old-style"
        other = parent / f".other.building-pid{dead}-{host}-abc"
        for path in (untagged, other):
            path.mkdir()
        build_atomically(parent / "study", _write_some(10))
        for (_kind, who), path in planted.items():
            assert path.exists() == (who == "live"), path
        assert untagged.exists() and other.exists()  # not ours to judge
        assert (parent / "study" / "records" / "task.json").is_file()
    finally:
        live.kill()
        live.wait()


_KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dubfiv.study.build.bundle import build_atomically

    def build(tmp):
        (tmp / "records").mkdir()
        (tmp / "records" / "task.json").write_text('{"answers": 1}')
        Path(sys.argv[2]).write_text(str(tmp))
        time.sleep(300)

    build_atomically(Path(sys.argv[1]), build)
""")


def test_a_build_killed_with_sigkill_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    parent, ready = tmp_path / "out", tmp_path / "ready"
    dest = parent / "study"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(dest), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the build did not start"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    leftover = Path(ready.read_text())
    assert leftover.parent == parent and leftover.name.startswith(".study.building-pid")
    assert (leftover / "records" / "task.json").is_file()  # the answers, left behind
    assert build_atomically(dest, _write_some(10)) == "built"
    assert not leftover.exists()
    assert sorted(p.name for p in parent.iterdir()) == ["study"]


# ---------------------------------------------------------------------- 5. image names


def _public_names(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / PUBLIC_DIR).glob("*.png"))


def test_image_names_are_secret_and_stable_in_one_folder(run_copy: Path, small_dataset: Path,
                                                         tmp_path: Path) -> None:
    first, other = tmp_path / "a" / "study", tmp_path / "b" / "study"
    for out in (first, other):  # the same run, seed and study name
        assert export_main(_export_args(run_copy, out, small_dataset.parent)) == 0
    names = _public_names(first)
    assert names and set(names).isdisjoint(_public_names(other))
    record = json.loads((first / NAMES_RECORD).read_text())
    secret = record["secret"]
    assert len(bytes.fromhex(secret)) == 32
    assert secret != json.loads((other / NAMES_RECORD).read_text())["secret"]
    for path in (first / PUBLIC_DIR).iterdir():  # the secret is never hosted
        data = path.read_bytes()
        assert secret.encode() not in data and bytes.fromhex(secret) not in data
    # a re-export into the same folder keeps the names (and the hosted files)
    hosted = _files(first / PUBLIC_DIR)
    assert export_main(_export_args(run_copy, first, small_dataset.parent)) == 0
    assert _public_names(first) == names and _files(first / PUBLIC_DIR) == hosted
    assert json.loads((first / NAMES_RECORD).read_text())["secret"] == secret


def test_participants_never_see_the_study_name(run_copy: Path, small_dataset: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "study"
    assert export_main(_export_args(run_copy, out, small_dataset.parent)) == 0
    study = Study.load(out)
    assert RUN_NAME in study.name  # the internal name, for the researcher
    assert RUN_NAME in (out / "README.md").read_text()
    qsf = json.loads((out / "study.qsf").read_text())
    assert qsf["SurveyEntry"]["SurveyName"] == study.name  # Qualtrics' project list only
    del qsf["SurveyEntry"]["SurveyName"]
    seen = json.dumps(qsf, ensure_ascii=False)
    assert RUN_NAME not in seen and study.name not in seen
    options = next(e for e in qsf["SurveyElements"] if e["Element"] == "SO")["Payload"]
    assert options["SurveyTitle"] == DEFAULT_TITLE
    for path in (out / PUBLIC_DIR).rglob("*"):
        if path.is_file():
            assert RUN_NAME.encode() not in path.read_bytes()
    participant_preview = render_preview(study, show_answers=False)
    assert RUN_NAME not in participant_preview and DEFAULT_TITLE in participant_preview


def test_the_survey_title_is_neutral(study_dir) -> None:
    """Without a trained run: the survey's title and a participants' preview."""
    study, _ = study_dir
    study.name = "secret internal name"
    qsf = build_qsf(study)
    options = next(e for e in qsf["SurveyElements"] if e["Element"] == "SO")["Payload"]
    assert options["SurveyTitle"] == study.title == DEFAULT_TITLE
    del qsf["SurveyEntry"]["SurveyName"]
    assert study.name not in json.dumps(qsf)
    assert study.name not in render_preview(study, show_answers=False)
    assert study.name in render_preview(study, show_answers=True)  # the researcher's copy
    assert Study.from_dict({k: v for k, v in study.to_dict().items() if k != "title"}
                           ).title == DEFAULT_TITLE  # a study.json of an older export
