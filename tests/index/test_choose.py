"""Which index a table gets, by rows and memory budget."""

from __future__ import annotations

import pytest

from inbedder.index import IndexBuildError, choose_index


def test_memory_budget_picks_the_index_type():

    assert choose_index(1_000, 576, 2**30).factory == "Flat"
    assert choose_index(200_000, 576, 2**31).kind == "hnsw"
    assert choose_index(1_000_000, 576, 8 * 2**30).factory.endswith(",Flat")
    assert ",PQ" in choose_index(1_000_000, 576, 256 * 2**20).factory
    with pytest.raises(IndexBuildError, match="do not fit"):
        choose_index(10**9, 576, 2**20)
