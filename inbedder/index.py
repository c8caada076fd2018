"""One FAISS index per instruction column: chosen by size and memory, tuned to a recall target, measured.

In the spirit of autofaiss: a small table gets exact search; larger ones get
HNSW, IVF-Flat or IVF-PQ as size grows against a memory budget. The index is
written with an id map (position id -> key, text hash) and a manifest that says
what was built from which table version, with the recall measured against
exact search. Nothing here is pickled.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from inbedder import tables
from inbedder.tables import KEY_HASH, OutputMeta, TableError, embedding_column

INDEX_FILE, IDS_FILE, MANIFEST_FILE = "index.faiss", "ids.parquet", "manifest.json"
MANIFEST_VERSION = 1
METRICS = ("cosine", "inner_product", "l2")


class IndexError_(TableError):
    """An index can't be built, updated or loaded; the message says why."""


@dataclass
class Manifest:
    manifest_version: int
    model: str
    fingerprint: str
    instruction: str
    instruction_text: str
    template: str
    dim: int
    metric: str
    factory: str
    search_params: dict[str, int]
    source: str
    source_format: str
    source_version: int | None
    key: str
    rows: int
    recall_at_10: float | None
    recall_queries: int
    build_seconds: float
    index_bytes: int
    built_at: float = field(default_factory=time.time)

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            raise IndexError_(f"{folder} has no {MANIFEST_FILE}: not an inbedder index (or a half-copied one)")
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise IndexError_(f"{path} is corrupt: {exc}") from exc


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    kind: str  # flat | hnsw | ivf
    nlist: int = 0


