"""Reading sources and writing outputs: Parquet datasets and Delta tables.

Delta goes through delta-rs (deltalake): a source is pinned to one table
version and handed to Spark as that version's Parquet files; outputs are
committed as Delta transactions. Nothing here imports Spark or Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

KEY_HASH = "_inbedder_text_sha256"
ERROR = "_inbedder_error"
STAGING = "_inbedder_staging"
META_KEY = "inbedder"  # Parquet key-value metadata key / Delta table property prefix
# Delta reader features a plain read of the snapshot's Parquet files would get wrong
UNSUPPORTED_READER_FEATURES = {
    "deletionVectors": "rows deleted through deletion vectors would come back",
    "columnMapping": "column names in the files differ from the table's",
    "v2Checkpoint": "not supported by this reader yet",
    "timestampNtz": None,  # fine for Parquet readers
}


class TableError(ValueError):
    """A source or output table can't be used as asked; the message says why."""


def embedding_column(name: str) -> str:
    return f"{name}_embedding"


def cluster_column(name: str) -> str:
    """Where `inbedder cluster` writes an instruction's k-means assignment."""
    return f"{name}_cluster"


def clusters_made_stale_by(columns: Iterable[str]) -> list[str]:
    """Cluster columns whose vectors these written columns replace: they must not outlive them."""
    suffix = embedding_column("")
    return [cluster_column(c[: -len(suffix)]) for c in columns if c.endswith(suffix)]


def answer_column(name: str) -> str:
    return f"{name}_answer"


def quote(name: str) -> str:
    """A column name as a SQL identifier in delta-rs predicates and Spark expressions.

    Spaces, dots and other characters are safe inside backticks; a backtick itself
    cannot be escaped in delta-rs's parser, so such names are refused (config
    validation refuses them before any work starts).
    """
    if "`" in name:
        raise TableError(f"column name {name!r} contains a backtick, which can't be quoted in a Delta MERGE: "
                         "rename the column")
    return f"`{name}`"


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def is_delta_table(path: str, storage_options: dict[str, str] | None = None) -> bool:
    if not is_remote(path):
        return (Path(path) / "_delta_log").is_dir() and any((Path(path) / "_delta_log").glob("*.json"))
    from deltalake import DeltaTable

    try:
        return DeltaTable.is_deltatable(path, storage_options=storage_options)
    except OSError:
        return False


def detect_format(path: str, declared: str, storage_options: dict[str, str] | None = None) -> str:
    is_delta = is_delta_table(path, storage_options)
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


def open_snapshot(path: str, declared_format: str, version: int | None,
                  storage_options: dict[str, str] | None = None) -> Snapshot:
    if not is_remote(path) and not Path(path).exists():
        raise TableError(f"input {path} does not exist")
    fmt = detect_format(path, declared_format, storage_options)
    if fmt == "delta":
        return _delta_snapshot(path, version, storage_options)
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


def _local_path(file: str) -> str | None:
    """A local path for a plain path or a file: URI (Spark writes file:/x, delta-rs file:///x); else None."""
    if file.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(file).path)
    return None if is_remote(file) else file


def check_readable(files: list[str]) -> None:
    """Fail before Spark starts on a local file whose footer or Hadoop checksum file is broken.

    Reads footers only (a few KB per file); remote files are left to Spark, whose
    failure is then explained by `unreadable_file_reason`.
    """
    from concurrent.futures import ThreadPoolExecutor

    local = [p for p in map(_local_path, files) if p is not None]
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
    local = _local_path(path)
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


def _delta_snapshot(path: str, version: int | None, storage_options: dict[str, str] | None) -> Snapshot:
    from deltalake import DeltaTable

    try:
        table = DeltaTable(path, version=version, storage_options=storage_options)
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


# --- output metadata -----------------------------------------------------------------

@dataclass
class OutputMeta:
    """How the vectors in an output were made; stored with the table."""

    model: str
    fingerprint: str
    template: str
    dim: int
    key: str
    instructions: dict[str, str]

    def to_properties(self) -> dict[str, str]:
        props = {f"{META_KEY}.model": self.model, f"{META_KEY}.fingerprint": self.fingerprint,
                 f"{META_KEY}.template": self.template, f"{META_KEY}.dim": str(self.dim),
                 f"{META_KEY}.key": self.key}
        props.update({f"{META_KEY}.instruction.{n}": q for n, q in self.instructions.items()})
        return props

    def to_description(self) -> str:
        return json.dumps({META_KEY: self.__dict__}, sort_keys=True)

    @classmethod
    def from_delta(cls, metadata: object) -> OutputMeta | None:
        """Table properties, or the description a first commit carries before they are set."""
        found = cls.from_properties(dict(metadata.configuration))  # type: ignore[attr-defined]
        if found is None and getattr(metadata, "description", None):
            try:
                return cls(**json.loads(metadata.description)[META_KEY])  # type: ignore[attr-defined]
            except (ValueError, KeyError, TypeError):
                return None
        return found

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> OutputMeta | None:
        if f"{META_KEY}.fingerprint" not in props:
            return None
        prefix = f"{META_KEY}.instruction."
        return cls(props[f"{META_KEY}.model"], props[f"{META_KEY}.fingerprint"], props[f"{META_KEY}.template"],
                   int(props[f"{META_KEY}.dim"]), props[f"{META_KEY}.key"],
                   {k[len(prefix):]: v for k, v in props.items() if k.startswith(prefix)})


