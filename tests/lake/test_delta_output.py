"""A Delta output's commits keep every vector that still matches its text, whatever the schema change."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from inbedder import lake
from inbedder.lake import KEY_HASH, OutputMeta
from inbedder.lake.delta_output import app_id


def _meta(*names: str) -> OutputMeta:
    return OutputMeta("m", "f", "t", 1, "id", {n: f"{n}?" for n in names}, "body")


def test_new_instruction_column_with_a_changed_text_nulls_only_that_rows_old_vectors(tmp_path):
    path = str(tmp_path / "out")
    output = lake.DeltaOutput(path, "id")
    output.merge_rows(pa.table({"id": ["a", "b"], KEY_HASH: ["h1", "h2"], "A_embedding": [1.0, 2.0]}), _meta("A"),
                      lake.WaveId("r", "a", 0))
    # a run asking only for a new instruction B, while b's text changed: b's A vector no longer matches it
    output.merge_rows(pa.table({"id": ["a", "b", "c"], KEY_HASH: ["h1", "hX", "h3"], "B_embedding": [5.0, 6.0, 7.0]}),
                      _meta("A", "B"), lake.WaveId("r", "a", 1), stale=["A_embedding"])
    rows = {r["id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert rows["a"]["A_embedding"] == 1.0 and rows["a"]["B_embedding"] == 5.0
    assert rows["b"]["A_embedding"] is None and rows["b"]["B_embedding"] == 6.0 and rows["b"][KEY_HASH] == "hX"
    assert rows["c"]["A_embedding"] is None and rows["c"]["B_embedding"] == 7.0


def test_keys_that_left_the_source_go_out_in_the_waves_merge_and_are_never_inserted(tmp_path):
    path = str(tmp_path / "out")
    first = pa.table({"id": ["a", "b", "c", "d"], KEY_HASH: ["h1", "h2", "h3", "h4"],
                      "A_embedding": [1.0, 2.0, 3.0, 4.0]})
    lake.DeltaOutput(path, "id").merge_rows(first, _meta("A"), lake.WaveId("r", "a", 0))
    before = DeltaTable(path).version()
    wave = pa.table({"id": ["b", "e"], KEY_HASH: ["hB", "h5"], "A_embedding": [20.0, 5.0]})
    lake.DeltaOutput(path, "id").merge_rows(wave, _meta("A"), lake.WaveId("r", "a", 1),
                                            gone=pa.array(["c", "d", "zz"]))  # zz: already gone, must not come back
    table = DeltaTable(path)
    rows = {r["id"]: r for r in table.to_pyarrow_table().to_pylist()}
    assert sorted(rows) == ["a", "b", "e"] and "_inbedder_gone" not in table.schema().to_arrow().names
    assert rows["b"]["A_embedding"] == 20.0 and rows["b"][KEY_HASH] == "hB" and rows["a"]["A_embedding"] == 1.0
    merges = [c for c in table.history(limit=table.version() - before) if c["operation"] == "MERGE"]
    assert len(merges) == 1 and merges[0]["operationMetrics"]["num_target_rows_deleted"] == 2  # one rewrite


def test_writing_new_vectors_clears_that_instructions_cluster_labels(tmp_path):
    path = str(tmp_path / "out")
    first = pa.table({"id": ["a", "b"], KEY_HASH: ["h1", "h2"], "A_embedding": [1.0, 2.0],
                      "A_cluster": pa.array([0, 1], pa.int32())})
    lake.DeltaOutput(path, "id").merge_rows(first, _meta("A"), lake.WaveId("r", "a", 0))
    lake.DeltaOutput(path, "id").merge_rows(pa.table({"id": ["b"], KEY_HASH: ["hY"], "A_embedding": [9.0]}),
                                            _meta("A"), lake.WaveId("r", "a", 1))
    rows = {r["id"]: r for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert rows["a"]["A_cluster"] == 0 and rows["b"]["A_cluster"] is None and rows["b"]["A_embedding"] == 9.0


def test_the_output_file_size_option_cuts_waves_into_files_of_that_size(tmp_path):
    import numpy as np

    rows = 20_000
    data = pa.table({"id": [f"k{i}" for i in range(rows)], KEY_HASH: [f"h{i}" for i in range(rows)],
                     "q_embedding": pa.array(list(np.random.default_rng(0).random((rows, 64), dtype=np.float32)),
                                             pa.list_(pa.float32()))})  # ~5.5 MB of vectors
    sized, plain = str(tmp_path / "sized"), str(tmp_path / "plain")
    lake.DeltaOutput(sized, "id", target_file_bytes=2**20).merge_rows(data, _meta("q"), lake.WaveId("r", "a", 0))
    lake.DeltaOutput(plain, "id").merge_rows(data, _meta("q"), lake.WaveId("r", "a", 0))
    assert len(DeltaTable(plain).file_uris()) == 1
    assert 4 <= len(DeltaTable(sized).file_uris()) <= 8  # about 1 MB each
    assert DeltaTable(sized).metadata().configuration["delta.targetFileSize"] == str(2**20)
    assert DeltaTable(sized).to_pyarrow_table().sort_by("id").equals(DeltaTable(plain).to_pyarrow_table().sort_by("id"))
    more = data.slice(0, 5_000)  # a later wave (a MERGE) keeps to the size as well
    lake.DeltaOutput(sized, "id", target_file_bytes=2**20).merge_rows(more, _meta("q"), lake.WaveId("r", "a", 1))
    assert all(p.stat().st_size < 2 * 2**20 for p in (tmp_path / "sized").glob("*.parquet"))


# --- waves of new keys: appended, not merged -----------------------------------------------

def _wave(tmp_path, name: str, ids: list[str], value: float = 1.0, key_type=pa.string()) -> lake.StagedWave:
    schema = pa.schema([("id", key_type), (KEY_HASH, pa.string()), ("q_embedding", pa.list_(pa.float32())),
                        (lake.ERROR, pa.string())])
    batch = pa.record_batch([pa.array(ids, key_type), pa.array([f"h{i}" for i in ids]),
                             pa.array([[value, value]] * len(ids), pa.list_(pa.float32())),
                             pa.array([None] * len(ids), pa.string())], schema=schema)
    files = lake.write_staged_files([batch], str(tmp_path / "out" / lake.STAGING / name), schema, "id", "p0",
                                    2**30)
    return lake.StagedWave(tuple(files), schema)


def _append(path: str, wave: lake.StagedWave, n: int, base: int | lake.DeltaOutput, run: str = "run"):
    """Append as a run does: `base` is the run's output object, or the version whose keys its plan read."""
    output = base if isinstance(base, lake.DeltaOutput) else _output_read_at(path, base)
    written = output.append_rows(wave, _meta("q"), lake.WaveId(run, "a1", n))
    return written.version, written.how


