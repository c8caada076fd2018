"""Every notebook's code runs top to bottom and says what its text claims; the committed copies carry outputs.

The committed outputs come from `python notebooks/run.py` (a fresh kernel per notebook). Here the
cells run in the test process instead, so the two notebooks that run the job use the session's one
Spark and Ray (a kernel per notebook started both again: a minute of the suite), and the checks can
read the notebooks' own results.
"""

from __future__ import annotations

import warnings

import nbformat
import numpy as np
import pytest

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def execute_here(path, monkeypatch) -> dict:
    """Run the code cells in one fresh namespace of this process; a failing cell is named in the traceback."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__main__"}
    monkeypatch.chdir(path.parent)
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    with warnings.catch_warnings():  # the notebooks set their own filters; keep them out of the session
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure; the notebook calls plt.show()
        for number, cell in enumerate(cells, start=1):
            exec(compile(cell.source, f"{path.name}, code cell {number}", "exec"), namespace)
    plt.close("all")
    return namespace


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
def test_quickstart_asks_two_questions_and_the_trained_default_beats_zero_shot(monkeypatch):
    ns = execute_here(REPO / "notebooks" / "01_quickstart.ipynb", monkeypatch)
    trained, rows = ns["table"], ns["rows"]
    assert {name: v.shape for name, v in ns["vectors"].items()} == {"scenario": (len(rows), 576),
                                                                     "intent": (len(rows), 576)}
    assert trained.loc["scenario", "scenario"] > trained.loc["intent", "scenario"]  # asked about the area
    score = ns["v_measure"]
    zero_shot = [[score(v, rows[facet].tolist()) for facet in ns["questions"]] for v in ns["before"].values()]
    assert (trained.to_numpy() > np.array(zero_shot) + 0.1).all()


@pytest.mark.timeout(900)
def test_index_notebook_embeds_builds_and_finds(cluster, monkeypatch):
    ns = execute_here(REPO / "notebooks" / "02_index_and_query.ipynb", monkeypatch)
    assert ns["report"].rows_embedded == 400 and ns["report"].rows_failed == 0
    assert ns["manifest"]["rows"] == 400 and ns["manifest"]["recall_at_10"] == 1.0
    hits = ns["searcher"].search(["my card still hasn't arrived"], k=5, table=str(ns["work"] / "embeddings"))[0]
    assert [h.row["category"] for h in hits[:3]] == ["card_arrival"] * 3


@pytest.mark.timeout(900)
def test_clusters_notebook_labels_every_row_and_writes_its_report(cluster, monkeypatch):
    ns = execute_here(REPO / "notebooks" / "03_explained_clusters.ipynb", monkeypatch)
    clusters = ns["result"].clusters
    assert len(clusters) == 6 and sum(c.size for c in clusters) == ns["result"].rows == 360
    assert all(c.answer_words for c in clusters)
    assert int(ns["pd"].crosstab(ns["table"].scenario, ns["table"].scenario_cluster).to_numpy().sum()) == 360
    assert (ns["work"] / "report" / "clusters.png").stat().st_size > 0