@dataclass
class ExistingOutput:
    format: str
    version: int | None
    meta: OutputMeta | None
    schema: pa.Schema


def existing_output(path: str, fmt: str, storage_options: dict[str, str] | None = None) -> ExistingOutput | None:
    from deltalake import DeltaTable

    if not is_remote(path):
        here = Path(path)
        if here.exists() and not here.is_dir():
            raise TableError(f"output {path} is a file, not a folder: choose a folder path for the output table")
        blocking = next((p for p in here.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise TableError(f"output {path} can't be created: {blocking} is a file, not a folder")

    if fmt == "delta":
        if not is_delta_table(path, storage_options):
            if not is_remote(path) and Path(path).exists() and any(p.name != STAGING for p in Path(path).iterdir()):
                raise TableError(f"output {path} exists and is not a Delta table: refusing to write into it")
            return None
        table = DeltaTable(path, storage_options=storage_options)
        return ExistingOutput("delta", table.version(), OutputMeta.from_delta(table.metadata()),
                              pa.schema(table.schema().to_arrow()))
    if not Path(path).exists():
        return None
    files = [f for f in ds.dataset(path, format="parquet").files]
    if not files:
        raise TableError(f"output {path} exists but holds no Parquet files: refusing to write into it")
    schema = pq.read_schema(files[0])
    raw = (schema.metadata or {}).get(META_KEY.encode())
    meta = OutputMeta(**json.loads(raw)) if raw else None
    return ExistingOutput("parquet", None, meta, schema)


# --- commits -------------------------------------------------------------------------

def app_id(run_id: str) -> str:
    return f"inbedder:{run_id}"


def delta_transaction_version(path: str, run_id: str, storage_options: dict[str, str] | None = None) -> int:
    from deltalake import DeltaTable

    if not is_delta_table(path, storage_options):
        return -1
    version = DeltaTable(path, storage_options=storage_options).transaction_version(app_id(run_id))
    return -1 if version is None else int(version)


def commit_delta_wave(path: str, data: pa.Table, key: str, meta: OutputMeta, run_id: str, wave: int,
                      *, update_columns: list[str], null_when_changed: list[str] | None = None,
                      storage_options: dict[str, str] | None = None) -> int | None:
    """Upsert one wave by key in one Delta transaction; a wave already committed is skipped.

    Rows whose text changed also lose the vectors of instructions this run did not
    compute (`null_when_changed`), so no vector outlives the text it was made from.
    Returns the new table version, or None when this (run, wave) was committed before.
    """
    from deltalake.exceptions import CommitFailedError, DeltaError

    attempts = 5
    for attempt in range(attempts):
        try:
            return _commit_delta_wave_once(path, data, key, meta, run_id, wave, update_columns, null_when_changed,
                                           storage_options)
        except (CommitFailedError, DeltaError) as exc:
            # another writer committed first: re-read the table and try again (the upsert is idempotent)
            if attempt == attempts - 1 or not _is_conflict(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    return None


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("conflict", "already exists", "version", "concurrent", "transaction"))


def _commit_delta_wave_once(path: str, data: pa.Table, key: str, meta: OutputMeta, run_id: str, wave: int,
                            update_columns: list[str], null_when_changed: list[str] | None,
                            storage_options: dict[str, str] | None) -> int | None:
    from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

    if delta_transaction_version(path, run_id, storage_options) >= wave:
        return None
    props = CommitProperties(app_transactions=[Transaction(app_id=app_id(run_id), version=wave)],
                             custom_metadata={"inbedder.run_id": run_id, "inbedder.wave": str(wave)})
    if not is_delta_table(path, storage_options):
        # delta-rs refuses custom properties at creation: the description carries them atomically with
        # the first rows, and the properties follow in the next commit
        write_deltalake(path, data, mode="error", description=meta.to_description(), commit_properties=props,
                        storage_options=storage_options)
        set_output_meta(path, meta, storage_options)
        return DeltaTable(path, storage_options=storage_options).version()
    set_output_meta(path, meta, storage_options)
    table = add_missing_columns(path, data.schema, storage_options)
    merge = table.merge(source=data, predicate=f"t.{quote(key)} = s.{quote(key)}", source_alias="s",
                        target_alias="t", commit_properties=props)
    present = set(pa.schema(table.schema().to_arrow()).names)
    updates = {quote(c): f"s.{quote(c)}" for c in update_columns}
    updates |= {quote(c): "NULL" for c in clusters_made_stale_by(update_columns) if c in present}
    stale = [c for c in (null_when_changed or []) if c in present]
    if stale:
        changed = f"t.{quote(KEY_HASH)} IS DISTINCT FROM s.{quote(KEY_HASH)}"
        merge = merge.when_matched_update(updates=updates | {quote(c): "NULL" for c in stale}, predicate=changed)
    merge = merge.when_matched_update(updates=updates).when_not_matched_insert_all()
    merge.execute()
    return DeltaTable(path, storage_options=storage_options).version()


def add_missing_columns(path: str, schema: pa.Schema, storage_options: dict[str, str] | None = None):
    """Add (all-NULL) columns a merge will write, in their own commit.

    delta-rs's MERGE with schema evolution ignores clause predicates and cannot
    name target-only columns; with the columns present first, neither applies.
    """
    from deltalake import DeltaTable, Schema

    table = DeltaTable(path, storage_options=storage_options)
    present = set(pa.schema(table.schema().to_arrow()).names)
    missing = [f.with_nullable(True) for f in schema if f.name not in present]
    if missing:
        table.alter.add_columns(Schema.from_arrow(pa.schema(missing)).fields)
        table = DeltaTable(path, storage_options=storage_options)
    return table


def set_output_meta(path: str, meta: OutputMeta, storage_options: dict[str, str] | None = None) -> None:
    from deltalake import DeltaTable

    table = DeltaTable(path, storage_options=storage_options)
    wanted = meta.to_properties()
    if OutputMeta.from_properties(dict(table.metadata().configuration)) != meta:
        table.alter.set_table_properties(wanted, raise_if_not_exists=False)


def clear_columns(path: str, columns: list[str], storage_options: dict[str, str] | None = None) -> None:
    """Null whole columns (an instruction's question changed: its old vectors answer another question)."""
    from deltalake import DeltaTable

    table = DeltaTable(path, storage_options=storage_options)
    present = set(pa.schema(table.schema().to_arrow()).names)
    updates = {quote(c): "NULL" for c in columns if c in present}
    if updates:
        table.update(updates=updates)


@dataclass
class Compaction:
    files_before: int
    files_after: int
    version: int
    removed_by_vacuum: int = 0


def compact(path: str, target_mb: int = 256, vacuum_hours: int | None = None,
            storage_options: dict[str, str] | None = None) -> Compaction:
    """OPTIMIZE an output table: rewrite its small files into files of about `target_mb` (rows unchanged).

    Every incremental run adds at least one file per wave and MERGE rewrites the
    files it touches, so a table run daily ends in many small files; readers and the
    next run's state read pay per file. `vacuum_hours` then deletes files no
    version younger than that still references (time travel to older versions ends).
    """
    from deltalake import CommitProperties, DeltaTable

    if not is_delta_table(path, storage_options):
        raise TableError(f"{path} is not a Delta table: only Delta outputs are compacted")
    table = DeltaTable(path, storage_options=storage_options)
    before = len(table.file_uris())
    table.optimize.compact(target_size=target_mb * 2**20,
                           commit_properties=CommitProperties(custom_metadata={"inbedder.operation": "compact"}))
    table = DeltaTable(path, storage_options=storage_options)
    removed = 0
    if vacuum_hours is not None:
        removed = len(table.vacuum(retention_hours=vacuum_hours, dry_run=False,
                                   enforce_retention_duration=vacuum_hours >= 168))
    return Compaction(before, len(table.file_uris()), table.version(), removed)


def delta_version(path: str, storage_options: dict[str, str] | None = None) -> int:
    from deltalake import DeltaTable

    return DeltaTable(path, storage_options=storage_options).version()


def output_files(path: str, fmt: str, storage_options: dict[str, str] | None = None) -> list[str]:
    if fmt == "delta":
        from deltalake import DeltaTable

        return list(DeltaTable(path, storage_options=storage_options).file_uris())
    return list(ds.dataset(path, format="parquet").files)


def commit_parquet_output(path: str, existing: ExistingOutput | None, parts: list[pa.Table], key: str,
                          source_keys: pa.Array, meta: OutputMeta) -> int:
    """Old rows that were not re-embedded, plus this run's rows, minus keys gone from the source."""
    import pyarrow.compute as pc

    new = pa.concat_tables(parts, promote_options="permissive") if parts else None
    previous = ds.dataset(path, format="parquet").to_table() if existing is not None else None
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
    write_parquet_output(path, [combined], meta, combined.schema)
    return deleted


def _fill_from(new: pa.Table, old: pa.Table, key: str, carry: list[str]) -> pa.Table:
    """Columns the new rows lack, taken from the same keys' old rows (vectors of other instructions)."""
    missing = [c for c in carry if c not in new.column_names]
    if not missing:
        return new
    return new.join(old.select([key, *missing]), key, join_type="left outer")


def delete_keys(path: str, key: str, gone: pa.Array, run_id: str,
                storage_options: dict[str, str] | None = None) -> int:
    """Remove the output rows whose key left the source (found by the job's anti-join), in one transaction."""
    from deltalake import CommitProperties, DeltaTable

    if len(gone) == 0:
        return 0
    table = DeltaTable(path, storage_options=storage_options)
    source = pa.table({key: gone})
    table.merge(source=source, predicate=f"t.{quote(key)} = s.{quote(key)}", source_alias="s", target_alias="t",
                commit_properties=CommitProperties(custom_metadata={"inbedder.run_id": run_id})
                ).when_matched_delete().execute()
    return len(gone)


def write_parquet_output(path: str, tables: Iterable[pa.Table], meta: OutputMeta, schema: pa.Schema) -> None:
    """Write a whole Parquet dataset beside the old one, then swap directories.

    Plain Parquet has no transaction log: readers see either the old or the new
    dataset (or, for an instant, none), never a mix.
    """
    if is_remote(path):
        raise TableError("Parquet output to object storage has no atomic commit here: use output.format=delta")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.parent / f".{target.name}.inbedder-new-{uuid.uuid4().hex[:8]}"
    fresh.mkdir()
    schema = schema.with_metadata({META_KEY: json.dumps(meta.__dict__)})
    with pq.ParquetWriter(fresh / "part-00000.parquet", schema) as writer:
        for t in tables:
            writer.write_table(t.cast(schema))
    old = target.parent / f".{target.name}.inbedder-old-{uuid.uuid4().hex[:8]}"
    if target.exists():
        os.rename(target, old)
    os.rename(fresh, target)
    shutil.rmtree(old, ignore_errors=True)


class StagingLease:
    """An attempt's claim on its staging folder, held (flock) while it runs and released when its process dies.

    Folders whose lease nobody holds belong to attempts that ended or were killed:
    `sweep_staging` removes them, never a live attempt's files.
    """

    LOCK = ".attempt.lock"

    def __init__(self, output_path: str, attempt_path: str):
        self.output_path = output_path
        self.folder = None if is_remote(output_path) else Path(staging_dir(output_path, attempt_path))
        self._fd: int | None = None
        self._made_output = False

    def __enter__(self) -> StagingLease:
        import fcntl

        if self.folder is not None:
            self._made_output = not Path(self.output_path).exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.folder / self.LOCK, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc_info) -> None:
        """Release the claim and remove every unclaimed staging folder (this attempt's included)."""
        if self._fd is None:
            return
        os.close(self._fd)  # closing releases the lock
        self._fd = None
        sweep_staging(self.output_path)
        if self._made_output:  # a run that failed before writing anything leaves no empty output behind
            _remove_if_empty(Path(self.output_path))


def _unclaimed(attempt: Path) -> bool:
    import fcntl

    lock = attempt / StagingLease.LOCK
    if not lock.exists():
        return not any(p.is_file() for p in attempt.rglob("*"))  # an attempt of an older version, or no files
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep_staging(output_path: str) -> int:
    """Remove the staging folders of attempts no process holds any more; returns how many."""
    root = Path(output_path) / STAGING
    if is_remote(output_path) or not root.is_dir():
        return 0
    removed = 0
    for run in [p for p in root.iterdir() if p.is_dir()]:
        for attempt in [p for p in run.iterdir() if p.is_dir()]:
            if _unclaimed(attempt):
                shutil.rmtree(attempt, ignore_errors=True)
                removed += 1
        _remove_if_empty(run)
    _remove_if_empty(root)
    return removed


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def staging_dir(output_path: str, run_id: str) -> str:
    return str(Path(output_path) / STAGING / run_id) if not is_remote(output_path) else \
        f"{output_path.rstrip('/')}/{STAGING}/{run_id}"


def remove_staging(output_path: str, run_id: str) -> None:
    """Drop a finished wave's (or run's) staged files, and staging folders left empty."""
    if is_remote(output_path):
        return  # object stores: a lifecycle rule on _inbedder_staging/ cleans up (see README)
    shutil.rmtree(staging_dir(output_path, run_id), ignore_errors=True)
    root = Path(output_path) / STAGING
    folder = Path(staging_dir(output_path, run_id)).parent
    while folder != root.parent and folder.exists() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