def _output_read_at(path: str, version: int) -> lake.DeltaOutput:
    output = lake.DeltaOutput(path, "id")
    output.checked_version = version
    return output


def _history(path: str) -> list[str]:
    return [c["operation"] for c in reversed(DeltaTable(path).history())]


def test_a_wave_of_new_keys_is_appended_from_its_staged_files_without_a_merge(tmp_path):
    path = str(tmp_path / "out")
    first, second = _wave(tmp_path, "w0", ["a", "b"]), _wave(tmp_path, "w1", ["c"])
    assert _append(path, first, 0, -1) == (DeltaTable(path).version(), "append")  # created, then its record set
    version, how = _append(path, second, 1, -1)
    assert how == "append" and version == DeltaTable(path).version()
    table = DeltaTable(path)
    assert sorted(table.to_pyarrow_table().column("id").to_pylist()) == ["a", "b", "c"]
    assert "MERGE" not in _history(path) and table.transaction_version(app_id("run")) == 1
    assert lake.OutputMeta.from_properties(dict(table.metadata().configuration)) == _meta("q")
    # the files moved from staging into the table, with the key's range for data skipping
    assert not list((tmp_path / "out" / lake.STAGING).rglob("*.parquet"))
    adds = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    assert sorted(adds["num_records"]) == [1, 2] and sorted(adds["min.id"]) == ["a", "c"]
    assert _append(path, second, 1, -1) == (None, "skipped")  # a wave committed before is skipped
    assert table.to_pyarrow_table().num_rows == 3


