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
