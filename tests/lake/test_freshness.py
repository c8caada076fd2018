"""The record of what an output's last run read: a re-run trusts it only while no commit touched the rows."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)
from deltalake import DeltaTable, write_deltalake

from inbedder import lake
from inbedder.lake import KEY_HASH, OutputMeta, SourceState, Snapshot


def _output(tmp_path) -> str:
    path = str(tmp_path / "out")
    rows = pa.table({"id": ["a", "b", "c"], KEY_HASH: ["h1", "h2", "h3"], "q_embedding": [1.0, 2.0, 3.0]})
    lake.DeltaOutput(path, "id").merge_rows(rows, OutputMeta("m", "f", "t", 1, "id", {"q": "q?"}),
                                            lake.WaveId("r", "a", 0))
    return path


def test_the_record_holds_until_a_commit_may_have_changed_rows(tmp_path):
    path = _output(tmp_path)
    assert lake.unchanged_state(path, "d1") is None  # nothing recorded yet
    lake.record_source_state(path, SourceState("d1", 3))
    assert lake.unchanged_state(path, "d1") == SourceState("d1", 3) and lake.unchanged_state(path, "d2") is None
    version = DeltaTable(path).version()
    lake.record_source_state(path, SourceState("d1", 3))
    assert DeltaTable(path).version() == version  # recording the same state again commits nothing
    # commits that keep every row: compaction, properties, cluster labels
    DeltaTable(path).optimize.compact()
    lake.DeltaOutput(path, "id", target_file_bytes=2**20).set_meta(OutputMeta("m", "f", "t", 1, "id", {"q": "q?"}))
    lake.DeltaOutput(path, "id").write_cluster_labels(pa.array(["a"]), pa.array(["h1"]), "q_cluster",
                                                      pa.array([0], pa.int32()), "cluster q k=2")
    assert lake.unchanged_state(path, "d1") == SourceState("d1", 3)
    DeltaTable(path).delete("id = 'b'")  # someone removed a row: the next run must plan
    assert lake.unchanged_state(path, "d1") is None
    lake.record_source_state(path, SourceState("d1", 3))  # a run that re-embedded it records again
    assert lake.unchanged_state(path, "d1") == SourceState("d1", 3)


def test_the_digest_follows_the_source_snapshot_and_the_settings(tmp_path):
    src = str(tmp_path / "src")
    write_deltalake(src, pa.table({"id": [1], "text": ["x"]}))
    v0 = lake.open_snapshot(src, "auto", None)
    same = lake.open_snapshot(src, "auto", None)
    assert lake.source_digest(v0, {"q": "a"}) == lake.source_digest(same, {"q": "a"})
    assert lake.source_digest(v0, {"q": "a"}) != lake.source_digest(v0, {"q": "b"})
    write_deltalake(src, pa.table({"id": [2], "text": ["y"]}), mode="append")
    v1 = lake.open_snapshot(src, "auto", None)
    assert lake.source_digest(v1, {"q": "a"}) != lake.source_digest(v0, {"q": "a"})
    # commits that keep every row (a property, a compaction, a vacuum) leave the digest as it was
    DeltaTable(src).alter.set_table_properties({"team.owner": "x"}, raise_if_not_exists=False)
    DeltaTable(src).optimize.compact()
    DeltaTable(src).vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    later = lake.open_snapshot(src, "auto", None)
    assert later.version == v1.version + 4 and later.files != v1.files
    assert lake.source_digest(later, {"q": "a"}) == lake.source_digest(v1, {"q": "a"})
    DeltaTable(src).update(updates={"text": "text"}, predicate="id = 1")  # rows rewritten: the run must plan
    assert lake.source_digest(lake.open_snapshot(src, "auto", None), {"q": "a"}) != lake.source_digest(v1, {"q": "a"})
    parquet = tmp_path / "pq"
    parquet.mkdir()
    pa.parquet.write_table(pa.table({"id": [1], "text": ["x"]}), parquet / "a.parquet")
    before = lake.source_digest(lake.open_snapshot(str(parquet), "auto", None), {})
    pa.parquet.write_table(pa.table({"id": [1], "text": ["changed"]}), parquet / "a.parquet")
    assert isinstance(lake.open_snapshot(str(parquet), "auto", None), Snapshot)
    assert lake.source_digest(lake.open_snapshot(str(parquet), "auto", None), {}) != before  # size or time moved


def test_the_record_keeps_the_failed_rows_and_reads_a_record_written_before_it_had_them(tmp_path):
    path = _output(tmp_path)
    lake.record_source_state(path, SourceState("d1", 3, failed=2))
    assert lake.unchanged_state(path, "d1") == SourceState("d1", 3, 2)
    assert SourceState.from_property("d1:3")  # an older writer's record == SourceState("d1", 3, 0)
    assert SourceState.from_property("garbage") is None and SourceState.from_property("d1:x:1") is None


def test_files_another_writer_rewrote_since_our_last_commit_are_named(tmp_path):
    path = _output(tmp_path)
    assert lake.files_changed_by_others(path) == []  # only our commits so far
    write_deltalake(path, pa.table({"id": ["d"], KEY_HASH: ["h4"], "q_embedding": [4.0]}), mode="append")
    appended = lake.files_changed_by_others(path)
    assert len(appended) == 1 and appended[0] in DeltaTable(path).file_uris()
    DeltaTable(path).update(updates={"q_embedding": "NULL"}, predicate="id = 'a'")  # rewrites a's file
    changed = lake.files_changed_by_others(path)
    assert len(changed) == 2 and set(appended) < set(changed)
    rewritten = [f for f in changed if f not in appended]
    assert pa.parquet.read_table(rewritten[0].removeprefix("file://")).column("id").to_pylist().count("a") == 1
    DeltaTable(path).optimize.compact()  # keeps every row as it was: not a reason to distrust more
    lake.record_source_state(path, SourceState("d1", 4))  # our commit: everything before it was seen
    assert lake.files_changed_by_others(path) == []


def test_without_a_commit_of_ours_in_the_log_no_file_is_trusted(tmp_path):
    path = str(tmp_path / "foreign")
    write_deltalake(path, pa.table({"id": ["a"], "q_embedding": [1.0]}))
    assert lake.files_changed_by_others(path) is None
