"""Index benchmark: recall, build time, size and query speed at 1M vectors, plus real-vector recall.

    python bench/index.py --out bench/results/index.json [--rows 1000000]

Synthetic data: a mixture of ~1,000 anisotropic Gaussian clusters in the default
model's dimension (576): each cluster has its own centre and a random rank-32
covariance, a stand-in for real embeddings (pure random vectors have no
neighbours worth finding). The index type is the one `inbedder index` picks for
that size under its default 8 GiB memory budget; recall@10 is measured against
exact search on 1,000 sampled rows (their own row excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inbedder.engine.hardware import machine_record
from inbedder.lake import VectorSource
from inbedder.index import BuildOptions, build_index_from, load_index
from inbedder.lake import OutputMeta

REPO = Path(__file__).resolve().parents[1]
CLINC = REPO.parent / "shared" / "data" / "clustering" / "clinc_intent_domain.small.parquet"


class ArraySource(VectorSource):
    """Vectors held in memory, served in batches like a table column."""

    def __init__(self, vectors: np.ndarray, batch: int = 100_000):
        meta = OutputMeta("synthetic", "synthetic", "", vectors.shape[1], "id", {"q": "synthetic"})
        super().__init__("memory://synthetic", "memory", None, meta, "q")
        self.vectors, self.batch = vectors, batch

    def batches(self, batch_rows: int = 0):
        for start in range(0, len(self.vectors), self.batch):
            chunk = self.vectors[start : start + self.batch]
            keys = pa.table({"key": pa.array(np.arange(start, start + len(chunk))),
                             "text_sha256": pa.array([""] * len(chunk))})
            yield keys, chunk


def clustered(rows: int, dim: int, clusters: int, rank: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 2.0
    bases = rng.normal(size=(clusters, rank, dim)).astype(np.float32) / np.sqrt(rank)
    scales = rng.uniform(0.3, 1.5, size=(clusters, rank)).astype(np.float32)
    labels = rng.integers(0, clusters, size=rows)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 50_000):
        lab = labels[start : start + 50_000]
        z = rng.normal(size=(len(lab), rank)).astype(np.float32) * scales[lab]
        noise = rng.normal(size=(len(lab), dim)).astype(np.float32) * 0.05
        out[start : start + len(lab)] = centres[lab] + np.einsum("nr,nrd->nd", z, bases[lab]) + noise
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--clinc-rows", type=int, default=4500)
    args = ap.parse_args()
    import faiss

    work = Path(tempfile.mkdtemp(prefix="inbedder-bench-index-"))
    vectors = clustered(args.rows, 576, 1000)
    started = time.perf_counter()
    manifest = build_index_from(ArraySource(vectors), work / "synthetic", BuildOptions())
    build_seconds = time.perf_counter() - started
    index, _, _ = load_index(work / "synthetic")
    queries = vectors[np.random.default_rng(5).choice(len(vectors), 1000, replace=False)].copy()
    faiss.normalize_L2(queries)
    index.search(queries[:10], 10)
    t0 = time.perf_counter()
    index.search(queries, 10)
    qps = len(queries) / (time.perf_counter() - t0)
    del vectors, index

    from inbedder.engine import InBedder
    from inbedder.index import Searcher

    model = InBedder.from_pretrained()
    texts = pq.read_table(CLINC).column("text").to_pylist()[: args.clinc_rows]
    real = model.encode(texts, "What does the user want to do?")
    real_results = {}
    for factory in (None, "IVF64,Flat", "HNSW32,Flat"):
        name = factory or "default"
        m = build_index_from(ArraySource(real), work / f"clinc-{name}", BuildOptions(factory=factory))
        real_results[name] = {"factory": m.factory, "recall_at_10": m.recall_at_10, "params": m.search_params}
    # end-to-end query latency: embed one query with the default model + search its index
    clinc_manifest = json.loads((work / "clinc-default" / "manifest.json").read_text())
    clinc_manifest.update(model=model.model_name, fingerprint=model.fingerprint,
                          instruction_text="What does the user want to do?")
    (work / "clinc-default" / "manifest.json").write_text(json.dumps(clinc_manifest))
    searcher = Searcher(work / "clinc-default", model)
    latencies = []
    for q in texts[:50]:
        t0 = time.perf_counter()
        searcher.search([q], k=10)
        latencies.append((time.perf_counter() - t0) * 1000)
    result = {
        "p5_recall_at_10": manifest.recall_at_10,
        "p5_build_seconds": build_seconds,
        "p5_bytes_per_vector": manifest.index_bytes / manifest.rows,
        "p5_query_qps": qps,
        "p5_query_ms_p50": float(np.median(latencies)),
        "synthetic": {"rows": manifest.rows, "factory": manifest.factory, "params": manifest.search_params,
                      "index_bytes": manifest.index_bytes},
        "clinc_real_vectors": {"rows": len(texts), **real_results},
        "machine": {**machine_record(), "cores": os.cpu_count()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
