"""k-means, shared by `inbedder cluster` and the evaluation harness."""

from __future__ import annotations

import numpy as np
import pytest

from inbedder.errors import ClusterError
from inbedder.kmeans import kmeans


def test_kmeans_separates_blobs_and_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(c, 0.05, (40, 8)) for c in (-1.0, 0.0, 1.0)]).astype(np.float32)
    centroids, labels, distances = kmeans(blobs, 3, seed=1)
    assert centroids.shape == (3, 8) and labels.shape == (120,) and distances.shape == (120,)
    assert all(len(set(labels[i * 40:(i + 1) * 40].tolist())) == 1 for i in range(3))
    assert len(set(labels.tolist())) == 3 and float(distances.max()) < 0.2
    assert np.array_equal(kmeans(blobs, 3, seed=1)[1], labels)


def test_kmeans_names_an_impossible_k():
    with pytest.raises(ClusterError, match="k must be between 2 and the number of rows"):
        kmeans(np.zeros((3, 4), np.float32), 5)
