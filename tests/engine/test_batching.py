from __future__ import annotations

import numpy as np
import pytest

from inbedder.engine.batching import padding_share, plan_batches


def test_batches_cover_every_row_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=500).tolist()
    batches = plan_batches(lengths, token_budget=1000)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 1000
    assert lengths[batches[0][0]] == max(lengths)  # longest first
    assert padding_share(lengths, batches) < 0.05


def test_row_longer_than_budget_gets_its_own_batch():
    batches = plan_batches([5000, 3, 3], token_budget=100)
    assert [b.tolist() for b in batches] == [[0], [1, 2]]


def test_padding_share_counts_padding():
    assert padding_share([2, 4], [np.array([0, 1])]) == pytest.approx(0.25)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="token_budget"):
        plan_batches([1], token_budget=0)
