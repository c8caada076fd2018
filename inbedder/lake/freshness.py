"""What the output's last run read, so a re-run of an unchanged source can stop before reading anything.

After a run, the output records a digest of what it was made from (the source's
snapshot, the questions, the model, the columns) and how many rows that was. A
later run whose digest is the same, on an output whose rows no commit has touched
since, has nothing to do: it reads the output's log and stops (no Spark, no Ray,
no model). Any other commit since (another writer, a deletion, a repair) and the
run plans in full as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from inbedder.lake.snapshot import Snapshot

log = logging.getLogger(__name__)

SOURCE_STATE = "inbedder.source_state"
_OPERATION = "source-state"
# commits after the record that leave every row's key, text hash and vectors as they were
_ROWS_KEPT = frozenset({"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "ADD COLUMN", "ADD COLUMNS"})
_LOOK_BACK = 100  # commits read back from the newest to find the record


@dataclass(frozen=True)
class SourceState:
    """What the output's last run read (`digest`), how many rows, and how many of them failed to embed: a
    re-run of the same source reports those failures again (they are deterministic), so a run over
    `max_error_rate` does not turn into a success by being run twice."""

    digest: str
    rows: int
    failed: int = 0

    def to_property(self) -> str:
        return f"{self.digest}:{self.rows}:{self.failed}"

    @classmethod
    def from_property(cls, text: str) -> SourceState | None:
        parts = text.split(":")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):  # 2: written before `failed`
            return None
        return cls(parts[0], *(int(p) for p in parts[1:]))


def snapshot_identity(snapshot: Snapshot) -> dict:
    """A Delta source is identified by the version of its newest commit that may have changed rows (so a
    source compacted, vacuumed or given a property since reads as unchanged); a Parquet dataset by its
    files' names, sizes and times."""
    if snapshot.format == "delta":
        return {"path": snapshot.path, "version": rows_version(snapshot.path, snapshot.version)}
    import pyarrow.fs as pafs

    from inbedder.lake.paths import is_remote

    if is_remote(snapshot.path):
        filesystem, _ = pafs.FileSystem.from_uri(snapshot.path)
        infos = filesystem.get_file_info([pafs.FileSystem.from_uri(f)[1] for f in snapshot.files])
    else:
        infos = pafs.LocalFileSystem().get_file_info(list(snapshot.files))
    return {"path": snapshot.path, "files": sorted((i.path, i.size, i.mtime_ns) for i in infos)}


def source_digest(snapshot: Snapshot, settings: dict) -> str:
    """`settings`: everything else the output's rows depend on (questions, model, columns, filter)."""
    basis = json.dumps({"source": snapshot_identity(snapshot), "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def record_source_state(path: str, state: SourceState) -> None:
    """Record, in its own commit, what the output now holds (a Delta output only)."""
    from deltalake import CommitProperties, DeltaTable

    table = DeltaTable(path)
    if dict(table.metadata().configuration).get(SOURCE_STATE) == state.to_property() and _recorded_rows(table, state):
        return
    table.alter.set_table_properties({SOURCE_STATE: state.to_property()}, raise_if_not_exists=False,
                                     commit_properties=CommitProperties(custom_metadata={"inbedder.operation":
                                                                                         _OPERATION}))


def unchanged_state(path: str, digest: str) -> SourceState | None:
    """The recorded state when the output holds exactly what `digest` describes; None when the run
    must plan (nothing recorded, another digest, or a commit since then that may have changed rows)."""
    from deltalake import DeltaTable

    table = DeltaTable(path)
    state = SourceState.from_property(dict(table.metadata().configuration).get(SOURCE_STATE, ""))
    if state is None or state.digest != digest:
        return None
    return state if _recorded_rows(table, state) else None


def rows_version(path: str, version: int | None) -> int | None:
    """The newest version at or before `version` whose commit may have changed the table's rows: the
    commits after it only compacted, vacuumed, set properties or added columns. `version` itself when the
    log since (up to _LOOK_BACK commits) cannot tell."""
    from deltalake import DeltaTable

    if version is None:
        return None
    for commit in DeltaTable(path).history(limit=_LOOK_BACK):
        at = commit.get("version")
        if at is None:
            return version
        if at > version:
            continue
        if commit.get("operation") not in _ROWS_KEPT:
            return int(at)
    return version


def _recorded_rows(table, state: SourceState) -> bool:
    """Is the newest commit that may have changed rows older than the record of `state`?"""
    for commit in table.history(limit=_LOOK_BACK):
        if commit.get("inbedder.operation") == _OPERATION:
            return state.to_property() in str(commit.get("operationParameters", {}).get("properties", ""))
        if commit.get("operation") not in _ROWS_KEPT and not _labels_only(commit):
            return False
    return False


def _ours(commit: dict) -> bool:
    """Every commit this project writes carries a run id or names its operation."""
    return any(str(k).startswith("inbedder.") for k in commit)


def files_changed_by_others(path: str) -> list[str] | None:
    """The output's files that another writer added or rewrote since our newest commit (URIs, as
    `output_files` names them): a run must not trust the status bits in those, so it re-derives them from
    the vectors. An UPDATE or DELETE by another writer rewrites the files it touched, so those are exactly
    the files to check. None when the log cannot say (no commit of ours in the last `_LOOK_BACK`): then
    no file's bits can be trusted."""
    from deltalake import DeltaTable

    table = DeltaTable(path)
    foreign: list[int] = []
    for commit in table.history(limit=_LOOK_BACK):
        if _ours(commit):
            break
        if commit.get("operation") not in _ROWS_KEPT:
            foreign.append(int(commit["version"]))
    else:
        return None
    current = table.file_uris()
    files_at: dict[int, set[str]] = {table.version(): set(current), -1: set()}

    def files(version: int) -> set[str]:  # loaded once each: a commit's "before" is the previous one's "after"
        if version not in files_at:
            table.load_as_version(version)
            files_at[version] = set(table.file_uris())
        return files_at[version]

    changed: set[str] = set()
    for version in foreign:
        changed |= files(version) - files(version - 1)
    return [f for f in current if f in changed]


def _labels_only(commit: dict) -> bool:
    """`inbedder clusters` writes only its label column."""
    return str(commit.get("inbedder.operation", "")).startswith("cluster ")
