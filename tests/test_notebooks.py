"""Every notebook runs top to bottom in a fresh kernel, and the committed copies carry their outputs."""

from __future__ import annotations

import importlib.util

import nbformat
import pytest

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", REPO / "notebooks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_index_and_query.ipynb",
                                           "03_explained_clusters.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_carries_its_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "run `python notebooks/run.py` before committing"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    if path.stem != "02_index_and_query":
        assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "plots are missing"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_without_error(path):
    executed = _runner().execute(path)  # raises CellExecutionError naming the failing cell
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
