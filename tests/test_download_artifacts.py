"""download_artifacts.sh: argument handling, resume, idempotence, refusal to overwrite.

Never touches the network: a local folder served through file:// URLs stands in for
the artifact host.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "download_artifacts.sh"
MODEL = "do_users_benefit_from_interpretable_vision_model"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )


@pytest.fixture()
def server(tmp_path: Path) -> Path:
    """A folder holding a fake model archive, as the artifact host would."""
    srv = tmp_path / "srv"
    content = srv / MODEL / "models"
    content.mkdir(parents=True)
    (content / "experiment.toml").write_text("marker = 'fake'\n")
    (content / "models.torch").write_bytes(bytes(range(256)) * 64)
    with tarfile.open(srv / f"{MODEL}.tar.gz", "w:gz") as tar:
        tar.add(srv / MODEL, arcname=MODEL)
    shutil.rmtree(srv / MODEL)
    return srv


def test_help_lists_every_artifact(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--model", "--biased", "--unbiased", "--base-url", "--dry-run"):
        assert flag in result.stdout


def test_unknown_argument_fails_with_one_line(tmp_path: Path) -> None:
    result = _run("--modle", cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown argument '--modle'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_option_value_fails(tmp_path: Path) -> None:
    result = _run("--data-dir", cwd=tmp_path)
    assert result.returncode != 0 and "--data-dir needs" in result.stderr


def test_resumes_partial_download_then_is_idempotent(tmp_path: Path, server: Path) -> None:
    work = tmp_path / "work"
    archive = server / f"{MODEL}.tar.gz"
    (work / "models").mkdir(parents=True)
    partial = archive.read_bytes()[:100]
    (work / "models" / f"{archive.name}.part").write_bytes(partial)
    result = _run("--model", "--base-url", f"file://{server}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    unpacked = work / "models" / MODEL / "models" / "models.torch"
    expected = hashlib.sha256(bytes(range(256)) * 64).hexdigest()
    assert hashlib.sha256(unpacked.read_bytes()).hexdigest() == expected
    assert not (work / "models" / archive.name).exists()  # archive removed after unpacking
    assert not (work / "models" / f"{archive.name}.part").exists()
    again = _run("--model", "--base-url", f"file://{server}", cwd=work)
    assert again.returncode == 0 and "skipping" in again.stdout


def test_refuses_to_overwrite_a_different_archive(tmp_path: Path, server: Path) -> None:
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    foreign = work / "models" / f"{MODEL}.tar.gz"
    foreign.write_bytes(b"x" * 100_000)  # larger than the served file: not a partial download
    result = _run("--model", "--base-url", f"file://{server}", cwd=work)
    assert result.returncode != 0
    assert "different file" in result.stderr
    assert foreign.read_bytes() == b"x" * 100_000


@pytest.mark.parametrize("size", ["smaller", "larger"])
def test_never_appends_to_or_replaces_an_existing_file(tmp_path: Path, server: Path,
                                                       size: str) -> None:
    """A file under the survey's name that is not the server's (here a user's own edited
    survey) is left as it is, whether it is smaller or larger than the server's."""
    survey = "ICLR2022_Export_Do_Users_Benefit_From_Interpretable_Vision.qsf"
    (server / survey).write_bytes(bytes(range(256)) * 20)
    mine = tmp_path / "work" / "data" / survey
    mine.parent.mkdir(parents=True)
    text = b'{"my": "own edited survey"}' * (1 if size == "smaller" else 1000)
    mine.write_bytes(text)
    result = _run("--survey", "--base-url", f"file://{server}", cwd=tmp_path / "work")
    assert result.returncode != 0 and "different file" in result.stderr
    assert result.stderr.count("\n") == 1
    assert mine.read_bytes() == text


def test_survey_download_is_renamed_when_complete(tmp_path: Path, server: Path) -> None:
    survey = "ICLR2022_Export_Do_Users_Benefit_From_Interpretable_Vision.qsf"
    (server / survey).write_bytes(bytes(range(256)) * 20)
    work = tmp_path / "work"
    work.mkdir()
    result = _run("--survey", "--base-url", f"file://{server}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert (work / "data" / survey).read_bytes() == (server / survey).read_bytes()
    assert not (work / "data" / f"{survey}.part").exists()
    again = _run("--survey", "--base-url", f"file://{server}", cwd=work)
    assert again.returncode == 0 and "already downloaded" in again.stdout


def test_refuses_to_replace_a_folder_it_did_not_make(tmp_path: Path, server: Path) -> None:
    work = tmp_path / "work"
    mine = work / "models" / MODEL
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own run")
    result = _run("--model", "--base-url", f"file://{server}", cwd=work)
    assert result.returncode != 0 and "not unpacked by this script" in result.stderr
    assert (mine / "notes.txt").read_text() == "my own run"


def test_dry_run_downloads_nothing(tmp_path: Path, server: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = _run("--model", "--dry-run", "--base-url", f"file://{server}", cwd=work)
    assert result.returncode == 0, result.stderr
    assert not (work / "models" / MODEL).exists()
    assert not (work / "models" / f"{MODEL}.tar.gz").exists()
    assert not (work / "models").exists()  # a dry run creates no folders either
