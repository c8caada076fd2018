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


def test_each_kind_of_index_says_what_it_can_do_in_one_place():
    from inbedder.index.choose import forced_choice
    from inbedder.index.kinds import FLAT, HNSW, IVF, kind_of_factory

    assert kind_of_factory("Flat") is FLAT and kind_of_factory("HNSW32,Flat") is HNSW
    ivf = forced_choice("IVF256,PQ16", rows=10_000)
    assert ivf.spec is IVF and ivf.nlist == 256 and ivf.kind == "ivf"
    assert ivf.spec.search_grid(ivf.nlist)[-1] == {"nprobe": 256} and len(ivf.spec.search_grid(4)) == 3
    assert HNSW.search_grid()[0] == {"efSearch": 16} and FLAT.search_grid() == []
    assert not HNSW.updatable and IVF.updatable and IVF.shardable and not HNSW.shardable
    assert IVF.takes_ids and not FLAT.takes_ids
