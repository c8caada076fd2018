"""The job against clusters it did not start: a standalone Spark master + worker and a Ray head + worker.

Everything listens on 127.0.0.1 and runs in its own process group, apart from the
test session's own Spark and Ray; the job itself runs as a separate process, as
spark-submit would run it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

BIN = Path(sys.executable).parent
ENV = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, "RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise TimeoutError(f"{what} did not come up in {timeout:.0f}s")


def _json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.load(r)
    except OSError:
        return None


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=ENV, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    import pyspark

    logs = tmp_path_factory.mktemp("cluster-logs")
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    spark_port, spark_ui, ray_port = _free_port(), _free_port(), _free_port()
    ray_tmp = Path("/tmp") / f"rt{os.getpid()}"  # Ray's socket paths must stay short
    procs = [
        _start([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                "--port", str(spark_port), "--webui-port", str(spark_ui)], logs / "spark-master.log"),
        _start([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                "--port", str(ray_port), "--num-cpus", "1", "--include-dashboard", "false",
                "--object-store-memory", str(300 * 2**20), "--temp-dir", str(ray_tmp)], logs / "ray-head.log"),
    ]
    try:
        _wait(lambda: (_json(f"http://127.0.0.1:{spark_ui}/json") or {}).get("status") == "ALIVE", "Spark master")
        procs.append(_start([str(spark_class), "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                             "--cores", "2", "--memory", "3g", f"spark://127.0.0.1:{spark_port}"],
                            logs / "spark-worker.log"))
        time.sleep(5)  # the head's GCS must answer before a worker joins
        procs.append(_start([str(BIN / "ray"), "start", "--block", "--address", f"127.0.0.1:{ray_port}",
                             "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                             "--object-store-memory", str(300 * 2**20)], logs / "ray-worker.log"))
        _wait(lambda: len((_json(f"http://127.0.0.1:{spark_ui}/json") or {}).get("workers", [])) == 1,
              "Spark worker")
        _wait(lambda: _ray_nodes(ray_port) == 2, "Ray worker node")
        yield {"spark": f"spark://127.0.0.1:{spark_port}", "spark_ui": spark_ui, "ray": f"127.0.0.1:{ray_port}",
               "logs": logs}
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _ray_nodes(port: int) -> int:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    result = subprocess.run([sys.executable, "-c", probe, f"127.0.0.1:{port}"], env=ENV, capture_output=True,
                            text=True, timeout=60)
    return int(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 and result.stdout.strip() else 0


@pytest.mark.timeout(900)
def test_the_job_runs_on_a_standalone_spark_and_a_separately_started_ray(clusters, tmp_path, sample_rows, tiny_dirs):
    from inbedder import InBedder

    source = tmp_path / "src.parquet"
    pq.write_table(sample_rows.slice(0, 60), source)
    config = {"input": {"path": str(source), "key": "id", "text": "text"},
              "instructions": {"intent": "What does the customer want?"},
              "model": {"name": str(tiny_dirs["llama"]), "max_length": 96},
              "spark": {"master": clusters["spark"], "rows_per_partition": 20,
                        "conf": {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                                 "spark.executor.cores": "1", "spark.cores.max": "2",
                                 "spark.executorEnv.RAY_AUTH_MODE": "disabled"}},
              "ray": {"address": clusters["ray"], "cpus_per_replica": 0.5, "replicas": 2},
              "output": {"path": str(tmp_path / "out"), "format": "delta"},
              "report_path": str(tmp_path / "report.json"), "progress": False}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run([str(BIN / "inbedder"), "embed", "--config", str(tmp_path / "job.yaml")], env=ENV,
                         capture_output=True, text=True, timeout=800)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "succeeded" and report["rows_embedded"] == 60
    out = DeltaTable(str(tmp_path / "out")).to_pyarrow_table().sort_by("id")
    expected = InBedder.from_pretrained(str(tiny_dirs["llama"]), max_length=96).encode(
        sample_rows.slice(0, 60).sort_by("id").column("text").to_pylist(), "What does the customer want?")
    got = np.array(out.column("intent_embedding").to_pylist(), dtype=np.float32)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() > 0.9999
    apps = (_json(f"http://127.0.0.1:{clusters['spark_ui']}/json") or {}).get("completedapps", [])
    assert any(a["name"] == "inbedder-embed" for a in apps), "the job did not run on the standalone master"
