"""What an index folder holds and was built from: written last, read first."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inbedder.errors import IndexBuildError


INDEX_FILE, IDS_FILE, MANIFEST_FILE = "index.faiss", "ids.parquet", "manifest.json"


MANIFEST_VERSION = 1


METRICS = ("cosine", "inner_product", "l2")
# the index settings' defaults, declared once (CLI, job YAML, spark-submit, Airflow and the library read these)
DEFAULT_METRIC = "cosine"
DEFAULT_MEMORY_BUDGET_GB = 8.0
DEFAULT_RECALL_TARGET = 0.95


@dataclass
class Manifest:
    manifest_version: int
    model: str
    fingerprint: str
    instruction: str
    instruction_text: str
    template: str
    dim: int
    metric: str
    factory: str
    search_params: dict[str, int]
    source: str
    source_format: str
    source_version: int | None
    key: str
    rows: int
    recall_at_10: float | None
    recall_queries: int
    build_seconds: float
    index_bytes: int
    built_at: float = field(default_factory=time.time)
    text_column: str = ""  # the source's embedded text column ("" for tables that do not record it)

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            raise IndexBuildError(f"{folder} has no {MANIFEST_FILE}: not an inbedder index (or a half-copied one)")
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise IndexBuildError(f"{path} is corrupt: {exc}") from exc
