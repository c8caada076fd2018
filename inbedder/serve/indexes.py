"""The served indexes: each loaded once, rows read by key from its pinned table version, swapped when rebuilt."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc

from inbedder.index import Searcher
from inbedder.index.manifest import MANIFEST_FILE, Manifest
from inbedder.lake import (answer_column, cluster_column, embedded_text_column, embedding_column, open_dataset,
                           rows_by_key)
from inbedder.serve.settings import ServeError

if TYPE_CHECKING:
    from inbedder.engine import InBedder
    from inbedder.index import Hit

log = logging.getLogger(__name__)


@dataclass
class ServedIndex:
    """One index as loaded: a request holds this object, so a swap never changes it mid-request."""

    folder: Path
    searcher: Searcher
    manifest_text: str
    clusters: dict | None = None
    loaded_at: float = field(default_factory=time.time)
    _map: dict | None = None
    _dataset: object | None = None

    def dataset(self):
        """The indexed table version: a Delta version is opened once (it never changes under the index); a
        Parquet output, rewritten whole by each run, is opened per call."""
        if self.manifest.source_version is None:
            return open_dataset(self.manifest.source)
        if self._dataset is None:
            self._dataset = open_dataset(self.manifest.source, self.manifest.source_version)
        return self._dataset

    @property
    def manifest(self) -> Manifest:
        return self.searcher.manifest

    def describe(self) -> dict:
        m = self.manifest
        return {"question": m.instruction, "question_text": m.instruction_text, "rows": m.rows,
                "index_type": m.factory, "recall_at_10": m.recall_at_10, "table": Path(m.source).name,
                "table_version": m.source_version, "fingerprint": m.fingerprint, "model": m.model,
                "text_column": self.text_column, "has_clusters": self.clusters is not None}

    @property
    def text_column(self) -> str:
        """The row column holding the indexed text."""
        return embedded_text_column(self.manifest.text_column)

    def with_rows(self, hits: list[list[Hit]]) -> list[list[dict]]:
        """Hits per query text as the API returns them, with their rows read in one scan."""
        rows = self.rows([h.key for row in hits for h in row])
        answers = answer_column(self.manifest.instruction)  # the model's short answer, when the job stored it
        return [[{"key": h.key, "score": h.score, "row": rows.get(h.key)}
                 | ({"answer": rows[h.key].get(answers)} if answers in rows.get(h.key, {}) else {}) for h in row]
                for row in hits]

    def rows(self, keys: list) -> dict:
        return rows_by_key(self.dataset(), self.manifest.key, keys)

    def cluster_map(self, points: int) -> dict:
        """A 2-D PCA map of (a sample of) the indexed vectors, coloured by the table's cluster column if any."""
        if self._map is not None:
            return self._map
        m = self.manifest
        dataset = self.dataset()
        label = cluster_column(m.instruction)
        columns = [m.key, embedding_column(m.instruction)] + ([label] if label in dataset.schema.names else [])
        table = dataset.to_table(columns=columns, filter=pc.field(embedding_column(m.instruction)).is_valid())
        if table.num_rows > points:
            table = table.take(np.sort(np.random.default_rng(0).choice(table.num_rows, points, replace=False)))
        vectors = np.array(table.column(embedding_column(m.instruction)).to_pylist(), dtype=np.float32)
        xy = np.zeros((len(vectors), 2), np.float32)
        if len(vectors) >= 2:
            centred = vectors - vectors.mean(0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            xy = centred @ vt[:2].T
        labels = table.column(label).to_pylist() if label in table.column_names else [None] * len(xy)
        self._map = {"points": [[float(x), float(y), c, str(k)] for (x, y), c, k
                                in zip(xy, labels, table.column(m.key).to_pylist())]}
        return self._map


def check_index_folder(folder: str | Path) -> None:
    """Refuse a folder that is not an index before anything is loaded (the model takes seconds)."""
    if not (Path(folder) / MANIFEST_FILE).is_file():
        raise ServeError(f"{Path(folder) / MANIFEST_FILE} not found: --index must be an `inbedder index` output "
                         "folder")


def load_served(folder: str | Path, engine: InBedder, clusters: dict[str, dict]) -> ServedIndex:
    folder = Path(folder)
    check_index_folder(folder)
    text = (folder / MANIFEST_FILE).read_text()
    searcher = Searcher(folder, engine)
    return ServedIndex(folder, searcher, text, clusters.get(searcher.manifest.instruction))


def read_clusters(folders: tuple[str, ...]) -> dict[str, dict]:
    """`inbedder cluster` reports by question name."""
    found = {}
    for folder in folders:
        path = Path(folder) / "clusters.json"
        if not path.is_file():
            raise ServeError(f"{path} not found: --clusters must be an `inbedder cluster` report folder")
        try:
            report = json.loads(path.read_text())
        except ValueError as exc:
            raise ServeError(f"{path} is not valid JSON: {exc}") from None
        found[report["instruction"]] = report
    return found


class IndexSet:
    """The served indexes by question name. `current()` is one dict read (atomic); a rebuilt index (its manifest
    changed) is loaded aside and swapped in by replacing the dict, so requests in flight finish on the old one."""

    def __init__(self, folders: tuple[str, ...], engine: InBedder, clusters: dict[str, dict] | None = None):
        self.folders, self.engine, self.clusters = folders, engine, clusters or {}
        loaded = [load_served(f, engine, self.clusters) for f in folders]
        names = [s.manifest.instruction for s in loaded]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ServeError(f"two indexes answer the question name(s) {', '.join(dupes)}: serve one of each")
        self._by_name = {s.manifest.instruction: s for s in loaded}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps = 0

    def current(self) -> dict[str, ServedIndex]:
        return self._by_name

    def reload_changed(self) -> list[str]:
        """Swap in every index whose manifest changed on disk; a half-written rebuild is retried next time."""
        swapped = []
        for name, served in list(self._by_name.items()):
            path = served.folder / MANIFEST_FILE
            try:
                text = path.read_text()
                if text == served.manifest_text:
                    continue
                fresh = load_served(served.folder, self.engine, self.clusters)
            except Exception as exc:  # noqa: BLE001 - a rebuild in progress: keep serving the old one
                log.warning("index %s changed but could not be loaded yet (%s); still serving the old one",
                            served.folder, exc)
                continue
            self._by_name = {**self._by_name, name: fresh}
            self.swaps += 1
            swapped.append(name)
            log.info("index %s: swapped to table version %s", name, fresh.manifest.source_version)
        return swapped

    def watch(self, every_s: float) -> None:
        def loop():
            while not self._stop.wait(every_s):
                self.reload_changed()

        self._thread = threading.Thread(target=loop, name="inbedder-index-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
