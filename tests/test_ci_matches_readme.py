"""The CI script runs exactly the README's install and test commands."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _command_after(marker: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(marker)
    fence = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return lines[fence + 1].strip()


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    install = _command_after("<!-- install-command -->")
    test = _command_after("<!-- test-command -->")
    assert "pip install" in install and "pytest" in test
    assert install in ci_lines, f"README install command not in .ci/run: {install}"
    assert test in ci_lines, f"README test command not in .ci/run: {test}"
    assert ci_lines.index(install) < ci_lines.index(test)
