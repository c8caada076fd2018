"""Delta commits keep every vector that still matches its text, whatever the schema change."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable

from inbedder import lake
from inbedder.lake import KEY_HASH, OutputMeta


def _meta(*names: str) -> OutputMeta:
    return OutputMeta("m", "f", "t", 1, "id", {n: f"{n}?" for n in names})


def test_new_instruction_column_with_a_changed_text_nulls_only_that_rows_old_vectors(tmp_path):
    path = str(tmp_path / "out")
    lake.commit_delta_wave(path, pa.table({"id": ["a", "b"], KEY_HASH: ["h1", "h2"], "A_embedding": [1.0, 2.0]}),
                             "id", _meta("A"), "r", 0, update_columns=[KEY_HASH, "A_embedding"])
    # a run asking only for a new instruction B, while b's text changed: b's A vector no longer matches it
    lake.commit_delta_wave(path, pa.table({"id": ["a", "b", "c"], KEY_HASH: ["h1", "hX", "h3"],
                                             "B_embedding": [5.0, 6.0, 7.0]}),
                             "id", _meta("A", "B"), "r", 1, update_columns=[KEY_HASH, "B_embedding"],
                             null_when_changed=["A_embedding"])
    rows = {r["id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert rows["a"]["A_embedding"] == 1.0 and rows["a"]["B_embedding"] == 5.0
    assert rows["b"]["A_embedding"] is None and rows["b"]["B_embedding"] == 6.0 and rows["b"][KEY_HASH] == "hX"
    assert rows["c"]["A_embedding"] is None and rows["c"]["B_embedding"] == 7.0


def test_writing_new_vectors_clears_that_instructions_cluster_labels(tmp_path):
    path = str(tmp_path / "out")
    first = pa.table({"id": ["a", "b"], KEY_HASH: ["h1", "h2"], "A_embedding": [1.0, 2.0],
                      "A_cluster": pa.array([0, 1], pa.int32())})
    lake.commit_delta_wave(path, first, "id", _meta("A"), "r", 0, update_columns=first.column_names[1:])
    lake.commit_delta_wave(path, pa.table({"id": ["b"], KEY_HASH: ["hY"], "A_embedding": [9.0]}), "id",
                             _meta("A"), "r", 1, update_columns=[KEY_HASH, "A_embedding"])
    rows = {r["id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert rows["a"]["A_cluster"] == 0 and rows["b"]["A_cluster"] is None and rows["b"]["A_embedding"] == 9.0
