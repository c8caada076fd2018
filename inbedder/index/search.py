"""Query an instruction-specific index: embed with the manifest's model and question, search, return rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inbedder.errors import IndexBuildError
from inbedder.index.store import load_index
from inbedder.index.vectors import prepare
from inbedder.lake import open_dataset, require_same_model, rows_by_key

if TYPE_CHECKING:
    from inbedder.engine import InBedder


@dataclass
class Hit:
    key: object
    score: float
    row: dict | None = None


class Searcher:
    """One loaded model and index, reused across queries."""

    def __init__(self, index_dir: str | Path, model: InBedder | None = None, *, model_name: str | None = None,
                 adapter: str | None = None):
        self.index, self.id_map, self.manifest = load_index(index_dir)
        self._keys = self.id_map.column("key")
        self._position = {int(i): p for p, i in enumerate(self.id_map.column("id").to_numpy())}
        if model is None:
            from inbedder.engine import InBedder

            model = InBedder.from_pretrained(model_name, adapter=adapter)
        require_same_model(f"index {index_dir}", (self.manifest.model, self.manifest.fingerprint),
                           (model.model_name, model.fingerprint),
                           "Load the model (and --adapter) the index's manifest names.", IndexBuildError)
        if model.dim != self.manifest.dim:
            raise IndexBuildError(f"model dim {model.dim} != index dim {self.manifest.dim}")
        self.model = model

    def search(self, queries: Sequence[str], k: int = 10, table: str | None = None) -> list[list[Hit]]:
        vectors = self.model.encode(list(queries), self.manifest.instruction_text)
        return self.search_vectors(np.asarray(vectors), k, table)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, table: str | None = None) -> list[list[Hit]]:
        if vectors.ndim != 2 or vectors.shape[1] != self.manifest.dim:
            raise IndexBuildError(f"query vectors have shape {vectors.shape}; the index needs (n, {self.manifest.dim})")
        scores, ids = self.index.search(prepare(vectors, self.manifest.metric), k)
        hits = [[Hit(self._keys[self._position[int(i)]].as_py(), float(s)) for s, i in zip(srow, irow) if i >= 0]
                for srow, irow in zip(scores, ids)]
        if table is not None:
            self._attach_rows(hits, table)
        return hits

    def _attach_rows(self, hits: list[list[Hit]], table: str) -> None:
        by_key = rows_by_key(open_dataset(table), self.manifest.key, [h.key for row in hits for h in row])
        for row in hits:
            for h in row:
                h.row = by_key.get(h.key)

