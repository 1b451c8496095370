"""The seams between the library and its commands (docs/runs.md, "Errors").

* library modules (everything in ``dubfiv/`` outside ``dubfiv/cli/``) word their
  errors with parameter names, never command-line flags, and import nothing from
  ``dubfiv/cli/``;
* every error class of the project derives from one of the two bases;
* a command words the library's parameter names as its own flags;
* loading a run does not import the trainer.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dubfiv
import two4two
from dubfiv.cli._oneline import OneLineParser, fail, flags_of, in_flags
from dubfiv.errors import DubfivError, ParameterError
from two4two.errors import Two4TwoError

PACKAGE = Path(dubfiv.__file__).parent
FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z0-9_-]*")

PENDING: set[str] = set()
"""Library files exempt from the flag-wording check (none)."""


def _library_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if "cli" not in p.relative_to(PACKAGE).parts[:1]
                  and str(p.relative_to(PACKAGE.parent)) not in PENDING)


def _strings(node: ast.AST) -> list[ast.Constant]:
    """Every string constant inside ``node`` (f-string parts included)."""
    return [n for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _error_messages(tree: ast.AST) -> list[tuple[int, str]]:
    """Strings of ``raise`` statements and of calls to ``...Error(...)``, each once."""
    found: dict[int, ast.Constant] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found.update((id(s), s) for s in _strings(node.exc))
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
            if name.endswith("Error"):
                found.update((id(s), s) for s in _strings(node))
    return sorted((s.lineno, s.value) for s in found.values())


def flag_worded_errors(source: str) -> list[tuple[int, str]]:
    """``(line, flag)`` for each command-line flag in an error message of ``source``."""
    return [(line, match.group(0)) for line, text in _error_messages(ast.parse(source))
            for match in FLAG.finditer(text)]


def cli_imports(source: str) -> list[int]:
    """Lines of ``source`` that import from ``dubfiv.cli``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dubfiv.cli"):
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name.startswith("dubfiv.cli")
                                                  for a in node.names):
            lines.append(node.lineno)
    return lines


def test_the_checks_find_what_they_look_for() -> None:
    bad = ('def f(n):\n    if n < 1:\n        raise ValueError(f"--rows {n} must be >= 1")\n'
           '    return RunError("pass --force")\n'
           'from dubfiv.cli._oneline import fail\nimport dubfiv.cli.train\n')
    assert flag_worded_errors(bad) == [(3, "--rows"), (4, "--force")]
    assert cli_imports(bad) == [5, 6]
    good = 'def f(n):\n    """Like ``dubfiv_train --resume``."""\n    raise ValueError("`rows`")\n'
    assert flag_worded_errors(good) == [] and cli_imports(good) == []


def test_library_errors_name_parameters_not_flags() -> None:
    files = _library_files()
    assert len(files) > 50
    found = {str(p.relative_to(PACKAGE.parent)): flag_worded_errors(p.read_text())
             for p in files}
    assert {k: v for k, v in found.items() if v} == {}


def test_library_does_not_import_the_commands() -> None:
    found = {str(p.relative_to(PACKAGE.parent)): cli_imports(p.read_text())
             for p in _library_files()}
    assert {k: v for k, v in found.items() if v} == {}


def _error_classes() -> list[type]:
    classes = []
    for package in (dubfiv, two4two):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__") or ".cli." in info.name + ".":
                continue
            try:
                module = importlib.import_module(info.name)
            except ImportError:  # pragma: no cover - an optional dependency
                continue
            classes += [c for _, c in inspect.getmembers(module, inspect.isclass)
                        if issubclass(c, Exception) and not issubclass(c, Warning)
                        and c.__module__ == module.__name__]
    return classes


def test_every_error_class_derives_from_a_base() -> None:
    classes = _error_classes()
    assert DubfivError in classes and ParameterError in classes
    assert [c for c in classes if not issubclass(c, DubfivError | Two4TwoError)] == []


