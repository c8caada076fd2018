"""Shards filled on Spark equal a single-machine build; Spark reads s3 paths as s3a."""

from __future__ import annotations


import numpy as np

from inbedder.index import BuildOptions, Searcher, build_index

from ..conftest import QUESTION, write_output


def test_shards_built_on_spark_equal_a_single_machine_build(cluster, tmp_path, llama, banking_texts):
    from inbedder.index.shards import build_index_on_spark

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


def test_spark_reads_the_output_files_under_their_s3a_names(monkeypatch):
    from inbedder.index import shards

    monkeypatch.setattr(shards, "output_files", lambda table, fmt: [f"{table}/part-0.parquet"])
    assert shards.spark_paths("s3://lake/out", "delta") == ["s3a://lake/out/part-0.parquet"]
    assert shards.spark_paths("/lake/out", "delta") == ["/lake/out/part-0.parquet"]
