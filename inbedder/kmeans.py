"""k-means on vectors (FAISS), shared by `inbedder cluster` and the evaluation harness."""

from __future__ import annotations

import numpy as np

from inbedder.errors import ClusterError


def kmeans(vectors: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroids, label per row, squared distance to its centroid)."""
    import faiss

    if not 2 <= k <= len(vectors):
        raise ClusterError(f"k must be between 2 and the number of rows with vectors ({len(vectors)}), got {k}")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=25, nredo=3, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(x)
    distances, labels = km.index.search(x, 1)
    return km.centroids, labels[:, 0].astype(np.int32), distances[:, 0]
