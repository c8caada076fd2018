"""jobs/cron/inbedder-cron.sh: runs the real job, keeps a log, refuses to overlap, fails loudly."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from deltalake import DeltaTable

from .conftest import REPO

SCRIPT = REPO / "jobs" / "cron" / "inbedder-cron.sh"


def _config(tmp_path: Path, tiny_dir: Path, source: Path) -> Path:
    config = {"input": {"path": str(source), "key": "id", "text": "text"},
              "instructions": {"intent": "What does the customer want?"},
              "model": {"name": str(tiny_dir)},
              "spark": {"master": "local[1]", "rows_per_partition": 20},
              "output": {"path": str(tmp_path / "out"), "format": "delta"},
              "progress": False}
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, log_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "INBEDDER_BIN": str(Path(sys.executable).parent / "inbedder"),
           "INBEDDER_LOG_DIR": str(log_dir)}
    return subprocess.run(["bash", str(SCRIPT), str(config)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cron_runs_the_job_and_keeps_its_log(tmp_path, tiny_dirs, sample_rows):
    source = tmp_path / "src.parquet"
    pq.write_table(sample_rows.slice(0, 30), source)
    result = _run(_config(tmp_path, tiny_dirs["llama"], source), tmp_path / "logs")
    assert result.returncode == 0, result.stderr
    assert DeltaTable(str(tmp_path / "out")).to_pyarrow_table().num_rows == 30
    logs = list((tmp_path / "logs").glob("nightly-*.log"))
    assert len(logs) == 1 and "finished with exit status 0" in logs[0].read_text()
    assert "succeeded" in logs[0].read_text()


def test_an_overlapping_run_is_refused(tmp_path, tiny_dirs):
    config = _config(tmp_path, tiny_dirs["llama"], tmp_path / "unused.parquet")
    (tmp_path / "logs").mkdir()
    with open(tmp_path / "logs" / "nightly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a run in progress
        result = _run(config, tmp_path / "logs", timeout=30)
    assert result.returncode == 75 and "not starting an overlapping run" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_failing_job_exits_non_zero_with_the_reason_in_the_log(tmp_path, tiny_dirs):
    result = _run(_config(tmp_path, tiny_dirs["llama"], tmp_path / "missing.parquet"), tmp_path / "logs")
    assert result.returncode != 0 and "failed" in result.stderr
    log = next((tmp_path / "logs").glob("nightly-*.log")).read_text()
    assert "missing.parquet" in log and f"finished with exit status {result.returncode}" in log
