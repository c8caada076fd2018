"""Vectors as FAISS wants them: float32, contiguous, normalised for cosine."""

from __future__ import annotations

import numpy as np


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        faiss.normalize_L2(vectors)
    return vectors


def faiss_metric(metric: str) -> int:
    import faiss

    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
