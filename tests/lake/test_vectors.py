"""Reading an output table's rows by key, for a query's hits, without loading it whole."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

from inbedder.lake import open_dataset, rows_by_key


def _table(keys) -> pa.Table:
    return pa.table({"id": keys, "text": [f"text of {k}" for k in keys],
                     "intent_embedding": pa.array([[0.0, 1.0]] * len(keys), type=pa.list_(pa.float32())),
                     "intent_answer": [f"answer {k}" for k in keys],
                     "_inbedder_error": pa.array([None] * len(keys), type=pa.string())})


def test_integer_keys_read_from_parquet_row_groups(tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    pq.write_table(_table(list(range(1000))), folder / "part-0.parquet", row_group_size=100)
    rows = rows_by_key(open_dataset(str(folder)), "id", [5, 905, 905, 5000])
    assert rows == {5: {"id": 5, "text": "text of 5", "intent_answer": "answer 5"},
                    905: {"id": 905, "text": "text of 905", "intent_answer": "answer 905"}}  # 5000: not in the table
    assert rows_by_key(open_dataset(str(folder)), "id", []) == {}


def test_string_keys_read_from_a_delta_version(tmp_path):
    path = str(tmp_path / "delta")
    write_deltalake(path, _table([f"k{i}" for i in range(10)]))
    write_deltalake(path, _table([f"k{i}" for i in range(10, 20)]), mode="append")
    assert set(rows_by_key(open_dataset(path, 0), "id", ["k3", "k15"])) == {"k3"}  # version 0 has no k15
    latest = rows_by_key(open_dataset(path), "id", ["k3", "k15"])
    assert latest["k15"]["text"] == "text of k15" and "intent_embedding" not in latest["k3"]
