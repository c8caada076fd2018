"""Which FAISS index a table gets: exact when small, then HNSW, IVF-Flat, IVF-PQ (as autofaiss does)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from inbedder.errors import IndexBuildError
from inbedder.index.kinds import IndexKind, kind_of_factory, nlist_of


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    kind: str  # flat | hnsw | ivf
    nlist: int = 0

    @property
    def spec(self) -> IndexKind:
        """What this kind of index can do (ids, search knob, updates, shards)."""
        return kind_of_factory(self.factory)


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
    raise IndexBuildError(f"{rows} vectors of dim {dim} do not fit a memory budget of "
                      f"{memory_budget_bytes / 2**20:.0f} MiB even as 8-byte PQ codes: raise the budget")


def forced_choice(factory: str, rows: int) -> IndexChoice:
    return IndexChoice(factory, kind_of_factory(factory).name, nlist_of(factory))
