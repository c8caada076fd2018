"""Indexes built from output tables: recall, queries, updates and clear errors (no Spark needed)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from inbedder import InBedder
from inbedder.index import BuildOptions, IndexError_, build_index, load_index, update_index
from inbedder.search import Searcher

from .conftest import DATA, QUESTION, REPO, output_table, write_output

@pytest.fixture()
def table(tmp_path, llama, banking_texts):
    return output_table(tmp_path / "out", llama, banking_texts[:300])


def test_real_vectors_reach_the_recall_target(tmp_path, default_model):
    path = DATA / "clustering" / "clinc_intent_domain.small.parquet"
    texts = pq.read_table(path).column("text").to_pylist()[:600] if path.exists() else \
        pq.read_table(REPO / "inbedder" / "data" / "banking77_sample.parquet").column("text").to_pylist()[:600]
    write_output(tmp_path / "clinc", default_model, [f"c{i}" for i in range(len(texts))], texts)
    for factory in ("IVF32,Flat", "HNSW32,Flat"):
        manifest = build_index(str(tmp_path / "clinc"), "q", tmp_path / factory,
                               BuildOptions(factory=factory, recall_queries=200))
        assert manifest.recall_at_10 >= 0.95, (factory, manifest.recall_at_10, manifest.search_params)
        assert manifest.rows == len(texts) and manifest.search_params


def test_query_returns_the_right_rows_and_columns(tmp_path, table, llama, banking_texts):
    manifest = build_index(str(table), "q", tmp_path / "idx")
    assert manifest.factory == "Flat" and manifest.recall_at_10 == 1.0 and manifest.source_version is not None
    searcher = Searcher(tmp_path / "idx", llama)
    hits = searcher.search([banking_texts[17], banking_texts[42]], k=3, table=str(table))
    assert [h[0].key for h in hits] == ["k17", "k42"]
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0][0].row["text"] == banking_texts[17] and "q_embedding" not in hits[0][0].row
    saved = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert saved["instruction_text"] == QUESTION and saved["fingerprint"] == llama.fingerprint


def test_a_model_with_another_fingerprint_is_refused(tmp_path, table, tiny_dirs):
    build_index(str(table), "q", tmp_path / "idx")
    with pytest.raises(IndexError_, match="is not the one that made the index"):
        Searcher(tmp_path / "idx", InBedder.from_pretrained(str(tiny_dirs["opt"])))


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


def test_index_errors_are_clear(tmp_path, table, llama):
    build_index(str(table), "q", tmp_path / "idx")
    with pytest.raises(IndexError_, match="was never embedded"):
        build_index(str(table), "topic", tmp_path / "other")
    with pytest.raises(IndexError_, match="does not exist"):
        build_index(str(tmp_path / "nope"), "q", tmp_path / "other")
    with pytest.raises(IndexError_, match=r"shape \(1, 3\)"):
        Searcher(tmp_path / "idx", llama).search_vectors(np.zeros((1, 3), dtype=np.float32))
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "idx", broken)
    (broken / "index.faiss").write_bytes(b"not faiss")
    with pytest.raises(IndexError_, match="corrupt or not a FAISS index"):
        load_index(broken)
    (broken / "index.faiss").unlink()
    with pytest.raises(IndexError_, match="missing index.faiss"):
        load_index(broken)
    shutil.copy(tmp_path / "idx" / "index.faiss", broken / "index.faiss")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["rows"] = 5
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexError_, match="from different builds"):
        load_index(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(IndexError_, match="no manifest.json"):
        load_index(broken)


def test_empty_table_is_refused(tmp_path, llama):
    write_output(tmp_path / "t", llama, ["a"], ["only row"])
    DeltaTable(str(tmp_path / "t")).delete("id = 'a'")
    with pytest.raises(IndexError_, match="no vectors"):
        build_index(str(tmp_path / "t"), "q", tmp_path / "idx")


def test_memory_budget_picks_the_index_type():
    from inbedder.index import choose_index

    assert choose_index(1_000, 576, 2**30).factory == "Flat"
    assert choose_index(200_000, 576, 2**31).kind == "hnsw"
    assert choose_index(1_000_000, 576, 8 * 2**30).factory.endswith(",Flat")
    assert ",PQ" in choose_index(1_000_000, 576, 256 * 2**20).factory
    with pytest.raises(IndexError_, match="do not fit"):
        choose_index(10**9, 576, 2**20)


def test_shards_built_on_spark_equal_a_single_machine_build(cluster, tmp_path, llama, banking_texts):
    from inbedder.index_shards import build_index_on_spark

    write_output(tmp_path / "t", llama, [f"k{i}" for i in range(600)], banking_texts[:600])
    options = BuildOptions(factory="IVF16,Flat", recall_queries=100)
    sharded = build_index_on_spark(cluster, str(tmp_path / "t"), "q", tmp_path / "sharded", options, partitions=3)
    single = build_index(str(tmp_path / "t"), "q", tmp_path / "single", BuildOptions(factory="IVF16,Flat",
                                                                                     recall_queries=100))
    assert sharded.rows == single.rows == 600 and sharded.recall_at_10 >= 0.95
    queries = llama.encode(banking_texts[:30], QUESTION)
    a = Searcher(tmp_path / "sharded", llama).search_vectors(queries, k=5)
    b = Searcher(tmp_path / "single", llama).search_vectors(queries, k=5)
    assert [h.key for h in a[0]][0] == "k0"
    overlap = np.mean([len({h.key for h in x} & {h.key for h in y}) / 5 for x, y in zip(a, b)])
    assert overlap >= 0.9  # two separately trained quantizers: near-identical neighbours


def test_cli_index_then_query_json(tmp_path, table, tiny_dirs, banking_texts):
    from click.testing import CliRunner

    from inbedder.cli import main

    runner = CliRunner()
    built = runner.invoke(main, ["index", "--table", str(table), "--out", str(tmp_path / "idx")])
    assert built.exit_code == 0, built.output
    queries = tmp_path / "q.txt"
    queries.write_text(f"{banking_texts[3]}\n{banking_texts[8]}\n")
    result = runner.invoke(main, ["query", str(tmp_path / "idx" / "q"), "--queries-file", str(queries), "-k", "2",
                                  "--table", str(table), "--model", str(tiny_dirs["llama"]), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["hits"][0]["key"] for r in rows] == ["k3", "k8"] and rows[0]["hits"][0]["row"]["text"] == banking_texts[3]
    again = runner.invoke(main, ["index", "--table", str(table), "--out", str(tmp_path / "idx")])
    assert "'added': 0" in again.stdout
