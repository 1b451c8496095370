"""two4two renders from every way of running Python, and cleans up after crashes.

Render workers are fresh interpreters (``python -m two4two._blender.worker``),
so they never import the caller's ``__main__``: these tests render real
(tiny) images from a script on stdin, ``python -c``, a script without a
main guard and a notebook, and check that killed workers or a killed parent
leave no processes behind. Processes are checked with ``os.kill(pid, 0)`` and
``/proc`` (a zombie counts as gone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from two4two.blender import Renderer, RenderError
from two4two.scene_parameters import SceneParameters, load_jsonl

TIMEOUT_S = 90


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The pids still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def check_output_dir(out: Path, n: int) -> None:
    """``n`` complete image/mask pairs and a ``parameters.jsonl`` naming exactly them."""
    scenes = load_jsonl(out / "parameters.jsonl")
    assert len(scenes) == n and len({p.id for p in scenes}) == n
    expected = {name for p in scenes for name in (p.filename, p.mask_filename)}
    assert {p.name for p in out.iterdir()} == expected | {"parameters.jsonl"}
    for p in scenes:
        with Image.open(out / p.filename) as image, Image.open(out / p.mask_filename) as mask:
            assert image.size == mask.size == p.resolution[::-1]
            assert set(np.unique(np.asarray(mask)).tolist()) == set(range(9))


# A script that renders N scenes with the positional upstream call and counts how
# often its top level runs (a re-imported __main__ would run it again).
RENDER_CODE = textwrap.dedent("""
    import sys
    from pathlib import Path

    from two4two.blender import render
    from two4two.scene_parameters import SceneParameters

    out = Path(sys.argv[1])
    with open(out.parent / "runs.txt", "a") as runs:
        runs.write("ran\\n")
    scenes = [SceneParameters(resolution=(32, 32)) for _ in range(3)]
    results = list(render(scenes, 2, 1, str(out), samples=2))
    assert [r[2] for r in results] == scenes
    print("rendered", len(results))
""")


def run_python(args: list[str], cwd: Path, stdin: str | None = None
               ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], input=stdin, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def check_script_run(proc: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["rendered 3"]  # no Blender chatter on stdout
    assert (tmp_path / "runs.txt").read_text() == "ran\n"  # the script ran exactly once
    check_output_dir(tmp_path / "out", 3)


def test_render_from_a_script_on_stdin(tmp_path):
    proc = run_python(["-", str(tmp_path / "out")], tmp_path, stdin=RENDER_CODE)
    check_script_run(proc, tmp_path)


def test_render_from_a_script_without_main_guard(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(RENDER_CODE)
    proc = run_python([str(script), str(tmp_path / "out")], tmp_path)
    check_script_run(proc, tmp_path)


def test_render_single_from_python_c(tmp_path):
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        import numpy as np
        from two4two import blender
        from two4two.scene_parameters import SceneParameters

        out = Path(sys.argv[1])
        param = SceneParameters(resolution=(24, 40))
        image, mask = blender.render_single(param=param, samples=2, output_dir=out,
                                            write_parameters=False)
        print(image.shape, image.dtype, sorted(np.unique(mask).tolist()) == list(range(9)))
        print(sorted(p.name for p in out.iterdir()) == sorted([param.filename,
                                                                param.mask_filename]))
    """)
    proc = run_python(["-c", code, str(tmp_path / "out")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the PNGs and no parameters.jsonl (write_parameters=False)
    assert proc.stdout.splitlines() == ["(24, 40, 3) uint8 True", "True"]


def test_render_after_the_caller_imported_bpy(tmp_path):
    # Importing bpy puts Blender's script folders (one holds a pure-Python `bpy`) on
    # sys.path; the workers must still import the real module.
    code = "import bpy  # noqa: F401\n" + RENDER_CODE
    proc = run_python(["-", str(tmp_path / "out")], tmp_path, stdin=code)
    check_script_run(proc, tmp_path)


def test_render_from_a_notebook(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    out = tmp_path / "out"
    cell = textwrap.dedent(f"""
        from two4two.blender import render
        from two4two.scene_parameters import SceneParameters

        scenes = [SceneParameters(resolution=(32, 32)) for _ in range(2)]
        results = list(render(scenes, 1, 1, {str(out)!r}, samples=2))
        print("rendered", len(results), results[0][0].shape)
    """)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == [
        "rendered 2 (32, 32, 3)\n"]
    check_output_dir(out, 2)


def test_worker_killed_mid_render_is_named_and_nothing_is_left(tmp_path):
    scenes = [SceneParameters(resolution=(64, 64)) for _ in range(12)]
    with Renderer(n_processes=2, samples=64) as pool:
        iterator = pool.render(scenes, output_dir=tmp_path)
        next(iterator)  # both workers have started and hold queued work
        pids = pool.worker_pids
        # what the worker wrote to its stderr log last must be in the report
        log_path = pool._pool._workers[0].log_path
        with open(log_path, "a") as log:
            log.write("simulated last words on stderr\n")
        os.kill(pids[0], signal.SIGKILL)
        with pytest.raises(RenderError) as failure:
            list(iterator)
        assert not pool.started
    message = str(failure.value)
    assert f"Blender worker 0 (pid {pids[0]}) died: killed by signal 9 (SIGKILL)" in message
    assert message.endswith("simulated last words on stderr")
    assert failure.value.details.endswith("simulated last words on stderr")
    assert wait_gone(pids, timeout=0.0) == []  # killed and reaped at once, no zombies
    for path in tmp_path.iterdir():  # only complete files, no temporary ones
        assert not path.name.startswith("."), path
        with Image.open(path) as png:
            png.load()


_PARENT_SCRIPT = textwrap.dedent("""
    import time
    from two4two.blender import Renderer
    from two4two.scene_parameters import SceneParameters

    pool = Renderer(n_processes=2, samples=2)
    list(pool.render([SceneParameters(resolution=(32, 32))] * 2))
    print(*pool.worker_pids, flush=True)
    time.sleep(60)
""")


def test_workers_exit_when_their_parent_is_killed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _PARENT_SCRIPT], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
    finally:
        proc.kill()  # SIGKILL: no atexit, no finally in the parent
        proc.wait(TIMEOUT_S)
    assert wait_gone(pids) == []


def test_workers_stop_when_a_script_ends_with_a_renderer_open(tmp_path):
    code = textwrap.dedent("""
        from two4two.blender import Renderer
        from two4two.scene_parameters import SceneParameters

        pool = Renderer(n_processes=1, samples=2)
        iterator = pool.render([SceneParameters(resolution=(32, 32))] * 4)
        next(iterator)  # left unfinished, workers running, when the script ends
        print(*pool.worker_pids, flush=True)
        _keep = (pool, iterator)
    """)
    proc = run_python(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 1
    assert wait_gone(pids) == []
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_a_worker_that_cannot_start_is_a_render_error(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-python"
    monkeypatch.setattr(sys, "executable", str(missing))
    pool = Renderer(n_processes=2, samples=1)
    with pytest.raises(RenderError, match=r"cannot start Blender worker 0 \(.*no-such-python"):
        list(pool.render([SceneParameters(resolution=(16, 16))]))
    assert not pool.started
