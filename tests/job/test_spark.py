"""How the run hands a source snapshot to Spark (a recording reader stands in for spark.read)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from inbedder import lake
from inbedder.job.spark import read_source


class RecordingReader:
    def __init__(self):
        self.options: dict[str, str] = {}
        self.files: tuple[str, ...] = ()

    def option(self, key: str, value: str) -> RecordingReader:
        self.options[key] = value
        return self

    def parquet(self, *files: str) -> RecordingReader:
        self.files = files
        return self


class RecordingSpark:
    def __init__(self):
        self.read = RecordingReader()


SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("category", pa.string())])


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
def test_a_partitioned_remote_source_keeps_its_partition_columns(fmt):

    files = ["s3://bucket/t/category=a/part-0.parquet", "s3://bucket/t/category=b/part-0.parquet"]
    snapshot = lake.Snapshot("s3://bucket/t/", fmt, 3 if fmt == "delta" else None, files, SCHEMA, ["category"])
    read = read_source(RecordingSpark(), snapshot)
    assert read.options == {"basePath": "s3a://bucket/t"}
    assert read.files == ("s3a://bucket/t/category=a/part-0.parquet", "s3a://bucket/t/category=b/part-0.parquet")


def test_an_unpartitioned_source_is_read_as_its_files_only(tmp_path):

    files = [str(tmp_path / "part-0.parquet"), str(tmp_path / "part-1.parquet")]
    read = read_source(RecordingSpark(), lake.Snapshot(str(tmp_path), "parquet", None, files, SCHEMA))
    assert read.options == {}
    assert read.files == tuple(files)