def choose_index(rows: int, dim: int, memory_budget_bytes: int) -> IndexChoice:
    """Exact when small; HNSW, then IVF-Flat, then IVF-PQ as rows grow or memory runs short."""
    raw = rows * dim * 4
    nlist = int(2 ** round(math.log2(max(16, 4 * math.sqrt(max(rows, 1))))))
    if rows <= 50_000 and raw <= memory_budget_bytes:
        return IndexChoice("Flat", "flat")
    if rows <= 500_000 and raw + rows * 32 * 2 * 4 * 1.2 <= memory_budget_bytes:
        return IndexChoice("HNSW32,Flat", "hnsw")
    if raw * 1.05 <= memory_budget_bytes:
        return IndexChoice(f"IVF{nlist},Flat", "ivf", nlist)
    # product quantisation: the largest code that fits, dim split into sub-vectors of >= 4 dims
    for m in sorted((m for m in range(8, dim // 4 + 1) if dim % m == 0), reverse=True):
        if rows * (m + 8) * 1.1 <= memory_budget_bytes:
            return IndexChoice(f"IVF{nlist},PQ{m}", "ivf", nlist)
    raise IndexError_(f"{rows} vectors of dim {dim} do not fit a memory budget of "
                      f"{memory_budget_bytes / 2**20:.0f} MiB even as 8-byte PQ codes: raise the budget")


# --- streaming the vectors ------------------------------------------------------------

@dataclass
class VectorSource:
    """An instruction column of an output table, read batch by batch (never whole)."""

    path: str
    format: str
    version: int | None
    meta: OutputMeta
    instruction: str

    @classmethod
    def open(cls, path: str, instruction: str) -> VectorSource:
        fmt = "delta" if tables.is_delta_table(path) else "parquet"
        if not tables.is_remote(path) and not Path(path).exists():
            raise IndexError_(f"table {path} does not exist")
        existing = tables.existing_output(path, fmt)
        if existing is None or existing.meta is None:
            raise IndexError_(f"{path} is not an inbedder output table (no inbedder metadata)")
        if instruction not in existing.meta.instructions or embedding_column(instruction) not in existing.schema.names:
            raise IndexError_(f"instruction {instruction!r} was never embedded in {path}; it has: "
                              f"{', '.join(sorted(existing.meta.instructions)) or 'none'}")
        return cls(path, fmt, existing.version, existing.meta, instruction)

    def dataset(self) -> ds.Dataset:
        if self.format == "delta":
            from deltalake import DeltaTable

            return DeltaTable(self.path, version=self.version).to_pyarrow_dataset()
        return ds.dataset(self.path, format="parquet")

    def batches(self, batch_rows: int = 65_536) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(key + hash columns, float32 vectors) for rows that have a vector."""
        column = embedding_column(self.instruction)
        scanner = self.dataset().scanner(columns=[self.meta.key, KEY_HASH, column],
                                         filter=pc.field(column).is_valid(), batch_size=batch_rows)
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            vectors = batch.column(column).flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            yield pa.table({"key": batch.column(self.meta.key), "text_sha256": batch.column(KEY_HASH)}), \
                vectors.reshape(batch.num_rows, -1)


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        faiss.normalize_L2(vectors)
    return vectors


def faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


# --- building ---------------------------------------------------------------------------

@dataclass
class BuildOptions:
    metric: str = "cosine"
    memory_budget_bytes: int = 8 * 2**30
    recall_target: float = 0.95
    recall_queries: int = 1000
    train_sample: int = 100_000
    threads: int | None = None
    seed: int = 0
    factory: str | None = None  # force a FAISS factory string instead of choosing by size


def build_index(table: str, instruction: str, out_dir: str | Path, options: BuildOptions | None = None) -> Manifest:
    """Build (or rebuild) the index of one instruction column into out_dir, atomically."""
    return build_index_from(VectorSource.open(table, instruction), out_dir, options)


def build_index_from(source: VectorSource, out_dir: str | Path, options: BuildOptions | None = None) -> Manifest:
    """Build from any source with `batches()` and `meta` (a table column, or arrays in a benchmark)."""
    import faiss

    options = options or BuildOptions()
    if options.metric not in METRICS:
        raise IndexError_(f"metric must be one of {', '.join(METRICS)}, got {options.metric!r}")
    if options.threads:
        faiss.omp_set_num_threads(options.threads)
    started = time.perf_counter()
    table, instruction = source.path, source.instruction
    rows, sample = _count_and_sample(source, options)
    if rows == 0:
        raise IndexError_(f"{table} has no vectors for instruction {instruction!r} (empty table or every row failed)")
    dim = sample.shape[1]
    if dim != source.meta.dim:
        raise IndexError_(f"vectors in {table} have dim {dim} but the table records dim {source.meta.dim}")
    choice = _forced(options.factory, rows) if options.factory else choose_index(rows, dim, options.memory_budget_bytes)
    index = faiss.index_factory(dim, choice.factory, faiss_metric(options.metric))
    if not index.is_trained:
        index.train(prepare(sample, options.metric))
    index = _with_ids(index, choice)
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
    return _write(index, id_map, manifest, Path(out_dir), started)


def new_manifest(source: VectorSource, dim: int, options: BuildOptions, choice: IndexChoice, params: dict[str, int],
                 recall: float | None, queries: int, rows: int) -> Manifest:
    """Build seconds and bytes are filled in by `_write`, once the files exist."""
    meta = source.meta
    return Manifest(MANIFEST_VERSION, meta.model, meta.fingerprint, source.instruction,
                    meta.instructions[source.instruction], meta.template, dim, options.metric, choice.factory, params,
                    source.path, source.format, source.version, meta.key, rows, recall, queries, 0.0, 0)


def _count_and_sample(source: VectorSource, options: BuildOptions) -> tuple[int, np.ndarray]:
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


def _forced(factory: str, rows: int) -> IndexChoice:
    if factory.startswith("IVF"):
        return IndexChoice(factory, "ivf", int(factory[3:].split(",")[0]))
    return IndexChoice(factory, "hnsw" if factory.startswith("HNSW") else "flat")


def _with_ids(index, choice: IndexChoice):
    import faiss

    return index if choice.kind == "ivf" else faiss.IndexIDMap2(index)


def set_search_params(index, params: dict[str, int]) -> None:
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if "nprobe" in params:
        faiss.extract_index_ivf(inner).nprobe = params["nprobe"]
    if "efSearch" in params:
        faiss.downcast_index(inner).hnsw.efSearch = params["efSearch"]


def exact_neighbours(source: VectorSource, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Exact top-k positions for the queries, streaming the table (positions = order of `batches`)."""
    import faiss

    heap = faiss.ResultHeap(len(queries), k, keep_max=metric != "l2")
    offset = 0
    for _, vectors in source.batches():
        flat = faiss.IndexFlat(queries.shape[1], faiss_metric(metric))
        flat.add(prepare(vectors, metric))
        d, i = flat.search(queries, min(k, len(vectors)))
        if i.shape[1] < k:
            pad = k - i.shape[1]
            d = np.pad(d, ((0, 0), (0, pad)), constant_values=-np.inf if metric != "l2" else np.inf)
            i = np.pad(i, ((0, 0), (0, pad)), constant_values=-1)
        heap.add_result(d, np.where(i >= 0, i + offset, -1))
        offset += len(vectors)
    heap.finalize()
    return heap.I


def recall_at(found: np.ndarray, truth: np.ndarray, self_ids: np.ndarray, k: int = 10) -> float:
    """Share of the true k nearest neighbours (the query's own row excluded) that were found."""
    hits = total = 0
    for f, t, me in zip(found, truth, self_ids):
        t = [x for x in t if x != me and x >= 0][:k]
        f = set(x for x in f if x != me and x >= 0)
        hits += sum(1 for x in t if x in f)
        total += len(t)
    return hits / total if total else 1.0


def tune_and_measure(index, choice: IndexChoice, source: VectorSource, options: BuildOptions,
                     sample: np.ndarray, id_of_position: np.ndarray | None = None
                     ) -> tuple[dict[str, int], float | None, int]:
    """Smallest search effort that reaches the recall target on sampled rows, and the recall it gets."""
    k = 10
    n_queries = min(options.recall_queries, index.ntotal)
    rng = np.random.default_rng(options.seed + 1)
    positions = np.sort(rng.choice(index.ntotal, size=n_queries, replace=False))
    queries = _rows_at(source, positions, options.metric)
    truth = exact_neighbours(source, queries, k + 1, options.metric)
    if id_of_position is not None:  # ids assigned elsewhere (Spark shards): compare in id space
        truth = np.where(truth >= 0, id_of_position[np.clip(truth, 0, None)], -1)
        positions = id_of_position[positions]
    if choice.kind == "flat":
        return {}, 1.0, n_queries
    grid = ([{"efSearch": e} for e in (16, 32, 64, 128, 256, 512)] if choice.kind == "hnsw"
            else [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32, 64, 128, 256) if p <= choice.nlist])
    best, best_recall = grid[-1], 0.0
    for params in grid:
        set_search_params(index, params)
        _, found = index.search(queries, k + 1)
        recall = recall_at(found, truth, positions, k)
        best, best_recall = params, recall
        if recall >= options.recall_target:
            break
    set_search_params(index, best)
    return best, best_recall, n_queries


def _rows_at(source: VectorSource, positions: np.ndarray, metric: str) -> np.ndarray:
    out, offset, j = [], 0, 0
    for _, vectors in source.batches():
        while j < len(positions) and positions[j] < offset + len(vectors):
            out.append(vectors[positions[j] - offset])
            j += 1
        offset += len(vectors)
    return prepare(np.stack(out), metric)


def _write(index, id_map: pa.Table, manifest: Manifest, out_dir: Path, started: float) -> Manifest:
    """Write into a sibling staging folder, then swap it in: a reader never sees half an index."""
    import faiss

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        faiss.write_index(index, str(staging / INDEX_FILE))
        pq.write_table(id_map, staging / IDS_FILE)
        manifest.index_bytes = (staging / INDEX_FILE).stat().st_size
        manifest.build_seconds = time.perf_counter() - started
        manifest.write(staging)
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if out_dir.exists():
            os.rename(out_dir, old)
        os.rename(staging, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def load_index(folder: str | Path) -> tuple[object, pa.Table, Manifest]:
    """Index, id map and manifest, checked against each other."""
    import faiss

    folder = Path(folder)
    manifest = Manifest.read(folder)
    for name in (INDEX_FILE, IDS_FILE):
        if not (folder / name).is_file():
            raise IndexError_(f"{folder} is missing {name}: rebuild the index")
    try:
        index = faiss.read_index(str(folder / INDEX_FILE))
    except RuntimeError as exc:
        raise IndexError_(f"{folder / INDEX_FILE} is corrupt or not a FAISS index: {str(exc).splitlines()[0]}") from exc
    try:
        id_map = pq.read_table(folder / IDS_FILE)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IndexError_(f"{folder / IDS_FILE} is corrupt: {exc}") from exc
    if index.d != manifest.dim:
        raise IndexError_(f"index in {folder} has dim {index.d} but its manifest says {manifest.dim}")
    if index.ntotal != manifest.rows or id_map.num_rows != manifest.rows:
        raise IndexError_(f"index in {folder} holds {index.ntotal} vectors and {id_map.num_rows} ids but its "
                          f"manifest says {manifest.rows}: the files are from different builds, rebuild")
    set_search_params(index, manifest.search_params)
    return index, id_map, manifest


def _key_and_hash(table: pa.Table) -> pa.Array:
    """One "key|text hash" string per row: a row is unchanged only if both match."""
    return pc.binary_join_element_wise(table.column("key").cast(pa.string()), table.column("text_sha256"), "|")


def update_index(table: str, out_dir: str | Path, options: BuildOptions | None = None) -> tuple[Manifest, dict]:
    """Bring an index to the table's current version: add new rows, drop removed or changed ones.

    HNSW graphs can't drop vectors, so those indexes are rebuilt. Returns the manifest and counts.
    """
    options = options or BuildOptions()
    started = time.perf_counter()
    index, id_map, manifest = load_index(out_dir)
    source = VectorSource.open(table, manifest.instruction)
    if source.meta.fingerprint != manifest.fingerprint:
        raise IndexError_(f"{table} now holds vectors from another model ({source.meta.fingerprint}) than the "
                          f"index ({manifest.fingerprint}): build a new index")
    if source.version is not None and source.version == manifest.source_version:
        return manifest, {"added": 0, "removed": 0, "rebuilt": False}
    if "HNSW" in manifest.factory or source.meta.instructions[manifest.instruction] != manifest.instruction_text:
        options.metric = manifest.metric
        return build_index(table, manifest.instruction, out_dir, options), {"rebuilt": True}
    empty = pa.table({"key": pa.array([], id_map.column("key").type), "text_sha256": pa.array([], pa.string())})
    current = pa.concat_tables([keys for keys, _ in source.batches()] or [empty])
    joined_old = _key_and_hash(id_map)
    joined_new = _key_and_hash(current)
    removed = id_map.filter(pc.invert(pc.is_in(joined_old, value_set=joined_new)))
    if removed.num_rows:
        index.remove_ids(np.ascontiguousarray(removed.column("id").to_numpy(), dtype=np.int64))
    keep = id_map.filter(pc.is_in(joined_old, value_set=joined_new))
    wanted = set(pc.filter(joined_new, pc.invert(pc.is_in(joined_new, value_set=joined_old))).to_pylist())
    next_id = int(pc.max(id_map.column("id")).as_py() or -1) + 1 if id_map.num_rows else 0
    parts = [keep]
    for keys, vectors in source.batches():
        tags = pc.binary_join_element_wise(keys.column("key").cast(pa.string()), keys.column("text_sha256"), "|")
        mask = np.array([t in wanted for t in tags.to_pylist()], dtype=bool)
        if mask.any():
            ids = np.arange(next_id, next_id + int(mask.sum()), dtype=np.int64)
            index.add_with_ids(prepare(vectors[mask], manifest.metric), ids)
            added = keys.filter(pa.array(mask)).append_column("id", pa.array(ids))
            parts.append(added.select(["id", "key", "text_sha256"]))
            next_id += len(ids)
    new_map = pa.concat_tables([p.select(["id", "key", "text_sha256"]) for p in parts])
    added = new_map.num_rows - keep.num_rows
    manifest.source_version, manifest.rows = source.version, int(index.ntotal)
    manifest.built_at = time.time()
    _write(index, new_map, manifest, Path(out_dir), started)
    return manifest, {"added": added, "removed": removed.num_rows, "rebuilt": False}


def build_or_update(table: str, out_dir: str | Path, names: list[str] | None = None,
                    options: BuildOptions | None = None, rebuild: bool = False) -> dict[str, tuple[Manifest, dict]]:
    """One index per instruction under out_dir/NAME: updated where one exists, built otherwise."""
    fmt = "delta" if tables.is_delta_table(table) else "parquet"
    existing = tables.existing_output(table, fmt) if tables.is_remote(table) or Path(table).exists() else None
    if existing is None or existing.meta is None:
        raise IndexError_(f"{table} is not an inbedder output table")
    results = {}
    for name in names or sorted(existing.meta.instructions):
        folder = Path(out_dir) / name
        opts = BuildOptions(**asdict(options)) if options else BuildOptions()
        if (folder / MANIFEST_FILE).exists() and not rebuild:
            results[name] = update_index(table, folder, opts)
        else:
            results[name] = (build_index(table, name, folder, opts), {"rebuilt": True})
    return results
