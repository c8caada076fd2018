"""Delta commits keep every vector that still matches its text, whatever the schema change."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable

from inbedder import tables
from inbedder.tables import KEY_HASH, OutputMeta


def _meta(*names: str) -> OutputMeta:
    return OutputMeta("m", "f", "t", 1, "id", {n: f"{n}?" for n in names})


def test_new_instruction_column_with_a_changed_text_nulls_only_that_rows_old_vectors(tmp_path):
    path = str(tmp_path / "out")
    tables.commit_delta_wave(path, pa.table({"id": ["a", "b"], KEY_HASH: ["h1", "h2"], "A_embedding": [1.0, 2.0]}),
                             "id", _meta("A"), "r", 0, update_columns=[KEY_HASH, "A_embedding"])
    # a run asking only for a new instruction B, while b's text changed: b's A vector no longer matches it
    tables.commit_delta_wave(path, pa.table({"id": ["a", "b", "c"], KEY_HASH: ["h1", "hX", "h3"],
                                             "B_embedding": [5.0, 6.0, 7.0]}),
                             "id", _meta("A", "B"), "r", 1, update_columns=[KEY_HASH, "B_embedding"],
                             null_when_changed=["A_embedding"])
    rows = {r["id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert rows["a"]["A_embedding"] == 1.0 and rows["a"]["B_embedding"] == 5.0
    assert rows["b"]["A_embedding"] is None and rows["b"]["B_embedding"] == 6.0 and rows["b"][KEY_HASH] == "hX"
    assert rows["c"]["A_embedding"] is None and rows["c"]["B_embedding"] == 7.0


def test_writing_new_vectors_clears_that_instructions_cluster_labels(tmp_path):
    path = str(tmp_path / "out")
    first = pa.table({"id": ["a", "b"], KEY_HASH: ["h1", "h2"], "A_embedding": [1.0, 2.0],
                      "A_cluster": pa.array([0, 1], pa.int32())})
    tables.commit_delta_wave(path, first, "id", _meta("A"), "r", 0, update_columns=first.column_names[1:])
    tables.commit_delta_wave(path, pa.table({"id": ["b"], KEY_HASH: ["hY"], "A_embedding": [9.0]}), "id",
                             _meta("A"), "r", 1, update_columns=[KEY_HASH, "A_embedding"])
    rows = {r["id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert rows["a"]["A_cluster"] == 0 and rows["b"]["A_cluster"] is None and rows["b"]["A_embedding"] == 9.0


def test_staging_of_dead_attempts_is_swept_and_a_live_attempts_kept(tmp_path):
    out = str(tmp_path / "out")
    dead = tmp_path / "out" / tables.STAGING / "run1" / "killed" / "wave-3" / "_temporary" / "0"
    dead.mkdir(parents=True)
    (dead / "part-0.parquet").write_bytes(b"half written")
    # what a killed attempt leaves: its lock file, which no process holds any more
    (tmp_path / "out" / tables.STAGING / "run1" / "killed" / tables.StagingLease.LOCK).touch()
    legacy = tmp_path / "out" / tables.STAGING / "run0" / "old" / "wave-0" / "_temporary"
    legacy.mkdir(parents=True)  # from a version without leases: empty folders only
    with tables.StagingLease(out, "run1/live") as live:
        (live.folder / "wave-0").mkdir()
        (live.folder / "wave-0" / "part-0.parquet").write_bytes(b"being written")
        assert tables.sweep_staging(out) == 2
        assert (live.folder / "wave-0" / "part-0.parquet").exists()
        assert not (tmp_path / "out" / tables.STAGING / "run1" / "killed").exists()
        assert not (tmp_path / "out" / tables.STAGING / "run0").exists()
    assert not (tmp_path / "out" / tables.STAGING).exists()  # the lease's own folder goes when it ends


def test_a_lease_on_a_new_output_leaves_no_empty_folder(tmp_path):
    with tables.StagingLease(str(tmp_path / "new"), "r/a"):
        assert (tmp_path / "new" / tables.STAGING / "r" / "a").is_dir()
    assert not (tmp_path / "new").exists()


def test_column_names_are_quoted_and_a_backtick_refused():
    import pytest

    assert tables.quote("row id.v1") == "`row id.v1`"
    with pytest.raises(tables.TableError, match="backtick"):
        tables.quote("we`ird")


def test_compaction_keeps_rows_and_metadata_in_fewer_files(tmp_path):
    from click.testing import CliRunner

    from inbedder.cli import main

    path = str(tmp_path / "out")
    meta = _meta("q")
    for wave in range(6):  # six small waves, as six incremental runs leave them
        keys = [f"k{wave}-{i}" for i in range(20)]
        data = pa.table({"id": keys, KEY_HASH: keys, "q_embedding": pa.array([[float(i)] for i in range(20)],
                                                                           pa.list_(pa.float32()))})
        tables.commit_delta_wave(path, data, "id", meta, "run", wave, update_columns=["q_embedding", KEY_HASH])
    before = DeltaTable(path).to_pyarrow_table().sort_by("id")
    files_before = len(DeltaTable(path).file_uris())
    result = CliRunner().invoke(main, ["optimize", "--table", path])
    assert result.exit_code == 0, result.output
    after = DeltaTable(path)
    assert len(after.file_uris()) == 1 < files_before and f"{files_before} -> 1 files" in result.output
    assert after.to_pyarrow_table().sort_by("id").equals(before)
    assert tables.OutputMeta.from_delta(after.metadata()) == meta
    assert tables.delta_transaction_version(path, "run") == 5  # the waves' idempotence record survives
    vacuumed = CliRunner().invoke(main, ["optimize", "--table", path, "--vacuum-hours", "0"])
    assert f"{files_before} unreferenced files deleted" in vacuumed.output
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 1
    assert DeltaTable(path).to_pyarrow_table().sort_by("id").equals(before)
    refused = CliRunner().invoke(main, ["optimize", "--table", str(tmp_path)])
    assert refused.exit_code != 0 and "is not a Delta table" in refused.output
