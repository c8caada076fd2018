"""What a run starts on this machine listens on loopback only and ends when its driver is killed."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inbedder.job import local_cluster

pytestmark = pytest.mark.timeout(300)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _listening(procs: list[psutil.Process]) -> list[tuple[str, str, int]]:
    found = []
    for proc in procs:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((proc.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue
    return found


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_a_running_job_listens_on_loopback_only_and_ends_with_its_killed_driver(tmp_path, tiny_dirs):
    src = tmp_path / "src.parquet"
    rows = 20000  # long enough to be caught while embedding
    pq.write_table(pa.table({"id": list(range(rows)), "text": [f"move {i} dollars to savings" for i in range(rows)]}),
                   src)
    cmd = [sys.executable, "-m", "inbedder.cli", "embed", "--input", str(src), "--key", "id", "--text", "text",
           "--output", str(tmp_path / "out"), "--model", str(tiny_dirs["llama"]), "--instruction=q=What is it?",
           "--set", "progress=false", "--set", "ray.batch_rows=64"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # as a user's shell would have it
    driver = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        seen: list[psutil.Process] = []
        while time.time() < deadline and driver.poll() is None:
            seen = _descendants(driver.pid)
            running = " ".join(_command(p) for p in seen)
            if "Replica" in running and "pyspark" in running:
                break
            time.sleep(0.5)
        assert driver.poll() is None, "the job ended before it could be observed"
        time.sleep(2)  # let the Spark workers connect to the replicas
        seen = _descendants(driver.pid)
        sockets = _listening([psutil.Process(driver.pid), *seen])
        assert sockets, "no listening socket found: the check would prove nothing"
        exposed = [s for s in sockets if not _is_loopback(s[1])]
        assert not exposed, f"listening beyond loopback: {exposed}"
        assert {"gcs_server", "raylet", "java"} <= {s[0] for s in sockets}
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver alone, as the OOM killer would
        driver.wait()
    ours = [p for p in seen if "local_cluster" not in _command(p)]
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(p) for p in ours):
        time.sleep(0.5)
    left = [f"{p.pid} {_command(p)[:80]}" for p in ours if _alive(p)]
    assert not left, f"left behind by the killed driver: {left}"


def _command(proc: psutil.Process) -> str:
    try:
        return f"{proc.name()} {' '.join(proc.cmdline())}"
    except psutil.Error:  # gone, or a zombie
        return ""


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_processes_a_dead_driver_left_are_ended_at_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setattr(local_cluster, "records_dir", lambda: tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_created = psutil.Process(dead.pid).create_time()
    dead.wait()
    orphan = subprocess.Popen(["sleep", "300"])
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        orphan_created = psutil.Process(orphan.pid).create_time()
        (tmp_path / "1-1.driver.json").write_text(json.dumps({"driver": dead.pid, "created": dead_created,
                                                              "markers": []}))
        (tmp_path / "1-1.procs.json").write_text(json.dumps({str(orphan.pid): orphan_created}))
        me = psutil.Process()  # a live driver's processes are never touched
        (tmp_path / "2-2.driver.json").write_text(json.dumps({"driver": me.pid, "created": me.create_time(),
                                                              "markers": []}))
        (tmp_path / "2-2.procs.json").write_text(json.dumps({str(bystander.pid):
                                                             psutil.Process(bystander.pid).create_time()}))
        assert local_cluster.reap_orphans() == 1
        assert orphan.wait(timeout=10) is not None
        assert bystander.poll() is None
        assert not (tmp_path / "1-1.driver.json").exists() and (tmp_path / "2-2.driver.json").exists()
    finally:
        for p in (orphan, bystander):
            p.kill()
            p.wait()


def test_ray_that_cannot_start_is_retried_then_reported_in_one_line(monkeypatch):
    import ray

    calls = []

    def overloaded(**kwargs):
        calls.append(kwargs)
        raise Exception("The current node timed out during startup. This could happen because some of the raylet "
                        "failed to startup or the GCS has become overloaded.")

    monkeypatch.setattr(ray, "init", overloaded)
    monkeypatch.setattr(ray, "shutdown", lambda: None)  # the test session's own cluster stays up
    with pytest.raises(local_cluster.LocalClusterError) as err:
        local_cluster.start_local_ray(object_store_mb=64, namespace="t", num_cpus=1)
    assert len(calls) == 2 and all(c["_node_ip_address"] == "127.0.0.1" for c in calls)
    message = str(err.value)
    assert "\n" not in message and "did not start after 2 tries" in message and "overloaded" in message


def test_pinning_to_loopback_sets_ray_single_node_mode(monkeypatch):
    for name in local_cluster.LOOPBACK_ENV:
        monkeypatch.delenv(name, raising=False)
    local_cluster.pin_to_loopback()
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"
    import ray._private.ray_constants as constants  # read once at import: pinning must reach it too

    assert constants.ENABLE_RAY_CLUSTER is False
