"""Reading an output table: its record, any columns as a dataset, and an instruction's vectors in batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from inbedder.errors import TableError
from inbedder.lake.columns import KEY_HASH, embedding_column
from inbedder.lake.meta import ExistingOutput, OutputMeta
from inbedder.lake.output import existing_output
from inbedder.lake.paths import is_remote
from inbedder.lake.snapshot import table_format


def open_dataset(path: str, version: int | None = None) -> ds.Dataset:
    """Any table (Delta at a version, or a hive-partitioned Parquet dataset) as a pyarrow dataset."""
    if table_format(path) == "delta":
        from deltalake import DeltaTable

        return DeltaTable(path, version=version).to_pyarrow_dataset()
    return ds.dataset(path, format="parquet", partitioning="hive")


def rows_by_key(dataset: ds.Dataset, key: str, keys: list) -> dict:
    """Rows (every column but the vectors and inbedder's bookkeeping) for the given keys. The filter is pushed
    down to the Parquet row groups, so a query's hits never load the table whole."""
    if not keys:
        return {}
    columns = [c for c in dataset.schema.names if not c.endswith("_embedding") and not c.startswith("_inbedder")]
    key_type = dataset.schema.field(key).type
    if pa.types.is_integer(key_type):  # in the column's own type, so Parquet statistics can skip row groups
        where = pc.field(key).isin(pa.array(list(dict.fromkeys(keys))).cast(key_type))
    else:  # strings (Delta exposes string_view, which the statistics can't compare with string)
        where = pc.field(key).cast(pa.string()).isin(pa.array(sorted({str(k) for k in keys})))
    return {r[key]: r for r in dataset.to_table(columns=columns, filter=where).to_pylist()}


def open_output(path: str) -> ExistingOutput:
    """An existing inbedder output table, or a one-line error saying why the path is not one."""
    if not is_remote(path) and not Path(path).exists():
        raise TableError(f"table {path} does not exist")
    existing = existing_output(path, table_format(path))
    if existing is None or existing.meta is None:
        raise TableError(f"{path} is not an inbedder output table (no inbedder metadata)")
    return existing


@dataclass
class VectorSource:
    """An instruction column of an output table, read batch by batch (never whole)."""

    path: str
    format: str
    version: int | None
    meta: OutputMeta
    instruction: str

    @classmethod
    def open(cls, path: str, instruction: str) -> VectorSource:
        existing = open_output(path)
        assert existing.meta is not None
        if instruction not in existing.meta.instructions or embedding_column(instruction) not in existing.schema.names:
            raise TableError(f"instruction {instruction!r} was never embedded in {path}; it has: "
                             f"{', '.join(sorted(existing.meta.instructions)) or 'none'}")
        if not existing.meta.key or existing.meta.key not in existing.schema.names:
            raise TableError(f"{path} records no key column to map vectors back to rows: embed it with key=... "
                             "(inbedder.spark.embed, inbedder.ray.Embed)")
        return cls(path, existing.format, existing.version, existing.meta, instruction)

    def dataset(self) -> ds.Dataset:
        return open_dataset(self.path, self.version)

    def batches(self, batch_rows: int = 65_536) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """(key + hash columns, float32 vectors) for rows that have a vector; keys as strings, as in id maps."""
        column = embedding_column(self.instruction)
        scanner = self.dataset().scanner(columns=[self.meta.key, KEY_HASH, column],
                                         filter=pc.field(column).is_valid(), batch_size=batch_rows)
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            vectors = batch.column(column).flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            yield pa.table({"key": batch.column(self.meta.key), "text_sha256": batch.column(KEY_HASH)}), \
                vectors.reshape(batch.num_rows, -1)
