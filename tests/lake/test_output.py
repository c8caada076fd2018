"""The output-table objects: one lifecycle (start, write, complete, abort) for every format, without Spark."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from inbedder import lake
from inbedder.lake import KEY_HASH, OutputMeta, SourceState


def _meta() -> OutputMeta:
    return OutputMeta("m", "f", "t", 2, "id", {"q": "q?"}, "body")


def _stage(output: lake.OutputTable, wave: lake.WaveId, ids: list[str], value: float) -> lake.StagedWave:
    schema = pa.schema([("id", pa.string()), (KEY_HASH, pa.string()), ("q_embedding", pa.list_(pa.float32())),
                        (lake.ERROR, pa.string())])
    batch = pa.record_batch([pa.array(ids), pa.array([f"h-{i}" for i in ids]),
                             pa.array([[value, value]] * len(ids), pa.list_(pa.float32())),
                             pa.array([None] * len(ids), pa.string())], schema=schema)
    files = lake.write_staged_files([batch], output.staging_for(wave), schema, "id", "p0", 2**30)
    return lake.StagedWave(tuple(files), schema)


def _completion(run_id: str, keys: list[str], gone: list[str] = ()) -> lake.Completion:
    return lake.Completion(run_id, _meta(), SourceState("digest", len(keys)), len(gone),
                           gone_keys=lambda: pa.array(list(gone)), source_keys=lambda: pa.array(keys))


def _rows(output: lake.OutputTable) -> dict[str, list[float] | None]:
    table = lake.open_dataset(output.path).to_table(columns=["id", "q_embedding"])
    return dict(zip(table.column("id").to_pylist(), table.column("q_embedding").to_pylist()))


def _run(path: str, fmt: str, run_id: str, ids: list[str], value: float, new_keys: bool = True,
         source: list[str] | None = None, gone: list[str] = ()) -> tuple[lake.OutputTable, int]:
    """One run of one wave, as the job does it: open, start, write, complete. Returns the output and rows deleted."""
    output = lake.open_output_table(path, fmt, "id")
    with output.writing(run_id, "a1"):
        wave = output.next_wave()
        output.write(wave, lake.WaveWrite(_stage(output, wave, ids, value), new_keys=new_keys), _meta())
        deleted = output.complete(_completion(run_id, source or ids, gone=gone))
    return output, deleted


def _files(folder) -> dict:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_a_run_writes_its_waves_and_completes_with_the_gone_keys_removed(tmp_path, fmt):
    path = str(tmp_path / "out")
    first, _ = _run(path, fmt, "run1", ["a", "b", "c"], 1.0)
    assert _rows(first) == {"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]}
    assert not (tmp_path / "out" / lake.STAGING).exists()

    assert lake.open_output_table(path, fmt, "id").existing.meta == _meta()
    second, deleted = _run(path, fmt, "run2", ["b"], 2.0, new_keys=False, source=["a", "b"], gone=["c"])  # b changed
    assert deleted == 1 and _rows(second) == {"a": [1.0, 1.0], "b": [2.0, 2.0]}
    assert not (tmp_path / "out" / lake.STAGING).exists()


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_an_aborted_run_leaves_the_output_as_it_was_and_no_staged_files(tmp_path, fmt):
    path = str(tmp_path / "out")
    _run(path, fmt, "run1", ["a", "b"], 1.0)
    before = _files(tmp_path / "out")

    again = lake.open_output_table(path, fmt, "id")
    with pytest.raises(RuntimeError, match="replica died"):
        with again.writing("run2", "a1"):
            wave = again.next_wave()
            _stage(again, wave, ["a"], 9.0)  # staged, never written: the run dies here
            raise RuntimeError("replica died")
    assert _rows(again) == {"a": [1.0, 1.0], "b": [1.0, 1.0]}
    assert not (tmp_path / "out" / lake.STAGING).exists()
    assert _files(tmp_path / "out") == before  # not one byte of the committed output changed, no file added


def test_a_parquet_output_holds_its_waves_until_complete(tmp_path):
    path = str(tmp_path / "out")
    output = lake.open_output_table(path, "parquet", "id")
    with output.writing("run1", "a1"):
        wave = output.next_wave()
        written = output.write(wave, lake.WaveWrite(_stage(output, wave, ["a"], 1.0), new_keys=True), _meta())
        assert written == lake.Written(None, "buffered") and not (tmp_path / "out" / "part-00000.parquet").exists()
        output.complete(_completion("run1", ["a"]))
    schema = pq.read_schema(tmp_path / "out" / "part-00000.parquet")
    assert OutputMeta.from_fields(schema) is None and lake.existing_output(path, "parquet").meta == _meta()
    assert output.unchanged_state("digest") is None  # no log to keep the source state in: a re-run plans


def test_a_retried_run_numbers_its_waves_after_those_it_committed(tmp_path):
    """Delta records (run, wave) with each commit: the second attempt of a run skips what the first did."""
    path = str(tmp_path / "out")
    first = lake.open_output_table(path, "delta", "id")
    first.start("run1", "a1")
    for ids in (["a"], ["b"]):
        wave = first.next_wave()
        first.write(wave, lake.WaveWrite(_stage(first, wave, ids, 1.0), new_keys=True), _meta())
    first.abort(RuntimeError("killed after two waves"))

    second = lake.open_output_table(path, "delta", "id")
    second.start("run1", "a2")
    assert second.next_wave() == lake.WaveId("run1", "a2", 2)
    again = lake.WaveId("run1", "a2", 1)  # a wave the first attempt committed is skipped, not written twice
    written = second.write(again, lake.WaveWrite(_stage(second, again, ["b"], 5.0), new_keys=True), _meta())
    assert written.how == "skipped" and _rows(second) == {"a": [1.0, 1.0], "b": [1.0, 1.0]}
    second.complete(_completion("run1", ["a", "b"]))
    assert second.unchanged_state("digest") == SourceState("digest", 2)


def test_a_lost_commit_race_is_retried_and_any_other_failure_is_not(tmp_path, monkeypatch):
    from deltalake.exceptions import CommitFailedError, DeltaError

    path = str(tmp_path / "out")
    output = lake.DeltaOutput(path, "id")
    rows = pa.table({"id": ["a"], KEY_HASH: ["h"], "q_embedding": pa.array([[1.0, 1.0]], pa.list_(pa.float32()))})
    output.merge_rows(rows, _meta(), lake.WaveId("r", "a", 0))
    real = lake.DeltaOutput._merge_once
    calls: list[int] = []

    def racing(self, *args):
        calls.append(1)
        if len(calls) == 1:  # another writer commits the version this try meant to write
            DeltaTable(path).alter.set_table_properties({"delta.appendOnly": "false"})
            raise CommitFailedError("Commit failed: a concurrent transaction deleted data this operation read")
        return real(self, *args)

    monkeypatch.setattr(lake.DeltaOutput, "_merge_once", racing)
    assert output.merge_rows(rows, _meta(), lake.WaveId("r", "a", 1)) == DeltaTable(path).version()
    assert len(calls) == 2

    def broken(self, *args):
        calls.append(1)
        raise DeltaError("Schema error: invalid data type for version column")

    calls.clear()
    monkeypatch.setattr(lake.DeltaOutput, "_merge_once", broken)
    with pytest.raises(DeltaError, match="Schema error"):
        output.merge_rows(rows, _meta(), lake.WaveId("r", "a", 2))
    assert len(calls) == 1


def test_another_writers_rows_in_the_log_turn_the_runs_appends_into_merges(tmp_path):
    path = str(tmp_path / "out")
    ours = lake.open_output_table(path, "delta", "id")
    ours.start("run1", "a1")
    wave = ours.next_wave()
    assert ours.write(wave, lake.WaveWrite(_stage(ours, wave, ["a"], 1.0), new_keys=True), _meta()).how == "append"
    # another writer's commit in the log: an INSERT of key b
    import deltalake

    deltalake.write_deltalake(path, pa.table({"id": ["b"], KEY_HASH: ["h-b"], "q_embedding": pa.array(
        [[7.0, 7.0]], pa.list_(pa.float32())), lake.ERROR: pa.array([None], pa.string())}), mode="append")
    wave = ours.next_wave()
    written = ours.write(wave, lake.WaveWrite(_stage(ours, wave, ["b", "c"], 2.0), new_keys=True), _meta())
    assert written.how == "merge" and ours.others_added_rows
    ours.complete(_completion("run1", ["a", "b", "c"]))
    assert _rows(ours) == {"a": [1.0, 1.0], "b": [2.0, 2.0], "c": [2.0, 2.0]}  # one row per key


def test_an_unknown_format_is_refused_in_one_line(tmp_path):
    with pytest.raises(lake.TableError, match="unknown output format 'iceberg': use one of delta, parquet"):
        lake.open_output_table(str(tmp_path / "out"), "iceberg", "id")


def test_a_path_that_holds_another_table_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.csv").write_text("id\n1\n")
    with pytest.raises(lake.TableError, match="exists and is not a Delta table"):
        lake.open_output_table(str(tmp_path / "out"), "delta", "id")
    (tmp_path / "file").write_text("x")
    with pytest.raises(lake.TableError, match="is a file, not a folder"):
        lake.open_output_table(str(tmp_path / "file"), "parquet", "id")
