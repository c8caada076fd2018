"""OPTIMIZE keeps rows, metadata and the waves' idempotence record."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

from inbedder import lake
from inbedder.lake import KEY_HASH, OutputMeta


def _meta(*names: str) -> OutputMeta:
    return OutputMeta("m", "f", "t", 1, "id", {n: f"{n}?" for n in names})


def test_compaction_keeps_rows_and_metadata_in_fewer_files(tmp_path):
    from click.testing import CliRunner

    from inbedder.cli import main

    path = str(tmp_path / "out")
    meta = _meta("q")
    for wave in range(6):  # six small waves, as six incremental runs leave them
        keys = [f"k{wave}-{i}" for i in range(20)]
        data = pa.table({"id": keys, KEY_HASH: keys, "q_embedding": pa.array([[float(i)] for i in range(20)],
                                                                           pa.list_(pa.float32()))})
        lake.DeltaOutput(path, "id").merge_rows(data, meta, lake.WaveId("run", "a", wave))
    before = DeltaTable(path).to_pyarrow_table().sort_by("id")
    files_before = len(DeltaTable(path).file_uris())
    result = CliRunner().invoke(main, ["optimize", "--table", path])
    assert result.exit_code == 0, result.output
    after = DeltaTable(path)
    assert len(after.file_uris()) == 1 < files_before and f"{files_before} -> 1 files" in result.output
    assert after.to_pyarrow_table().sort_by("id").equals(before)
    assert lake.OutputMeta.from_delta(after.metadata()) == meta
    assert lake.DeltaOutput(path, "id").committed_wave("run") == 5  # the waves' idempotence record survives
    orphan = tmp_path / "out" / "part-p00000-000-killed.parquet"  # moved in by a run killed before its commit
    orphan.write_bytes((tmp_path / "out" / Path(after.file_uris()[0]).name).read_bytes())
    vacuumed = CliRunner().invoke(main, ["optimize", "--table", path, "--vacuum-hours", "0"])
    assert f"{files_before + 1} unreferenced files deleted" in vacuumed.output and not orphan.exists()
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 1
    assert DeltaTable(path).to_pyarrow_table().sort_by("id").equals(before)
    refused = CliRunner().invoke(main, ["optimize", "--table", str(tmp_path)])
    assert refused.exit_code != 0 and "is not a Delta table" in refused.output
