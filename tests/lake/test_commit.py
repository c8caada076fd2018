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


def test_the_output_file_size_option_cuts_waves_into_files_of_that_size(tmp_path):
    import numpy as np

    rows = 20_000
    data = pa.table({"id": [f"k{i}" for i in range(rows)], KEY_HASH: [f"h{i}" for i in range(rows)],
                     "q_embedding": pa.array(list(np.random.default_rng(0).random((rows, 64), dtype=np.float32)),
                                             pa.list_(pa.float32()))})  # ~5.5 MB of vectors
    sized, plain = str(tmp_path / "sized"), str(tmp_path / "plain")
    lake.commit_delta_wave(sized, data, "id", _meta("q"), "r", 0, update_columns=data.column_names[1:],
                           target_file_bytes=2**20)
    lake.commit_delta_wave(plain, data, "id", _meta("q"), "r", 0, update_columns=data.column_names[1:])
    assert len(DeltaTable(plain).file_uris()) == 1
    assert 4 <= len(DeltaTable(sized).file_uris()) <= 8  # about 1 MB each
    assert DeltaTable(sized).metadata().configuration["delta.targetFileSize"] == str(2**20)
    assert DeltaTable(sized).to_pyarrow_table().sort_by("id").equals(DeltaTable(plain).to_pyarrow_table().sort_by("id"))
    more = data.slice(0, 5_000)  # a later wave (a MERGE) keeps to the size as well
    lake.commit_delta_wave(sized, more, "id", _meta("q"), "r", 1, update_columns=data.column_names[1:],
                           target_file_bytes=2**20)
    assert all(p.stat().st_size < 2 * 2**20 for p in (tmp_path / "sized").glob("*.parquet"))
