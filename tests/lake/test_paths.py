"""Paths as each reader spells them, and folders swapped in whole."""

import pytest

from inbedder.fs import replace_folder
from inbedder.lake import local_path, spark_uri


def test_spark_gets_s3a_and_local_uris_become_paths():
    assert spark_uri("s3://lake/out") == "s3a://lake/out" and spark_uri("/data/out") == "/data/out"
    assert local_path("file:///tmp/a%20b.parquet") == "/tmp/a b.parquet" and local_path("s3://x/y") is None


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out"
    replace_folder(target, lambda f: (f / "a").write_text("1"))
    assert (target / "a").read_text() == "1"

    def broken(folder):
        (folder / "b").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        replace_folder(target, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (target / "a").read_text() == "1"
