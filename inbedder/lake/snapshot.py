"""A source table pinned to one version: its files and schema, checked before Spark reads them.

Delta goes through delta-rs: a source is handed to Spark as one version's Parquet files.
The Delta-or-Parquet decision is made here (`table_format`) and nowhere else."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from dataclasses import dataclass, field
from pathlib import Path

from inbedder.errors import TableError
from inbedder.lake.paths import is_remote, local_path


# Delta reader features a plain read of the snapshot's Parquet files would get wrong
UNSUPPORTED_READER_FEATURES = {
    "deletionVectors": "rows deleted through deletion vectors would come back",
    "columnMapping": "column names in the files differ from the table's",
    "v2Checkpoint": "not supported by this reader yet",
    "timestampNtz": None,  # fine for Parquet readers
}


def is_delta_table(path: str) -> bool:
    if not is_remote(path):
        return (Path(path) / "_delta_log").is_dir() and any((Path(path) / "_delta_log").glob("*.json"))
    from deltalake import DeltaTable

    try:
        return DeltaTable.is_deltatable(path)
    except OSError:
        return False


def table_format(path: str) -> str:
    """delta or parquet: the one place the lake's two formats are told apart."""
    return "delta" if is_delta_table(path) else "parquet"


def detect_format(path: str, declared: str) -> str:
    is_delta = is_delta_table(path)
    if declared == "delta" and not is_delta:
        raise TableError(f"{path} is not a Delta table (no readable _delta_log)")
    if declared == "auto":
        return "delta" if is_delta else "parquet"
    return declared


@dataclass
class Snapshot:
    """One immutable view of a source table: what Spark reads."""

    path: str
    format: str
    version: int | None
    files: list[str]
    schema: pa.Schema
    partition_columns: list[str] = field(default_factory=list)


def open_snapshot(path: str, declared_format: str, version: int | None) -> Snapshot:
    if not is_remote(path) and not Path(path).exists():
        raise TableError(f"input {path} does not exist")
    fmt = detect_format(path, declared_format)
    if fmt == "delta":
        return _delta_snapshot(path, version)
    if version is not None:
        raise TableError(f"input {path} is a Parquet dataset: it has no version to pin")
    try:
        dataset = ds.dataset(path, format="parquet", partitioning="hive")
        files = list(dataset.files)
        schema = dataset.schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"input {path} is not a readable Parquet dataset: {exc}") from exc
    if not files:
        raise TableError(f"input {path} holds no Parquet files")
    check_readable(files)
    partitions = [n for n in schema.names if n not in pq.read_schema(files[0]).names]
    return Snapshot(path, "parquet", None, files, schema, partitions)


def check_readable(files: list[str]) -> None:
    """Fail before Spark starts on a local file whose footer or Hadoop checksum file is broken.

    Reads footers only (a few KB per file); remote files are left to Spark, whose
    failure is then explained by `unreadable_file_reason`.
    """
    from concurrent.futures import ThreadPoolExecutor

    local = [p for p in map(local_path, files) if p is not None]
    with ThreadPoolExecutor(8) as pool:
        for path, reason in zip(local, pool.map(_footer_or_checksum_problem, local)):
            if reason:
                raise TableError(f"input file {path} {reason}")


def _parquet_problem(path: str, read) -> str | None:
    """`read` (footer only, or the whole file) fails: why, and what to do."""
    try:
        read(path)
    except (OSError, pa.ArrowException) as exc:
        return (f"is not a readable Parquet file ({str(exc).splitlines()[0]}): restore it from a backup or "
                "remove it from the table, then re-run")
    return None


def _checksum_path(path: str) -> Path:
    """Where Hadoop's local filesystem keeps a file's checksums (Spark checks them on read)."""
    return Path(path).with_name(f".{Path(path).name}.crc")


def _footer_or_checksum_problem(path: str) -> str | None:
    problem = _parquet_problem(path, pq.read_metadata)
    if problem:
        return problem
    crc = _checksum_path(path)
    if crc.exists() and not _checksum_file_fits(crc, Path(path).stat().st_size):
        return (f"has a damaged Hadoop checksum file {crc} (its size does not fit the data file), which Spark "
                "would refuse: delete the .crc file (the Parquet file itself reads fine)")
    return None


def _checksum_file_fits(crc: Path, data_size: int) -> bool:
    """Hadoop's .crc: b'crc\\0', bytes per checksum (int32), then one CRC32 per chunk."""
    with open(crc, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or header[:4] != b"crc\0":
        return False
    per_chunk = int.from_bytes(header[4:], "big")
    return per_chunk > 0 and crc.stat().st_size == 8 + 4 * -(-data_size // per_chunk)


def unreadable_file_reason(path: str) -> str:
    """Why a file Spark could not read is unreadable: the data, or only its .crc (which pyarrow ignores)."""
    local = local_path(path)
    if local is None or not Path(local).exists():
        return "could not be read"
    problem = _parquet_problem(local, pq.read_table)
    if problem:
        return problem
    crc = _checksum_path(local)
    if crc.exists():
        return (f"reads fine, but its Hadoop checksum file {crc} does not match it (stale or damaged), so "
                "Spark refuses it: delete the .crc file and re-run")
    return "reads with pyarrow but not with Spark"


def _delta_snapshot(path: str, version: int | None) -> Snapshot:
    from deltalake import DeltaTable

    try:
        table = DeltaTable(path, version=version)
    except Exception as exc:  # delta-rs raises several types for a missing version or a broken log
        raise TableError(f"can't open Delta table {path} at version {version}: {exc}") from exc
    protocol = table.protocol()
    for feature in protocol.reader_features or []:
        why = UNSUPPORTED_READER_FEATURES.get(feature, "unknown to this reader")
        if why:
            raise TableError(f"Delta table {path} uses reader feature {feature!r}, which this job can't honour "
                             f"({why}); rewrite the table without it (e.g. REORG/purge) or export it to Parquet")
    schema = pa.schema(table.schema().to_arrow())
    files = list(table.file_uris())
    check_readable(files)
    return Snapshot(path, "delta", table.version(), files, schema, list(table.metadata().partition_columns))
