"""Building one index from a vector source: sample, train, add, tune, store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from inbedder.errors import IndexBuildError
from inbedder.index.choose import IndexChoice, choose_index, forced_choice
from inbedder.index.manifest import (DEFAULT_MEMORY_BUDGET_GB, DEFAULT_METRIC, DEFAULT_RECALL_TARGET, MANIFEST_VERSION,
                                     METRICS, Manifest)
from inbedder.index.store import write_index
from inbedder.index.tune import tune_and_measure
from inbedder.index.vectors import faiss_metric, prepare
from inbedder.lake import VectorSource


@dataclass
class BuildOptions:
    metric: str = DEFAULT_METRIC
    memory_budget_bytes: int = int(DEFAULT_MEMORY_BUDGET_GB * 2**30)
    recall_target: float = DEFAULT_RECALL_TARGET
    recall_queries: int = 1000
    train_sample: int = 100_000
    threads: int | None = None
    seed: int = 0
    factory: str | None = None  # force a FAISS factory string instead of choosing by size

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise IndexBuildError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")

    @classmethod
    def from_settings(cls, metric: str = DEFAULT_METRIC, memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
                      recall_target: float = DEFAULT_RECALL_TARGET) -> BuildOptions:
        """The one place the user-facing settings (CLI, job YAML, Airflow, spark-submit) become build options."""
        return cls(metric=metric, memory_budget_bytes=int(memory_budget_gb * 2**30), recall_target=recall_target)


def build_index(table: str, instruction: str, out_dir: str | Path, options: BuildOptions | None = None) -> Manifest:
    """Build (or rebuild) the index of one instruction column into out_dir, atomically."""
    return build_index_from(VectorSource.open(table, instruction), out_dir, options)


def build_index_from(source: VectorSource, out_dir: str | Path, options: BuildOptions | None = None) -> Manifest:
    """Build from any source with `batches()` and `meta` (a table column, or arrays in a benchmark)."""
    import faiss

    options = options or BuildOptions()
    if options.threads:
        faiss.omp_set_num_threads(options.threads)
    started = time.perf_counter()
    table, instruction = source.path, source.instruction
    rows, sample = count_and_sample(source, options)
    if rows == 0:
        raise IndexBuildError(f"{table} has no vectors for instruction {instruction!r} "
                              "(empty table or every row failed)")
    dim = sample.shape[1]
    if dim != source.meta.dim:
        raise IndexBuildError(f"vectors in {table} have dim {dim} but the table records dim {source.meta.dim}")
    choice = forced_choice(options.factory, rows) if options.factory else \
        choose_index(rows, dim, options.memory_budget_bytes)
    index = faiss.index_factory(dim, choice.factory, faiss_metric(options.metric))
    if not index.is_trained:
        index.train(prepare(sample, options.metric))
    index = with_ids(index, choice)
    id_parts = []
    next_id = 0
    for keys, vectors in source.batches():
        ids = np.arange(next_id, next_id + len(keys), dtype=np.int64)
        index.add_with_ids(prepare(vectors, options.metric), ids)
        id_parts.append(keys.append_column("id", pa.array(ids)))
        next_id += len(keys)
    id_map = pa.concat_tables(id_parts).select(["id", "key", "text_sha256"])
    params, recall, queries = tune_and_measure(index, choice, source, options, sample)
    manifest = new_manifest(source, dim, options, choice, params, recall, queries, int(index.ntotal))
    return write_index(index, id_map, manifest, Path(out_dir), started)


def new_manifest(source: VectorSource, dim: int, options: BuildOptions, choice: IndexChoice, params: dict[str, int],
                 recall: float | None, queries: int, rows: int) -> Manifest:
    """Build seconds and bytes are filled in by `write_index`, once the files exist."""
    meta = source.meta
    return Manifest(MANIFEST_VERSION, meta.model, meta.fingerprint, source.instruction,
                    meta.instructions[source.instruction], meta.template, dim, options.metric, choice.factory, params,
                    source.path, source.format, source.version, meta.key, rows, recall, queries, 0.0, 0,
                    text_column=meta.text)


def count_and_sample(source: VectorSource, options: BuildOptions) -> tuple[int, np.ndarray]:
    """Row count and a uniform reservoir sample for training, in one streaming pass."""
    rng = np.random.default_rng(options.seed)
    want = max(options.train_sample, options.recall_queries)
    sample: np.ndarray | None = None
    seen = 0
    for _, vectors in source.batches():
        if sample is None:
            sample = np.empty((0, vectors.shape[1]), dtype=np.float32)
        if len(sample) < want:
            take = vectors[: want - len(sample)]
            sample = np.concatenate([sample, take])
            rest, base = vectors[len(take):], seen + len(take)
        else:
            rest, base = vectors, seen
        if len(rest):  # reservoir: row i replaces a random slot with probability want / (i + 1)
            slots = rng.integers(0, base + np.arange(1, len(rest) + 1))
            keep = slots < want
            sample[slots[keep]] = rest[keep]
        seen += len(vectors)
    return seen, (sample if sample is not None else np.empty((0, 0), dtype=np.float32))


def with_ids(index, choice: IndexChoice):
    import faiss

    return index if choice.spec.takes_ids else faiss.IndexIDMap2(index)
