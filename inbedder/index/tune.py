"""The smallest search effort that reaches the recall target, measured against exact search."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inbedder.index.kinds import set_search_params
from inbedder.index.vectors import faiss_metric, prepare
from inbedder.lake import VectorSource

if TYPE_CHECKING:
    from inbedder.index.build import BuildOptions
    from inbedder.index.choose import IndexChoice


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
    grid = choice.spec.search_grid(choice.nlist)
    if not grid:  # exact search
        return {}, 1.0, n_queries
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
