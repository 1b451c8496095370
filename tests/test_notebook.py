"""Example_Analysis.ipynb: committed without outputs; runs headless on the small run.

The run test is also the integration test of the explanations on a real trained
model: it checks the records the notebook wrote and that a second load in this
process reuses the analysis cache the notebook's kernel computed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from dubfiv.analysis import Analysis
from dubfiv.explain import cache as split_cache

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "Example_Analysis.ipynb"


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, (
            "clear the outputs of Example_Analysis.ipynb before committing "
            "(Jupyter: Edit > Clear Outputs of All Cells)")


def _check_records(out: Path) -> None:
    records = {name: json.loads((out / f"{name}.json").read_text())
               for name in ("baseline", "interpolation", "concepts_nmf")}
    for name in records:
        assert (out / f"{name}.png").stat().st_size > 10_000

    baseline = records["baseline"]
    edges = [float(e) for e in baseline["bins"]["edges"]]
    cells = [cell for row in baseline["cells"] for cell in row]
    assert len(cells) == 5 * baseline["n_rows"]
    for cell in cells:
        assert edges[cell["bin"]] <= cell["logit"] < edges[cell["bin"] + 1]
    assert len({cell["index"] for cell in cells}) == len(cells)

    grid = records["interpolation"]
    assert grid["targets"] == pytest.approx(grid["bins"]["values"])
    assert grid["bins"]["p_lo"] == 50 and grid["bins"]["p_hi"] == 90
    assert grid["max_abs_logit_deviation"] < 1e-3  # float32 through the flow and back
    for row in grid["rows"]:
        np.testing.assert_allclose(row["deviation"],
                                   np.abs(np.subtract(row["logits"], row["targets"])))
        assert all(0 <= f <= 1 for f in row["clipped_fraction"])

    concepts = records["concepts_nmf"]
    assert concepts["layer_shape"][1:] == [8, 8] and concepts["n_concepts"] == 8
    assert concepts["fit_explained_variance"] > concepts["random_basis_explained_variance"]
    assert set(concepts["probe"]) == {"train", "validation", "test"}
    assert all(0 <= p["label_accuracy"] <= 1 for p in concepts["probe"].values())


def test_notebook_runs_on_the_small_run(
    small_run: Path, small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbclient import NotebookClient

    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)  # the cache goes beside this copy
    out = tmp_path / "figures"
    monkeypatch.setenv("DUBFIV_RUN_DIR", str(run_dir))
    monkeypatch.setenv("DUBFIV_ANALYSIS_OUT", str(out))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()

    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    assert "re-encoded logit" in text and "label accuracy from concepts" in text
    images = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(images) == 3
    _check_records(out)

    # the notebook's kernel filled the cache: loading again here computes nothing
    calls: list[Any] = []
    monkeypatch.setattr(split_cache, "compute_split_data",
                        lambda *args, **kwargs: calls.append(args))
    analysis = Analysis.from_checkpoint(run_dir, device="cpu", progress=False,
                                        output_dir=tmp_path / "again")
    assert calls == [] and analysis.cache_reused == {"validation": True, "test": True}
    accuracy = analysis.treatment.accuracy
    assert f"accuracy {accuracy:.3f}" in text
    # the trainer's last validation saw the same images (with dequantisation noise)
    last = analysis.run.history["validation"][-1]
    n_validation = sum(1 for _ in (small_dataset / "validation" / "parameters.jsonl").open())
    assert last["n"] == len(analysis.treatment) == n_validation
    assert abs(accuracy - last["head_0_accuracy"]) <= 0.05