def test_commands_word_parameters_as_their_flags(capsys: pytest.CaptureFixture) -> None:
    parser = OneLineParser(prog="demo")
    parser.add_argument("--dataset_dir")
    parser.add_argument("--image-base-url", "--image_base_url", dest="image_base_url")
    parser.add_argument("--model", dest="run_dir")
    flags = flags_of(parser, head_index="--head")
    assert flags == {"dataset_dir": "--dataset_dir", "image_base_url": "--image_base_url",
                     "run_dir": "--model", "head_index": "--head"}
    text = "`run_dir` x: no `head_index` 2; see `dataset_dir` and `unknown`"
    assert in_flags(text, flags) == "--model x: no --head 2; see --dataset_dir and `unknown`"
    assert fail("demo", ParameterError(text + "\nmore"), flags=flags) == 1
    assert capsys.readouterr().err == ("demo: error: --model x: no --head 2; see --dataset_dir "
                                       "and `unknown` more\n")


def test_a_command_prints_a_library_error_with_its_flag(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dubfiv.cli.two4two_merge import main

    assert main(["--destination", str(tmp_path / "out"), "--datasets", str(tmp_path / "a"),
                 str(tmp_path / "b"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"--datasets {tmp_path / 'a'}: no such dataset folder" in err, err
    assert "`" not in err


def test_loading_runs_does_not_import_the_trainer() -> None:
    code = ("import sys, dubfiv.runs, dubfiv.analysis; "
            "print(sorted(m for m in sys.modules if m.startswith('dubfiv.train')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    loaded = ast.literal_eval(result.stdout.strip())
    assert "dubfiv.train.trainer" not in loaded and "dubfiv.train" not in loaded, loaded


OTHERS = ("dubfiv/study/", "dubfiv/data_generation.py", "dubfiv/cli/export_user_study.py",
          "dubfiv/cli/study_results.py", "tests/dubfiv_tests/study/", "tests/two4two_tests/")
"""Files other work of issue 14 re-points to its own docs (two4two, the study)."""


def _cited(root: Path) -> dict[str, list[str]]:
    cites = {}
    for path in sorted(root.rglob("*.py")):
        name = str(path.relative_to(PACKAGE.parent))
        if not name.startswith(OTHERS):
            cites[name] = path.read_text(encoding="utf-8")
    return cites


def test_cited_design_facts_live_in_the_repository() -> None:
    """Sources cite docs/*.md that exist, and no design file outside the repository."""
    texts = {**_cited(PACKAGE), **_cited(PACKAGE.parent / "tests")}
    outside = {name: sorted(set(re.findall(r"DESIGN\.md|TWO4TWO(?:_API)?\.md|QUALTRICS\.md|"
                                           r"\bshared/", text)))
               for name, text in texts.items()}
    assert {k: v for k, v in outside.items() if v} == {}
    cited = {doc for text in texts.values() for doc in re.findall(r"docs/[\w.-]+\.md", text)}
    assert {"docs/flow.md", "docs/released_model.md", "docs/runs.md"} <= cited
    assert sorted(d for d in cited if not (PACKAGE.parent / d).is_file()) == []


def test_run_folder_layout(tmp_path: Path) -> None:
    """One table places every file of a run (docs/runs.md); the folder training creates and
    the checkpoint loading finds follow it."""
    import dataclasses

    from dubfiv.rundir import (
        LAYOUT,
        RunDirError,
        RunPaths,
        find_checkpoint,
        is_run_dir,
        make_run_dir,
    )

    paths = RunPaths(tmp_path / "run")
    assert {f.name for f in dataclasses.fields(RunPaths)} - {"root"} == set(LAYOUT)
    assert paths.checkpoint == tmp_path / "run" / "models" / "models.torch"
    assert paths.ground_truth_report.parent == paths.ground_truth
    run = make_run_dir(tmp_path / "base", "demo")
    assert run.name.startswith("demo_") and (run / "images").is_dir()
    assert RunPaths(run).checkpoint.parent.is_dir() and not is_run_dir(run)
    with pytest.raises(RunDirError, match=re.escape(str(RunPaths(run).checkpoint))):
        find_checkpoint(run)
    (run / "models.torch").write_bytes(b"")  # a flat folder is read too
    assert is_run_dir(run) and find_checkpoint(run) == run / "models.torch"
    RunPaths(run).checkpoint.write_bytes(b"")
    assert find_checkpoint(run) == RunPaths(run).checkpoint
