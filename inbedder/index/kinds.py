"""What the index stages need to know about each kind of FAISS index, in one place per kind.

A kind says how its factory string reads, whether it takes row ids itself or needs
an id map around it, which search parameter trades speed for recall (and the grid
`tune` walks), whether it can drop vectors (an update) and whether its shards can
be filled apart (a shared trained quantizer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class IndexKind:
    name: str  # flat | hnsw | ivf
    takes_ids: bool  # add_with_ids on the index itself (IVF); the others are wrapped in an IndexIDMap2
    search_param: str | None  # the one knob `tune` sets (None: exact, nothing to tune)
    grid: Callable[[int], tuple[int, ...]]  # the knob's values to try, given nlist
    updatable: bool  # can drop vectors in place (HNSW graphs can't: an update rebuilds)
    shardable: bool  # shards can be filled apart from one trained quantizer (Spark)

    def search_grid(self, nlist: int = 0) -> list[dict[str, int]]:
        return [{self.search_param: v} for v in self.grid(nlist)] if self.search_param else []


FLAT = IndexKind("flat", takes_ids=False, search_param=None, grid=lambda nlist: (), updatable=True, shardable=False)
HNSW = IndexKind("hnsw", takes_ids=False, search_param="efSearch", grid=lambda nlist: (16, 32, 64, 128, 256, 512),
                 updatable=False, shardable=False)
IVF = IndexKind("ivf", takes_ids=True, search_param="nprobe",
                grid=lambda nlist: tuple(p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256) if p <= nlist),
                updatable=True, shardable=True)
KINDS = {k.name: k for k in (FLAT, HNSW, IVF)}


def kind_of_factory(factory: str) -> IndexKind:
    """The kind a FAISS factory string builds ("Flat", "HNSW32,Flat", "IVF1024,PQ32", ...)."""
    if factory.startswith("IVF"):
        return IVF
    return HNSW if factory.startswith("HNSW") else FLAT


def nlist_of(factory: str) -> int:
    return int(factory[3:].split(",")[0]) if kind_of_factory(factory) is IVF else 0


def set_search_params(index, params: dict[str, int]) -> None:
    """Set the tuned knob on an index (through its id map, when it has one)."""
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if IVF.search_param in params:
        faiss.extract_index_ivf(inner).nprobe = params[IVF.search_param]
    if HNSW.search_param in params:
        faiss.downcast_index(inner).hnsw.efSearch = params[HNSW.search_param]
