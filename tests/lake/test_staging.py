"""Staging: a live attempt's files are never swept; a dead attempt's always are."""

from __future__ import annotations

from inbedder import lake


def test_staging_of_dead_attempts_is_swept_and_a_live_attempts_kept(tmp_path):
    out = str(tmp_path / "out")
    dead = tmp_path / "out" / lake.STAGING / "run1" / "killed" / "wave-3" / "_temporary" / "0"
    dead.mkdir(parents=True)
    (dead / "part-0.parquet").write_bytes(b"half written")
    # what a killed attempt leaves: its lock file, which no process holds any more
    (tmp_path / "out" / lake.STAGING / "run1" / "killed" / lake.StagingLease.LOCK).touch()
    legacy = tmp_path / "out" / lake.STAGING / "run0" / "old" / "wave-0" / "_temporary"
    legacy.mkdir(parents=True)  # from a version without leases: empty folders only
    with lake.StagingLease(out, "run1/live") as live:
        (live.folder / "wave-0").mkdir()
        (live.folder / "wave-0" / "part-0.parquet").write_bytes(b"being written")
        assert lake.sweep_staging(out) == 2
        assert (live.folder / "wave-0" / "part-0.parquet").exists()
        assert not (tmp_path / "out" / lake.STAGING / "run1" / "killed").exists()
        assert not (tmp_path / "out" / lake.STAGING / "run0").exists()
    assert not (tmp_path / "out" / lake.STAGING).exists()  # the lease's own folder goes when it ends


def test_a_lease_on_a_new_output_leaves_no_empty_folder(tmp_path):
    with lake.StagingLease(str(tmp_path / "new"), "r/a"):
        assert (tmp_path / "new" / lake.STAGING / "r" / "a").is_dir()
    assert not (tmp_path / "new").exists()


def test_executors_stage_a_wave_in_files_cut_at_the_target_size_with_their_key_ranges(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inbedder.lake import ERROR, write_staged_files

    schema = pa.schema([("id", pa.int64()), ("v", pa.list_(pa.float32())), (ERROR, pa.string())])
    batches = [pa.record_batch([pa.array(range(s, s + 1000), pa.int64()),
                                pa.array(list(np.ones((1000, 64), np.float32)), pa.list_(pa.float32())),
                                pa.array(["bad" if i % 100 == 0 else None for i in range(1000)], pa.string())],
                               schema=schema) for s in range(0, 10_000, 1000)]  # ~260 kB each
    files = write_staged_files(batches, str(tmp_path / "stage"), schema, "id", "p00003", 2**20)
    assert len(files) == 3  # 4 + 4 + 2 batches
    assert [f.rows for f in files] == [4000, 4000, 2000] and sum(f.errors for f in files) == 100
    assert [(f.key_min, f.key_max) for f in files] == [(0, 3999), (4000, 7999), (8000, 9999)]
    read = pa.concat_tables(pq.read_table(f.path) for f in files)
    assert read.schema.equals(schema) and read.column("id").to_pylist() == list(range(10_000))
    assert all(f.bytes == (tmp_path / "stage" / f.path.rsplit("/", 1)[-1]).stat().st_size for f in files)
    assert write_staged_files([], str(tmp_path / "empty"), schema, "id", "p0", 2**20) == []


def test_staged_vectors_are_written_plain_without_statistics_and_read_back_exactly(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from inbedder.lake import ERROR, write_staged_files

    vectors = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32)
    schema = pa.schema([("id", pa.int64()), ("v", pa.list_(pa.float32())), (ERROR, pa.string())])
    batch = pa.record_batch([pa.array(range(2000), pa.int64()), pa.array(list(vectors), pa.list_(pa.float32())),
                             pa.nulls(2000, pa.string())], schema=schema)
    (staged,) = write_staged_files([batch], str(tmp_path / "stage"), schema, "id", "p0", 2**30)
    column = {pq.ParquetFile(staged.path).metadata.row_group(0).column(i).path_in_schema:
              pq.ParquetFile(staged.path).metadata.row_group(0).column(i) for i in range(3)}
    vector_chunk = column["v.list.element"]
    # a dictionary of random floats only grows the file and slows the writer; min/max of floats help no reader
    assert not any("DICTIONARY" in e for e in vector_chunk.encodings) and not vector_chunk.is_stats_set
    assert column["id"].is_stats_set and (column["id"].statistics.min, column["id"].statistics.max) == (0, 1999)
    read = pq.read_table(staged.path)
    assert np.array_equal(np.stack(read.column("v").to_numpy(zero_copy_only=False)), vectors)
