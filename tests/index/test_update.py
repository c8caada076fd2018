"""An updated index equals a rebuilt one."""

from __future__ import annotations


import numpy as np
import pytest
from deltalake import DeltaTable

from inbedder.index import Searcher, build_index, update_index

from ..conftest import QUESTION, output_table, write_output


@pytest.fixture()
def table(tmp_path, llama, banking_texts):
    return output_table(tmp_path / "out", llama, banking_texts[:300])


def test_incremental_update_equals_a_rebuild(tmp_path, table, llama, banking_texts):
    build_index(str(table), "q", tmp_path / "idx")
    write_output(table, llama, ["k5", "k300", "k301"], ["a brand new text about fees", *banking_texts[300:302]])
    DeltaTable(str(table)).delete("id = 'k9'")
    manifest, counts = update_index(str(table), tmp_path / "idx")
    assert counts == {"added": 3, "removed": 2, "rebuilt": False} and manifest.rows == 301
    build_index(str(table), "q", tmp_path / "fresh")
    queries = llama.encode(banking_texts[:20] + ["a brand new text about fees"], QUESTION)
    a = Searcher(tmp_path / "idx", llama).search_vectors(queries, k=5)
    b = Searcher(tmp_path / "fresh", llama).search_vectors(queries, k=5)
    assert [[h.key for h in row] for row in a] == [[h.key for h in row] for row in b]
    np.testing.assert_allclose([[h.score for h in row] for row in a], [[h.score for h in row] for row in b], atol=1e-5)
    assert update_index(str(table), tmp_path / "idx")[1] == {"added": 0, "removed": 0, "rebuilt": False}
