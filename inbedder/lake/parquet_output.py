"""A plain Parquet output: no log to commit to, so each run rewrites it whole beside the old one and swaps.

Readers see the old dataset or the new one (or, for an instant, none), never a
mix. The waves are held until `complete`, which keeps the old rows that were not
re-embedded, adds the run's rows and drops the keys that left the source."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from inbedder.errors import TableError
from inbedder.fs import replace_folder
from inbedder.lake.columns import KEY_HASH, META_KEY, clusters_made_stale_by
from inbedder.lake.freshness import SourceState
from inbedder.lake.meta import ExistingOutput, OutputMeta
from inbedder.lake.output import Completion, OutputTable, StateFiles, WaveId, WaveWrite, Written, register_format


@register_format
class ParquetOutput(OutputTable):
    format = "parquet"

    def __init__(self, path: str, key: str, target_file_bytes: int | None = None):
        super().__init__(path, key, target_file_bytes)
        self._parts: list[pa.Table] = []

    @classmethod
    def read_existing_at(cls, path: str) -> ExistingOutput | None:
        if not Path(path).exists():
            return None
        files = cls.files_at(path)
        if not files:
            raise TableError(f"output {path} exists but holds no Parquet files: refusing to write into it")
        schema = pq.read_schema(files[0])
        raw = (schema.metadata or {}).get(META_KEY.encode())
        meta = OutputMeta(**json.loads(raw)) if raw else OutputMeta.from_fields(schema)
        return ExistingOutput("parquet", None, meta, schema)

    @classmethod
    def files_at(cls, path: str) -> list[str]:
        return list(ds.dataset(path, format="parquet").files)

    @property
    def version(self) -> int | None:
        return None

    def unchanged_state(self, digest: str) -> SourceState | None:
        return None  # no log to keep the record in: a re-run plans

    def clear_columns(self, columns: list[str]) -> None:
        """Nothing to do before the run: the rewrite replaces every vector of a changed question."""

    def state_files(self, usable: list[str]) -> StateFiles | None:
        """Read by the vectors: a rewrite carries old rows without status bits."""
        files = self.files() if self.existing is not None else []
        return StateFiles((), tuple(files), frozenset(), None) if files else None

    def write(self, wave: WaveId, rows: WaveWrite, meta: OutputMeta) -> Written:
        self._parts.append(rows.rows.table())  # held in memory until the rewrite
        self._wave_done(wave)
        return Written(None, "buffered")

    def complete(self, done: Completion) -> int:
        """Old rows that were not re-embedded, plus this run's rows, minus keys gone from the source."""
        try:
            return self._rewrite(self._parts, done.source_keys(), done.meta)
        finally:
            self._parts = []
            self._release()

    def _rewrite(self, parts: list[pa.Table], source_keys: pa.Array, meta: OutputMeta) -> int:
        key, existing = self.key, self.existing
        new = pa.concat_tables(parts, promote_options="permissive") if parts else None
        previous = ds.dataset(self.path, format="parquet").to_table() if existing is not None else None
        old = previous
        deleted = 0
        if old is not None:
            keep = pc.is_in(old.column(key), value_set=source_keys)
            deleted = len(old) - pc.sum(keep).as_py()
            old = old.filter(keep)
            if new is not None:
                old = old.filter(pc.invert(pc.is_in(old.column(key), value_set=new.column(key))))
                replaced_cols = [c for c in new.column_names if c != key]
                stale = set(clusters_made_stale_by(replaced_cols))
                carry = [c for c in old.column_names if (c not in replaced_cols or c == key) and c not in stale]
                # rows re-embedded for some instructions keep their other vectors
                new = _fill_from(new, previous, key, carry)
        if new is None and old is None:
            return 0
        combined = pa.concat_tables([t for t in (old, new) if t is not None], promote_options="permissive")
        if new is None and deleted == 0 and existing is not None and existing.meta == meta:
            return 0
        write_parquet_output(self.path, [combined], meta, combined.schema)
        return deleted

    def write_cluster_labels(self, keys: pa.Array, hashes: pa.Array, column: str, labels: pa.Array,
                             operation: str) -> None:
        """The whole output rewritten with the label column (no log: no per-key update)."""
        if self.existing is None or self.existing.meta is None:
            raise TableError(f"{self.path} is not an inbedder output table")
        current = ds.dataset(self.path, format="parquet").to_table()
        by_key = dict(zip(keys.cast(pa.string()).to_pylist(), zip(hashes.to_pylist(), labels.to_pylist())))
        values = []
        for k, h in zip(current.column(self.key).cast(pa.string()).to_pylist(),
                        current.column(KEY_HASH).to_pylist()):
            hit = by_key.get(k)
            values.append(hit[1] if hit is not None and hit[0] == h else None)
        if column in current.column_names:
            current = current.drop_columns([column])
        current = current.append_column(column, pa.array(values, pa.int32()))
        write_parquet_output(self.path, [current], self.existing.meta, current.schema)


def _fill_from(new: pa.Table, old: pa.Table, key: str, carry: list[str]) -> pa.Table:
    """Columns the new rows lack, taken from the same keys' old rows (vectors of other instructions)."""
    missing = [c for c in carry if c not in new.column_names]
    if not missing:
        return new
    return new.join(old.select([key, *missing]), key, join_type="left outer")


def write_parquet_output(path: str, tables: Iterable[pa.Table], meta: OutputMeta, schema: pa.Schema) -> None:
    """Write a whole Parquet dataset beside the old one, then swap directories."""
    from inbedder.lake.paths import is_remote

    if is_remote(path):
        raise TableError("Parquet output to object storage has no atomic commit here: use output.format=delta")
    schema = schema.with_metadata({META_KEY: json.dumps(meta.__dict__)})

    def fill(folder: Path) -> None:
        with pq.ParquetWriter(folder / "part-00000.parquet", schema) as writer:
            for t in tables:
                writer.write_table(t.cast(schema))

    replace_folder(path, fill)