def test_an_append_becomes_a_merge_when_another_writer_added_rows_since_the_keys_were_read(tmp_path):
    path = str(tmp_path / "out")
    _append(path, _wave(tmp_path, "w0", ["a"]), 0, -1)
    base = DeltaTable(path).version()
    check = _output_read_at(path, base)  # one per run: each wave reads only the commits since the last
    lake.DeltaOutput(path, "id").set_meta(_meta("q", "other"))  # a metadata commit adds no key: appending is safe
    assert _append(path, _wave(tmp_path, "w1", ["b"]), 1, check)[1] == "append"
    assert check.checked_version == DeltaTable(path).version() and not check.others_added_rows
    # another run embedded key c meanwhile (its own append)
    _append(path, _wave(tmp_path, "x0", ["c"], value=5.0), 0, base, run="other")
    late = _wave(tmp_path, "w2", ["c", "d"], value=2.0)
    version, how = _append(path, late, 2, check)
    rows = {r["id"]: r["q_embedding"] for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert how == "merge" and version == DeltaTable(path).version()
    assert sorted(rows) == ["a", "b", "c", "d"] and rows["c"] == [2.0, 2.0]  # one row per key
    moved_name = "part-" + Path(late.files[0].path).name
    assert not (tmp_path / "out" / moved_name).exists()  # the wave's files never entered the table's folder
    # the other writer's keys may overlap any later wave of this run too: those are merged as well
    assert _append(path, _wave(tmp_path, "w3", ["e"]), 3, check)[1] == "merge" and check.others_added_rows


def test_a_writer_racing_in_between_the_check_and_the_commit_turns_the_append_into_a_merge(tmp_path, monkeypatch):
    path = str(tmp_path / "out")
    _append(path, _wave(tmp_path, "w0", ["a"]), 0, -1)
    base = DeltaTable(path).version()
    checked = lake.DeltaOutput._rows_added_by_others

    def check_then_race(output, *args):
        answer = checked(output, *args)
        if not getattr(check_then_race, "raced", False):
            check_then_race.raced = True  # after the check, before the commit: another writer adds key b
            _append(path, _wave(tmp_path, "x0", ["b"], value=5.0), 0, base, run="other")
        return answer

    monkeypatch.setattr(lake.DeltaOutput, "_rows_added_by_others", check_then_race)
    wave = _wave(tmp_path, "w1", ["b"], value=2.0)
    assert _append(path, wave, 1, base)[1] == "merge"  # the append at the checked version was refused
    rows = {r["id"]: r["q_embedding"] for r in DeltaTable(path).to_pyarrow_table().to_pylist()}
    assert sorted(rows) == ["a", "b"] and rows["b"] == [2.0, 2.0]
    assert not (tmp_path / "out" / ("part-" + Path(wave.files[0].path).name)).exists()  # read, merged, removed


def test_staged_files_with_another_key_type_are_merged_so_they_are_cast(tmp_path):
    path = str(tmp_path / "out")
    _append(path, _wave(tmp_path, "w0", ["1"]), 0, -1)
    rows = DeltaTable(path).to_pyarrow_table()
    assert rows.schema.field("id").type in (pa.string(), pa.large_string(), pa.string_view())
    wave = _wave(tmp_path, "w1", ["2"], key_type=pa.large_string())
    assert _append(path, wave, 1, DeltaTable(path).version())[1] in ("append", "merge")  # same Delta type: string


def test_appends_checkpoint_every_ten_commits_unless_the_table_chose_an_interval(tmp_path):
    path = str(tmp_path / "out")
    check = lake.DeltaOutput(path, "id")  # one handle for the run, brought up to date commit by commit
    for n in range(12):
        _append(path, _wave(tmp_path, f"w{n}", [f"k{n}"]), n, check)
    table = DeltaTable(path)
    assert table.metadata().configuration["delta.checkpointInterval"] == "10"
    assert list((tmp_path / "out" / "_delta_log").glob("*.checkpoint.parquet"))  # replay stays short
    assert table.to_pyarrow_table().num_rows == 12 and check.checked_version == table.version()
    table.alter.set_table_properties({"delta.checkpointInterval": "50"})
    _append(path, _wave(tmp_path, "w12", ["k12"]), 12, check)
    assert DeltaTable(path).metadata().configuration["delta.checkpointInterval"] == "50"


def test_a_merge_source_is_materialized_only_when_its_key_range_meets_few_of_the_outputs_files(tmp_path):
    from inbedder.lake.delta_output import source_range_skips_files

    path = str(tmp_path / "out")
    for wave in range(10):  # ten files: keys 0-99, 100-199, ...
        keys = list(range(wave * 100, wave * 100 + 100))
        rows = pa.table({"id": pa.array(keys, pa.int64()), KEY_HASH: [f"h{k}" for k in keys],
                         "A_embedding": [float(k) for k in keys]})
        lake.DeltaOutput(path, "id").merge_rows(rows, _meta("A"), lake.WaveId("r", "a", wave))
    table = DeltaTable(path)
    assert source_range_skips_files(table, "id", pa.chunked_array([pa.array([510, 520, 590], pa.int64())]))
    assert not source_range_skips_files(table, "id", pa.chunked_array([pa.array([5, 990], pa.int64())]))
    assert not source_range_skips_files(table, "id", pa.chunked_array([pa.array([None], pa.int64())]))
    # the materialized MERGE rewrites the one file that holds the keys, and every other row stays as it was
    update = pa.table({"id": pa.array([510, 520], pa.int64()), KEY_HASH: ["x", "y"], "A_embedding": [-1.0, -2.0]})
    before = table.version()
    lake.DeltaOutput(path, "id").merge_rows(update, _meta("A"), lake.WaveId("r", "a", 10))
    table = DeltaTable(path)
    (merge,) = [c for c in table.history(limit=table.version() - before) if c["operation"] == "MERGE"]
    assert merge["operationMetrics"]["num_target_files_removed"] == 1
    values = dict(zip(*table.to_pyarrow_table(columns=["id", "A_embedding"]).to_pydict().values()))
    assert len(values) == 1000 and values[510] == -1.0 and values[520] == -2.0 and values[511] == 511.0


def test_only_real_commit_conflicts_are_retried():
    from deltalake.exceptions import CommitFailedError, DeltaError

    from inbedder.lake.delta_output import is_conflict as _is_conflict

    assert _is_conflict(CommitFailedError("Commit failed: a concurrent transaction deleted data this operation read"))
    assert _is_conflict(DeltaError("Transaction failed: Version 7 already exists"))
    assert _is_conflict(DeltaError("Concurrent append failed"))
    assert not _is_conflict(DeltaError("Schema error: invalid data type for version column"))
    assert not _is_conflict(DeltaError("Generic error: transaction log file not found"))
