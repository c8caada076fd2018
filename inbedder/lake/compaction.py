"""OPTIMIZE for output tables: many incremental runs leave many small files."""

from __future__ import annotations

from dataclasses import dataclass

from inbedder.errors import TableError
from inbedder.lake.snapshot import is_delta_table


@dataclass
class Compaction:
    files_before: int
    files_after: int
    version: int
    removed_by_vacuum: int = 0


def compact(path: str, target_mb: int = 256, vacuum_hours: int | None = None) -> Compaction:
    """OPTIMIZE an output table: rewrite its small files into files of about `target_mb` (rows unchanged).

    Every incremental run adds at least one file per wave and MERGE rewrites the
    files it touches, so a table run daily ends in many small files; readers and the
    next run's state read pay per file. `vacuum_hours` then deletes files no
    version younger than that still references (time travel to older versions ends).
    """
    from deltalake import CommitProperties, DeltaTable

    if not is_delta_table(path):
        raise TableError(f"{path} is not a Delta table: only Delta outputs are compacted")
    table = DeltaTable(path)
    before = len(table.file_uris())
    table.optimize.compact(target_size=target_mb * 2**20,
                           commit_properties=CommitProperties(custom_metadata={"inbedder.operation": "compact"}))
    table = DeltaTable(path)
    removed = 0
    if vacuum_hours is not None:
        # full: also files no version lists (a wave's files moved in by a run killed before its commit)
        removed = len(table.vacuum(retention_hours=vacuum_hours, dry_run=False,
                                   enforce_retention_duration=vacuum_hours >= 168, full=True))
    return Compaction(before, len(table.file_uris()), table.version(), removed)
