"""The study package's wings import only downwards: core <- qsf, jspsych <- build (the study is
built), core + jspsych.records <- collector (it is run), core + readers <- results (it is analysed).

Read statically (every ``import``, also inside functions), so a lazy import
cannot hide a dependency; plus one run-time check that loading the whole
analysis never loads the survey writer.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dubfiv.study

STUDY = Path(dubfiv.study.__file__).parent
CORE = ("dubfiv.study.content", "dubfiv.study.layout", "dubfiv.study.page_html")
WRITERS = ("dubfiv.study.qsf.writer", "dubfiv.study.qsf.responses_csv")
JSPSYCH_WRITERS = ("dubfiv.study.jspsych.experiment", "dubfiv.study.jspsych.writer",
                   "dubfiv.study.jspsych.packages")
WINGS = ("build", "qsf", "jspsych", "collector", "results")

#: module prefix -> the dubfiv.study modules it must not import
FORBIDDEN = {
    **{core: tuple(f"dubfiv.study.{w}" for w in WINGS) for core in CORE},
    "dubfiv.study.qsf": ("dubfiv.study.build", "dubfiv.study.results", "dubfiv.study.jspsych",
                         "dubfiv.study.collector"),
    "dubfiv.study.jspsych": ("dubfiv.study.build", "dubfiv.study.results",
                             "dubfiv.study.collector", *WRITERS),
    "dubfiv.study.build": ("dubfiv.study.results", "dubfiv.study.collector"),
    "dubfiv.study.collector": ("dubfiv.study.build", "dubfiv.study.results", *WRITERS,
                               *JSPSYCH_WRITERS),
    "dubfiv.study.results": ("dubfiv.study.build", *WRITERS, *JSPSYCH_WRITERS),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(STUDY.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _violations() -> list[str]:
    out = []
    for path in sorted(STUDY.rglob("*.py")):
        name = _module_name(path)
        for prefix, banned in FORBIDDEN.items():
            if name != prefix and not name.startswith(prefix + "."):
                continue
            out += [f"{name} imports {imp}" for imp in sorted(_imports(path))
                    if any(imp == b or imp.startswith(b + ".") for b in banned)]
    return out


def test_every_study_module_belongs_to_a_wing() -> None:
    names = [_module_name(p) for p in STUDY.rglob("*.py")]
    loose = [n for n in names if n != "dubfiv.study" and n not in CORE
             and not n.startswith(tuple(f"dubfiv.study.{w}." for w in WINGS))
             and n not in tuple(f"dubfiv.study.{w}" for w in WINGS)]
    assert not loose, f"modules outside the wings: {loose}"


def test_the_wings_import_only_downwards() -> None:
    assert _violations() == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """The static check is not blind: a results module that imports the writer inside a
    function is reported."""
    fake = tmp_path / "dubfiv" / "study"
    (fake / "results").mkdir(parents=True)
    (fake / "results" / "bad.py").write_text(
        "def f():\n    from dubfiv.study.qsf.writer import build_qsf\n    return build_qsf\n")
    monkeypatch.setattr(sys.modules[__name__], "STUDY", fake)
    assert _violations() == ["dubfiv.study.results.bad imports dubfiv.study.qsf.writer",
                             "dubfiv.study.results.bad imports dubfiv.study.qsf.writer.build_qsf"]


def test_loading_the_analysis_never_loads_the_writer() -> None:
    code = ("import sys, importlib, pkgutil, dubfiv.study.results as r\n"
            "for m in pkgutil.iter_modules(r.__path__):\n"
            "    importlib.import_module('dubfiv.study.results.' + m.name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('dubfiv.study')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert "dubfiv.study.results.analysis" in loaded
    for module in (*WRITERS, *JSPSYCH_WRITERS, "dubfiv.study.build"):
        assert f"'{module}" not in loaded


def test_every_folder_of_modules_is_a_package_that_setup_finds() -> None:
    """A folder without ``__init__.py`` (e.g. one a ``.gitignore`` rule kept out of a
    commit) would be missing from an installed wheel: ``find_packages`` skips it."""
    from setuptools import find_packages

    root = STUDY.parent.parent
    found = set(find_packages(str(root), include=["dubfiv", "dubfiv.*", "two4two", "two4two.*"]))
    folders = {".".join(p.parent.relative_to(root).parts)
               for top in ("dubfiv", "two4two") for p in (root / top).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders - found == set()
