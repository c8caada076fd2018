"""Building an index from an output table: recall reached, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from inbedder.index import BuildOptions, IndexBuildError, Searcher, build_index, load_index
from inbedder.lake import TableError

from ..conftest import DATA, REPO, output_table, write_output


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


def test_index_errors_are_clear(tmp_path, table, llama):
    build_index(str(table), "q", tmp_path / "idx")
    with pytest.raises(TableError, match="was never embedded"):  # the table's problem, named by the lake
        build_index(str(table), "topic", tmp_path / "other")
    with pytest.raises(TableError, match="does not exist"):
        build_index(str(tmp_path / "nope"), "q", tmp_path / "other")
    with pytest.raises(IndexBuildError, match=r"shape \(1, 3\)"):
        Searcher(tmp_path / "idx", llama).search_vectors(np.zeros((1, 3), dtype=np.float32))
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "idx", broken)
    (broken / "index.faiss").write_bytes(b"not faiss")
    with pytest.raises(IndexBuildError, match="corrupt or not a FAISS index"):
        load_index(broken)
    (broken / "index.faiss").unlink()
    with pytest.raises(IndexBuildError, match="missing index.faiss"):
        load_index(broken)
    shutil.copy(tmp_path / "idx" / "index.faiss", broken / "index.faiss")
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["rows"] = 5
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexBuildError, match="from different builds"):
        load_index(broken)
    (broken / "manifest.json").unlink()
    with pytest.raises(IndexBuildError, match="no manifest.json"):
        load_index(broken)


def test_empty_table_is_refused(tmp_path, llama):
    write_output(tmp_path / "t", llama, ["a"], ["only row"])
    DeltaTable(str(tmp_path / "t")).delete("id = 'a'")
    with pytest.raises(IndexBuildError, match="no vectors"):
        build_index(str(tmp_path / "t"), "q", tmp_path / "idx")
