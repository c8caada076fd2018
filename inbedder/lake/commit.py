"""Writing outputs: one Delta transaction per wave (idempotent), deletions, and the Parquet rewrite.

Delta transactions go through delta-rs; a Parquet output has no log, so it is
rewritten beside the old one and swapped in. Nothing here imports Spark or Ray."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

import logging

from inbedder.errors import TableError
from inbedder.fs import replace_folder
from inbedder.lake.columns import KEY_HASH, META_KEY, clusters_made_stale_by, embedding_column, quote, status_column
from inbedder.lake.meta import ExistingOutput, OutputMeta
from inbedder.lake.paths import is_remote
from inbedder.lake.snapshot import is_delta_table
from inbedder.lake.staging import StagedFile, StagedWave


log = logging.getLogger(__name__)

TARGET_FILE_SIZE = "delta.targetFileSize"  # the Delta table property delta-rs cuts written files by
# A checkpoint every 10 commits (Delta Lake's own default; delta-rs writes one every 100): a writer or
# reader replays at most that many JSON commits, so a run's last wave commits as fast as its first.
CHECKPOINT_INTERVAL = ("delta.checkpointInterval", "10")


def app_id(run_id: str) -> str:
    return f"inbedder:{run_id}"


def delta_transaction_version(path: str, run_id: str) -> int:
    from deltalake import DeltaTable

    if not is_delta_table(path):
        return -1
    version = DeltaTable(path).transaction_version(app_id(run_id))
    return -1 if version is None else int(version)


def commit_delta_wave(path: str, data: pa.Table, key: str, meta: OutputMeta, run_id: str, wave: int,
                      *, update_columns: list[str], null_when_changed: list[str] | None = None,
                      target_file_bytes: int | None = None, attempt: str = "",
                      gone: pa.Array | None = None, check: AppendCheck | None = None) -> int | None:
    """Upsert one wave by key in one Delta transaction; a wave already committed is skipped.

    `gone`: keys that left the source, deleted in the same MERGE. Each MERGE rewrites every file that
    holds one of its keys, so one MERGE for both rewrites those files once instead of twice.

    Rows whose text changed also lose the vectors of instructions this run did not
    compute (`null_when_changed`), so no vector outlives the text it was made from.
    `target_file_bytes` sets the table's `delta.targetFileSize`, which delta-rs's
    writes, merges and OPTIMIZE cut files by. `check`: the run's handle on the
    output, brought up to date instead of opening the table anew. Returns the new
    table version, or None when this (run, wave) was committed before.
    """
    from deltalake.exceptions import CommitFailedError, DeltaError

    tries = 5
    for try_no in range(tries):
        try:
            return _commit_delta_wave_once(path, data, key, meta, run_id, wave, update_columns, null_when_changed,
                                           target_file_bytes, attempt, gone, check)
        except (CommitFailedError, DeltaError) as exc:
            # another writer committed first: re-read the table and try again (the upsert is idempotent)
            if try_no == tries - 1 or not _is_conflict(exc):
                raise
            time.sleep(0.2 * (try_no + 1))
    return None


# what delta-rs says when another writer committed first; any other failure (a schema error, a missing file, a
# message that merely mentions a "version" or a "transaction") is not retried
_CONFLICT = re.compile(r"version \d+ already exists|concurrent (append|delete|transaction|update|write)|"
                       r"commit ?conflict|conflicting commit|(metadata|protocol) changed since last commit", re.I)


def _is_conflict(exc: Exception) -> bool:
    """A commit lost a race with another writer (worth re-reading the table and trying again)."""
    from deltalake.exceptions import CommitFailedError

    return isinstance(exc, CommitFailedError) or bool(_CONFLICT.search(str(exc)))


def _commit_delta_wave_once(path: str, data: pa.Table, key: str, meta: OutputMeta, run_id: str, wave: int,
                            update_columns: list[str], null_when_changed: list[str] | None,
                            target_file_bytes: int | None, attempt: str, gone: pa.Array | None = None,
                            check: AppendCheck | None = None) -> int | None:
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    def opened():
        return check.table(path) if check is not None else DeltaTable(path)

    props = CommitProperties(app_transactions=[_transaction(run_id, wave)],
                             custom_metadata={"inbedder.run_id": run_id, "inbedder.writer": attempt,
                                              "inbedder.wave": str(wave)})
    if not is_delta_table(path):
        # delta-rs refuses custom properties at creation: the description carries them atomically with
        # the first rows, and the properties follow in the next commit
        write_deltalake(path, data, mode="error", description=meta.to_description(), commit_properties=props,
                        configuration=_file_size_property(target_file_bytes))
        set_output_meta(path, meta)
        return opened().version()
    table = opened()
    done = table.transaction_version(app_id(run_id))
    if done is not None and done >= wave:
        return None
    set_output_meta(path, meta, target_file_bytes, table=table)
    table = add_missing_columns(path, data.schema, table=table)
    deleting = gone is not None and len(gone) > 0
    if deleting:
        data = _with_gone_keys(data, key, gone)
    merge = table.merge(source=data, predicate=f"t.{quote(key)} = s.{quote(key)}", source_alias="s",
                        target_alias="t", commit_properties=props,
                        streamed_exec=not source_range_skips_files(table, key, data.column(key)))
    if deleting:  # clauses apply in order: a gone key's row is deleted and meets no later clause
        merge = merge.when_matched_delete(predicate=f"s.{quote(_GONE)}")
    present = set(pa.schema(table.schema().to_arrow()).names)
    updates = {quote(c): f"s.{quote(c)}" for c in update_columns}
    updates |= {quote(c): "NULL" for c in clusters_made_stale_by(update_columns) if c in present}
    stale = [c for c in (null_when_changed or []) if c in present]
    if stale:
        changed = f"t.{quote(KEY_HASH)} IS DISTINCT FROM s.{quote(KEY_HASH)}"
        merge = merge.when_matched_update(updates=updates | {quote(c): "NULL" for c in stale}, predicate=changed)
    merge = merge.when_matched_update(updates=updates)
    if deleting:
        merge = merge.when_not_matched_insert_all(predicate=f"NOT s.{quote(_GONE)}", except_cols=[_GONE])
    else:
        merge = merge.when_not_matched_insert_all()
    merge.execute()
    return opened().version()


_GONE = "_inbedder_gone"  # a MERGE source's flag: this key left the source, delete its row
_SKIP_SHARE = 0.5  # a MERGE source whose key range meets fewer of the output's files than this is materialized


def source_range_skips_files(table, key: str, keys: pa.ChunkedArray) -> bool:
    """Does the MERGE source's key range meet few of the output's files (by their min/max statistics)?

    delta-rs skips the target files outside the source's key range only when the source is materialized;
    streamed, it scans them all. Measured on 1M rows in 50 files: 10,000 keys of one key range 0.06 s
    materialized vs 0.51 s streamed; 10,000 keys spread over every file 1.75 vs 1.29 s. Only speed depends
    on this: delta-rs's own pruning decides which files the MERGE rewrites."""
    import pyarrow.compute as pc

    files = pa.table(table.get_add_actions(flatten=True))
    low, high = f"min.{key}", f"max.{key}"
    if files.num_rows == 0 or low not in files.column_names or high not in files.column_names:
        return False
    bounds = pc.min_max(keys)
    if not bounds["min"].is_valid:
        return False
    try:
        lows, highs = files.column(low).cast(keys.type), files.column(high).cast(keys.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # statistics the keys can't be compared with
        return False
    outside = pc.or_kleene(pc.less(highs, bounds["min"]), pc.greater(lows, bounds["max"]))
    touched = files.num_rows - pc.sum(pc.fill_null(outside, False)).as_py()
    return touched < _SKIP_SHARE * files.num_rows


def _with_gone_keys(data: pa.Table, key: str, gone: pa.Array) -> pa.Table:
    """The wave's rows, then one row per gone key (every other column NULL), flagged for deletion."""
    gone = gone.cast(data.schema.field(key).type)
    rows = data.append_column(_GONE, pa.array([False] * data.num_rows, pa.bool_()))
    deletions = pa.table({f.name: gone if f.name == key else pa.array([True] * len(gone)) if f.name == _GONE
                          else pa.nulls(len(gone), f.type) for f in rows.schema}, schema=rows.schema)
    return pa.concat_tables([rows, deletions])


# Delta operations that never add a key to a table: another writer's commit of these kinds since the run read
# the output's keys cannot make an append duplicate one
KEEPS_KEYS = frozenset({"SET TBLPROPERTIES", "ADD COLUMN", "ADD COLUMNS", "UPDATE", "DELETE", "OPTIMIZE",
                        "VACUUM START", "VACUUM END", "ADD CONSTRAINT", "DROP CONSTRAINT", "CHANGE COLUMN",
                        "UPDATE FIELD METADATA", "UPDATE TABLE METADATA"})


@dataclass
class AppendCheck:
    """How far a run has read the output's log for other writers' rows since it read the output's keys.

    Starts at the version whose keys the plan read (-1: no output yet); each append moves it on, so a
    run's waves read each commit of the log once, not the whole log since the plan per wave."""

    checked_version: int
    others_added_rows: bool = False
    _table: object | None = field(default=None, repr=False, compare=False)

    def table(self, path: str):
        """The output's table, loaded once per run and then brought up to date one new commit at a time:
        reloading it per wave replays the log since its last checkpoint, which grows with every wave
        (measured: 0.02 s at the first append, 0.2 s at the 99th)."""
        from deltalake import DeltaTable

        if self._table is None:
            self._table = DeltaTable(path)
        else:
            self._table.update_incremental()
        return self._table


def commit_delta_append(path: str, wave: StagedWave, key: str, meta: OutputMeta, run_id: str, attempt: str,
                        wave_no: int, check: AppendCheck, *, target_file_bytes: int | None = None,
                        null_when_changed: list[str] | None = None) -> tuple[int | None, str]:
    """Commit a wave of keys the output lacked by adding its staged files: no MERGE, nothing rewritten.

    An append is right only while no other writer added rows since the run read the output's keys.
    Each try reads the commits since `check` last did and commits at exactly the version it checked
    (delta-rs may not retry it over a newer one), so a writer that races in makes the try fail and the
    check run again. Once another writer has added rows, this and every later wave of the run is upserted
    by key instead (MERGE: idempotent, so a key both runs embedded is still one row). Returns (the new
    version, or None when this wave was committed before; "append" or "merge").
    """
    from deltalake.exceptions import CommitFailedError, DeltaError

    props = dict(app_transactions=[_transaction(run_id, wave_no)], max_commit_retries=0,
                 custom_metadata={"inbedder.run_id": run_id, "inbedder.writer": attempt,
                                  "inbedder.wave": str(wave_no)})
    moved: list[tuple[str, StagedFile]] | None = None
    for try_no in range(5):
        try:
            if not is_delta_table(path):
                if check.checked_version >= 0:
                    raise TableError(f"output {path} was removed while the run wrote to it")
                moved = moved or _move_into_table(path, wave.files)
                _create_with_files(path, wave.schema, moved, meta, props, target_file_bytes)
                created = check.table(path)
                _rows_added_by_others(created, check, run_id, attempt)  # moves the check past our own creation
                return created.version(), "append"
            table = check.table(path)
            done = table.transaction_version(app_id(run_id))
            if done is not None and done >= wave_no:
                _remove_moved(path, moved)
                return None, "append"
            set_output_meta(path, meta, target_file_bytes, table=table)
            table = add_missing_columns(path, wave.schema, table=table)
            if _rows_added_by_others(table, check, run_id, attempt):
                log.info("wave %d: another writer added rows to %s since this run read its keys; merging by key "
                         "instead of appending", wave_no, path)
                break
            if not _types_match(table, wave.schema):
                log.info("wave %d: its column types differ from the table's; merging it (which casts)", wave_no)
                break
            moved = moved or _move_into_table(path, wave.files)
            version = _add_files(table, moved, props, key)
            check.checked_version = version  # ours: committed at exactly the version after the check
            return version, "append"
        except (CommitFailedError, DeltaError) as exc:
            if try_no == 4 or not _is_conflict(exc):
                raise
            time.sleep(0.2 * (try_no + 1))
    rows = wave.table() if moved is None else StagedWave(tuple(f for _, f in moved), wave.schema).table()
    version = commit_delta_wave(path, rows, key, meta, run_id, wave_no, update_columns=[
        c for c in rows.column_names if c != key], null_when_changed=null_when_changed,
        target_file_bytes=target_file_bytes, attempt=attempt, check=check)
    _remove_moved(path, moved)
    return version, "merge"


def _transaction(run_id: str, wave: int):
    from deltalake import Transaction

    return Transaction(app_id=app_id(run_id), version=wave)


def _rows_added_by_others(table, check: AppendCheck, run_id: str, attempt: str) -> bool:
    """Did a commit after `check.checked_version` (up to the loaded version) come from another writer and
    add rows? Moves the check on to the loaded version when none did."""
    newer = table.version() - check.checked_version
    if check.others_added_rows or newer <= 0:
        return check.others_added_rows
    for commit in table.history(limit=newer):
        if commit.get("version", check.checked_version + 1) <= check.checked_version:
            continue
        ours = commit.get("inbedder.run_id") == run_id and commit.get("inbedder.writer") == attempt
        if not ours and commit.get("operation") not in KEEPS_KEYS:
            check.others_added_rows = True
            return True
    check.checked_version = table.version()
    return False


def _types_match(table, schema: pa.Schema) -> bool:
    """The staged files' columns have the table's types (an append does not cast; a MERGE does)."""
    from deltalake import Schema

    current = {f.name: f.type for f in table.schema().fields}
    staged = {f.name: f.type for f in Schema.from_arrow(schema).fields}
    return all(current.get(name) == kind for name, kind in staged.items())


def _move_into_table(path: str, files: tuple[StagedFile, ...]) -> list[tuple[str, StagedFile]]:
    """Staged files moved (renamed; copied on object stores) to the table's root, not yet in its log:
    readers never see a file the log does not list, and a kill here leaves only unlisted files."""
    import pyarrow.fs as pafs

    moved = []
    for f in files:
        name = "part-" + f.path.rsplit("/", 1)[-1]
        target = f"{path.rstrip('/')}/{name}"
        if is_remote(path):
            filesystem, source = pafs.FileSystem.from_uri(f.path)
            filesystem.move(source, pafs.FileSystem.from_uri(target)[1])
        else:
            Path(f.path).replace(target)
        moved.append((name, StagedFile(target, f.rows, f.bytes, f.errors, f.key_min, f.key_max)))
    return moved


def _remove_moved(path: str, moved: list[tuple[str, StagedFile]] | None) -> None:
    import pyarrow.fs as pafs

    for _, f in moved or []:
        if is_remote(path):
            filesystem, location = pafs.FileSystem.from_uri(f.path)
            filesystem.delete_file(location)
        else:
            Path(f.path).unlink(missing_ok=True)


def _add_actions(moved: list[tuple[str, StagedFile]], key: str) -> list:
    from deltalake.transaction import AddAction

    now = int(time.time() * 1000)
    actions = []
    for name, f in moved:
        stats: dict = {"numRecords": f.rows}
        if f.key_min is not None:
            stats |= {"minValues": {key: f.key_min}, "maxValues": {key: f.key_max}, "nullCount": {key: 0}}
        actions.append(AddAction(name, f.bytes, {}, now, True, json.dumps(stats)))
    return actions


def _add_files(table, moved: list[tuple[str, StagedFile]], props: dict, key: str) -> int:
    from deltalake import CommitProperties

    version = table.version() + 1  # max_commit_retries=0: committed at exactly this version, or refused
    table.create_write_transaction(_add_actions(moved, key), mode="append", schema=table.schema(),
                                   commit_properties=CommitProperties(**props))
    return version


def _create_with_files(path: str, schema: pa.Schema, moved: list[tuple[str, StagedFile]], meta: OutputMeta,
                       props: dict, target_file_bytes: int | None) -> None:
    from deltalake import CommitProperties, Schema
    from deltalake.transaction import create_table_with_add_actions

    create_table_with_add_actions(path, Schema.from_arrow(schema), _add_actions(moved, meta.key), mode="error",
                                  description=meta.to_description(),
                                  configuration=_file_size_property(target_file_bytes),
                                  commit_properties=CommitProperties(**props))
    set_output_meta(path, meta)


def add_missing_columns(path: str, schema: pa.Schema, table=None):
    """Add (all-NULL) columns a merge will write, in their own commit.

    delta-rs's MERGE with schema evolution ignores clause predicates and cannot
    name target-only columns; with the columns present first, neither applies.
    Returns the table, up to date (`table`, when given, is the caller's handle and is updated).
    """
    from deltalake import DeltaTable, Schema

    table = table or DeltaTable(path)
    present = set(pa.schema(table.schema().to_arrow()).names)
    missing = [f.with_nullable(True) for f in schema if f.name not in present]
    if missing:
        table.alter.add_columns(Schema.from_arrow(pa.schema(missing)).fields)
        table.update_incremental()
    return table


def _file_size_property(target_file_bytes: int | None) -> dict[str, str] | None:
    return {TARGET_FILE_SIZE: str(target_file_bytes)} if target_file_bytes else None


def set_output_meta(path: str, meta: OutputMeta, target_file_bytes: int | None = None, table=None) -> None:
    """The output's record (and its file size, when one is asked), set only where it differs (`table`:
    the caller's handle, updated when this commits)."""
    from deltalake import DeltaTable

    table = table or DeltaTable(path)
    current = dict(table.metadata().configuration)
    wanted = {} if OutputMeta.from_properties(current) == meta else meta.to_properties()
    if target_file_bytes and current.get(TARGET_FILE_SIZE) != str(target_file_bytes):
        wanted[TARGET_FILE_SIZE] = str(target_file_bytes)
    if CHECKPOINT_INTERVAL[0] not in current:  # an interval the table's owner chose is kept
        wanted[CHECKPOINT_INTERVAL[0]] = CHECKPOINT_INTERVAL[1]
    if wanted:
        table.alter.set_table_properties(wanted, raise_if_not_exists=False)
        table.update_incremental()


def clear_columns(path: str, columns: list[str]) -> None:
    """Null whole columns (an instruction's question changed: its old vectors answer another question)."""
    from deltalake import DeltaTable

    table = DeltaTable(path)
    present = set(pa.schema(table.schema().to_arrow()).names)
    updates = {quote(c): "NULL" for c in columns if c in present}
    if updates:
        table.update(updates=updates)


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


def delete_keys(path: str, key: str, gone: pa.Array, run_id: str) -> int:
    """Remove the output rows whose key left the source (found by the job's anti-join), in one transaction."""
    from deltalake import CommitProperties, DeltaTable

    if len(gone) == 0:
        return 0
    table = DeltaTable(path)
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
    schema = schema.with_metadata({META_KEY: json.dumps(meta.__dict__)})

    def fill(folder: Path) -> None:
        with pq.ParquetWriter(folder / "part-00000.parquet", schema) as writer:
            for t in tables:
                writer.write_table(t.cast(schema))

    replace_folder(path, fill)


def write_cluster_labels(path: str, key: str, keys: pa.Array, hashes: pa.Array, column: str, labels: pa.Array,
                         operation: str) -> None:
    """Set a cluster column by key in one transaction: the label where the row's text hash still matches,
    NULL where the text changed since its vector was read, and NULL for rows not clustered."""
    from deltalake import CommitProperties, DeltaTable

    key_type = pa.schema(DeltaTable(path).schema().to_arrow()).field(key).type
    update = pa.table({key: keys.cast(key_type), KEY_HASH: hashes, column: labels})
    table = add_missing_columns(path, update.schema)
    props = CommitProperties(custom_metadata={"inbedder.operation": operation})
    (table.merge(source=update, predicate=f"t.{quote(key)} = s.{quote(key)}", source_alias="s", target_alias="t",
                 commit_properties=props)
     .when_matched_update(updates={quote(column): f"s.{quote(column)}"},
                          predicate=f"t.{quote(KEY_HASH)} = s.{quote(KEY_HASH)}")
     .when_matched_update(updates={quote(column): "NULL"})
     .when_not_matched_by_source_update(updates={quote(column): "NULL"})
     .execute())


def add_status_columns(path: str, instructions: list[str]) -> list[str]:
    """Give an output written before status bits existed its bits, in one pass over the vectors (once).

    Returns the columns added. Rows with a vector get True; the rest stay NULL.
    """
    from deltalake import CommitProperties

    columns = [status_column(n) for n in instructions]
    table = add_missing_columns(path, pa.schema([pa.field(c, pa.bool_()) for c in columns]))
    # one rewrite for all of them; the condition sits in the value, since delta-rs can't take a list column
    # in an UPDATE predicate ("Predicate references unknown column")
    table.update(updates={quote(status_column(n)): f"CASE WHEN {quote(embedding_column(n))} IS NOT NULL THEN true END"
                          for n in instructions},
                 commit_properties=CommitProperties(custom_metadata={"inbedder.operation": "add status bits"}))
    return columns
