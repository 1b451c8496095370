"""The README's two commands: CI runs exactly the test command, and both install what is missing.

``./dev`` is run here in a copy of the repository's ``setup.py``/``pyproject.toml`` with stub
programs (a stub Python that "creates" a venv of stubs and logs every call), so the install logic
runs for real without reinstalling torch or bpy.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIP = "-m pip install -e .[dev]"


def _command_after(marker: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(marker)
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return lines[fence + 1].strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in ci_lines if line and not line.startswith("#")
                and not line.startswith(("set ", "cd "))]
    test = _command_after("<!-- test-command -->")
    assert test == "./dev test"
    assert commands == [test], f".ci/run should run only the README test command: {commands}"
    assert _command_after("<!-- quickstart-command -->") == "./dev quickstart"


def test_manual_install_is_the_one_the_script_runs() -> None:
    manual = _command_after("<!-- install-command -->")
    assert manual.endswith('pip install -e ".[dev]"')
    assert '-m pip install -e ".[dev]"' in (ROOT / "dev").read_text()


STUB = """#!/bin/sh
echo "{name} $*" >> "$DEV_LOG"
"""

# A stub interpreter: `-m venv DIR` makes DIR/bin with stub python, pytest and dubfiv_quickstart.
STUB_PYTHON = STUB + """
if [ "$1" = -m ] && [ "$2" = venv ]; then
    mkdir -p "$3/bin"
    for name in python pytest dubfiv_quickstart; do
        printf '#!/bin/sh\\necho "%s $*" >> "$DEV_LOG"\\n' "$name" > "$3/bin/$name"
        chmod +x "$3/bin/$name"
    done
fi
"""


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of what ./dev reads, no .venv, and a stub `python3.11` first on PATH."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dev", "setup.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "python3.11").write_text(STUB_PYTHON.format(name="system-python"))
    (stubs / "python3.11").chmod(0o755)
    env = {**os.environ, "DEV_LOG": str(tmp_path / "log"), "DUBFIV_NO_APT": "1",
           "PATH": f"{stubs}:{os.environ['PATH']}"}
    env.pop("PYTHON", None)
    return repo, env


def _run(repo: Path, env: dict[str, str], *args: str) -> list[str]:
    """Run ./dev; return the calls of stub programs it made (the version probe left out)."""
    log = Path(env["DEV_LOG"])
    log.write_text("")
    subprocess.run([str(repo / "dev"), *args], env=env, check=True, cwd=repo,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return [line for line in log.read_text().splitlines() if " -c " not in line]


def test_dev_installs_once_and_again_only_when_the_dependencies_change(checkout) -> None:
    repo, env = checkout
    venv = str(repo / ".venv")
    assert _run(repo, env, "test", "-x", "-k", "a b") == [
        f"system-python -m venv {venv}", f"python {PIP}", "pytest -x -k a b"]
    # A second call skips the install; the quick start installs through the same step.
    assert _run(repo, env, "test") == ["pytest "]
    assert _run(repo, env, "quickstart", "--help") == ["dubfiv_quickstart --help"]
    assert _run(repo, env, "install") == []
    # Changed dependencies: pip again (into the existing venv), then skipped again.
    with (repo / "setup.py").open("a") as f:
        f.write("# a new dependency\n")
    assert _run(repo, env, "quickstart") == [f"python {PIP}", "dubfiv_quickstart "]
    assert _run(repo, env, "test") == ["pytest "]
    assert len(list((repo / ".venv").glob(".installed-*"))) == 1


def test_dev_does_not_mark_a_failed_install_as_done(checkout) -> None:
    repo, env = checkout
    _run(repo, env, "install")
    for stamp in (repo / ".venv").glob(".installed-*"):
        stamp.unlink()
    (repo / ".venv" / "bin" / "python").write_text('#!/bin/sh\necho "python $*" >> "$DEV_LOG"\n'
                                                  "exit 1\n")
    with pytest.raises(subprocess.CalledProcessError):
        _run(repo, env, "test")
    assert Path(env["DEV_LOG"]).read_text().splitlines() == [f"python {PIP}"]
    assert not list((repo / ".venv").glob(".installed-*"))
