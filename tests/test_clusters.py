"""Explained clusters: labels written safely, explanations drawn from the model and the rows."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from inbedder import InBedder, lake
from inbedder.clusters import (ClusterError, ClusterOptions, cluster_table, distinguishing_words, head_tokens,
                               read_vectors, write_clusters, write_report)
from inbedder.lake import VectorSource
from inbedder.lake import KEY_HASH, OutputMeta

from .conftest import QUESTION, output_table, write_output


@pytest.fixture()
def table(tmp_path, llama, banking_texts):
    return output_table(tmp_path / "out", llama, banking_texts[:120])


def _rows(path) -> dict:
    data = DeltaTable(str(path)).to_pyarrow_table()
    return {r["id"]: r for r in data.to_pylist()}


def test_labels_are_written_back_and_nothing_else_changes(table, llama):
    before = _rows(table)
    result, _, labels = cluster_table(str(table), "q", ClusterOptions(k=4, sample_per_cluster=3), llama)
    after = _rows(table)
    assert set(after) == set(before) and result.column == "q_cluster" and result.rows == 120
    for key, row in after.items():
        assert 0 <= row["q_cluster"] < 4
        assert {c: v for c, v in row.items() if c != "q_cluster"} == before[key]  # vectors, hashes untouched
    assert sorted(c.size for c in result.clusters) == sorted(np.bincount(labels, minlength=4).tolist())
    assert sum(c.size for c in result.clusters) == 120
    for c in result.clusters:
        assert len(c.nearest) == 3 and all(n["text"] for n in c.nearest)
        assert all(after[n["key"]]["q_cluster"] == c.cluster for n in c.nearest)
        assert len(c.head_tokens) == 8 and c.sample_answers
    assert result.question == QUESTION and result.table_version == 1  # the version whose vectors were read


def test_a_row_whose_text_changed_gets_no_stale_label(table, llama):
    source = VectorSource.open(str(table), "q")
    data = read_vectors(source)
    changed = pa.table({"id": ["k5"], KEY_HASH: [hashlib.sha256(b"new text").hexdigest()]})
    DeltaTable(str(table)).merge(changed, "t.id = s.id", source_alias="s", target_alias="t") \
        .when_matched_update({KEY_HASH: f"s.{KEY_HASH}"}).execute()
    write_clusters(source, data, np.arange(len(data.keys), dtype=np.int32) % 3, 3)
    rows = _rows(table)
    assert rows["k5"]["q_cluster"] is None
    assert all(r["q_cluster"] is not None for k, r in rows.items() if k != "k5")


def test_re_embedding_a_row_clears_its_cluster(table, llama):
    cluster_table(str(table), "q", ClusterOptions(k=3, sample_per_cluster=2), llama)
    write_output(table, llama, ["k7", "new"], ["I lost my card yesterday", "Where is my refund?"])
    rows = _rows(table)
    assert rows["k7"]["q_cluster"] is None and rows["new"]["q_cluster"] is None
    assert rows["k8"]["q_cluster"] is not None


def test_parquet_output_gets_the_column_too(tmp_path, llama, banking_texts):
    texts = banking_texts[:40]
    data = pa.table({"id": [f"p{i}" for i in range(40)],
                     KEY_HASH: [hashlib.sha256(t.encode()).hexdigest() for t in texts],
                     "q_embedding": pa.array(list(llama.encode(texts, QUESTION)), type=pa.list_(pa.float32()))})
    meta = OutputMeta(llama.model_name, llama.fingerprint, llama.template, llama.dim, "id", {"q": QUESTION})
    lake.write_parquet_output(str(tmp_path / "pq"), [data], meta, data.schema)
    texts_table = tmp_path / "input.parquet"
    pq.write_table(pa.table({"id": data.column("id"), "body": texts}), texts_table)
    result, _, _ = cluster_table(str(tmp_path / "pq"), "q", ClusterOptions(k=2, sample_per_cluster=2,
                                 texts=str(texts_table), text_column="body"), llama)
    written = pq.read_table(tmp_path / "pq")
    assert written.num_rows == 40 and written.column("q_cluster").null_count == 0
    assert written.column("q_embedding").to_pylist() == data.column("q_embedding").to_pylist()
    assert lake.existing_output(str(tmp_path / "pq"), "parquet").meta == meta
    assert all(n["text"] in texts for c in result.clusters for n in c.nearest)


def test_clear_errors(table, llama, tiny_dirs, tmp_path, banking_texts):
    other = InBedder.from_pretrained(str(tiny_dirs["opt"]))
    with pytest.raises(ClusterError, match="holds vectors from model .* not comparable"):
        cluster_table(str(table), "q", ClusterOptions(k=2), other)
    with pytest.raises(ClusterError, match="k must be between 2 and"):
        cluster_table(str(table), "q", ClusterOptions(k=500), llama)
    write_output(tmp_path / "notext", llama, ["a", "b", "c"], banking_texts[:3], with_text=False)
    with pytest.raises(ClusterError, match="--texts"):
        cluster_table(str(tmp_path / "notext"), "q", ClusterOptions(k=2), llama)
    with pytest.raises(lake.TableError, match="never embedded"):
        cluster_table(str(table), "nope", ClusterOptions(k=2), llama)
    assert "q_cluster" not in _rows(tmp_path / "notext")["a"]  # a refused run writes nothing


def test_distinguishing_words_pick_each_clusters_own_words():
    words = distinguishing_words([["a refund for the card", "refund please"], ["the weather is sunny", "rain"],
                                  ["refund the weather"]], 2)
    assert words[0][0] == "card" or words[0][0] == "please"
    assert "sunny" in words[1] or "rain" in words[1]
    assert "refund" not in words[0]  # in two of three clusters' answers: explains neither


def test_head_tokens_read_a_direction_through_the_output_embeddings(llama):
    token_id = llama.loaded.tokenizer.convert_tokens_to_ids("card") if "card" in llama.loaded.tokenizer.get_vocab() \
        else llama.loaded.tokenizer.encode("card", add_special_tokens=False)[0]
    direction = llama.loaded.model.get_output_embeddings().weight[token_id].detach().numpy() * 100
    expected = llama.loaded.tokenizer.decode([token_id]).strip()
    assert head_tokens(llama, direction, 3)[0] == expected


def test_cli_cluster_writes_report_plot_and_column(table, tiny_dirs, tmp_path):
    from inbedder.cli import main

    result = CliRunner().invoke(main, ["cluster", "--model", str(tiny_dirs["llama"]), "--table", str(table),
                                       "--instruction", "q", "-k", "3", "--sample-per-cluster", "2",
                                       "--report", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| cluster | rows |" in report and "![clusters](clusters.png)" in report
    assert (tmp_path / "rep" / "clusters.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "rep" / "clusters.json").read_text())
    assert saved["k"] == 3 and len(saved["clusters"]) == 3 and "wrote column q_cluster" in result.stdout
    refused = CliRunner().invoke(main, ["cluster", "--model", str(tiny_dirs["opt"]), "--table", str(table),
                                        "--instruction", "q", "-k", "3"])
    assert refused.exit_code == 1 and "not comparable" in refused.output


def test_report_without_write_back(table, llama, tmp_path):
    result, data, labels = cluster_table(str(table), "q", ClusterOptions(k=2, write_back=False,
                                                                         sample_per_cluster=2), llama)
    assert result.column is None and "q_cluster" not in _rows(table)["k0"]
    assert "labels not written" in write_report(result, data, labels, tmp_path / "r").read_text()
