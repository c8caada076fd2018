"""The Ray cluster and Spark JVM a run starts on this machine: loopback only, and gone when the driver is.

Ray resolves `127.0.0.1` to the machine's routable address on Linux, so its
servers (GCS, raylet, workers, agents) would listen on every interface, without
authentication. Single-node mode (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) makes
Ray use the loopback address for all of them; it must be set before Ray is
imported, and is inherited by the Spark workers that connect to the replicas.

A driver killed with SIGKILL cannot stop what it started: a small watchdog
process (`python -m inbedder.job.local_cluster watch`) follows the driver and, when
it is gone, ends the Ray and Spark processes it had started. Its record on disk
lets the next run finish the job should the watchdog itself have been killed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from inbedder.errors import LocalClusterError

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's single-node mode: every server on the loopback address
    "RAY_AUTH_MODE": "disabled",  # a loopback-only cluster; token auth would lock out the Spark workers
    "SPARK_LOCAL_IP": LOOPBACK,
}
# a process is ours when its command line carries one of these (its children are ours too)
SPARK_MARKER = "org.apache.spark.deploy.SparkSubmit"
POLL_S = 1.0
TERM_GRACE_S = 3.0




def pin_to_loopback() -> None:
    """Make Ray and Spark started from this process listen on 127.0.0.1 only."""
    os.environ.update(LOOPBACK_ENV)
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        # Ray was imported before the variable was set: it read the flag already
        constants.ENABLE_RAY_CLUSTER = False


def start_local_ray(*, object_store_mb: int, namespace: str, num_cpus: int, attempts: int = 2) -> dict:
    """Start a loopback-only Ray head in this process; retried once when the machine is too busy to start it.

    Returns Ray's address info. Raises LocalClusterError with a one-line reason.
    """
    from tenacity import RetryError, retry, stop_after_attempt, wait_fixed

    pin_to_loopback()
    import ray

    @retry(stop=stop_after_attempt(attempts), wait=wait_fixed(2.0), reraise=False)
    def start() -> dict:
        try:
            context = ray.init(address="local", include_dashboard=False, _node_ip_address=LOOPBACK,
                               object_store_memory=object_store_mb * 2**20, namespace=namespace,
                               log_to_driver=False, logging_level="ERROR", num_cpus=num_cpus)
        except Exception:
            log.warning("Ray start-up failed; retrying", exc_info=True)
            ray.shutdown()  # a half-started head must not keep its processes
            raise
        return context.address_info

    try:
        info = start()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise LocalClusterError(
            f"the local Ray cluster did not start after {attempts} tries ({first}); the machine is probably "
            "overloaded: retry when fewer jobs run, or point ray.address at a running cluster") from cause
    exposed = [a for a in (info.get("node_ip_address"), (info.get("gcs_address") or "").rsplit(":", 1)[0])
               if a and a != LOOPBACK]
    if exposed:
        ray.shutdown()
        raise LocalClusterError(f"the local Ray cluster came up on {exposed[0]}, not {LOOPBACK}; refusing to run "
                                "unauthenticated Ray on a routable address (was ray imported with "
                                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1?)")
    return info


# --- processes that end with the driver ----------------------------------------------
# Per driver two files: NAME.driver.json (its pid and markers, written by the driver) and
# NAME.procs.json (the processes seen so far, written by its watchdog).

def records_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"inbedder-{os.getuid()}" / "watch"


_record: Path | None = None
_record_lock = threading.Lock()  # Spark and Ray start on two threads


def watch_driver(markers: Iterable[str] = ()) -> None:
    """Start (once per process) the watchdog that ends our Ray and Spark processes when this driver dies."""
    with _record_lock:
        _watch_driver(markers)


def _watch_driver(markers: Iterable[str]) -> None:
    global _record
    if _record is not None:
        data = _read(_record)
        if data is not None:
            data["markers"] = sorted(set(data["markers"]) | set(markers))
            _write(_record, data)
        return
    import psutil

    reap_orphans()
    me = psutil.Process()
    record = records_dir() / f"{me.pid}-{int(me.create_time() * 1000)}.driver.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    _write(record, {"driver": me.pid, "created": me.create_time(), "markers": sorted(set(markers))})
    subprocess.Popen([sys.executable, "-m", "inbedder.job.local_cluster", "watch", str(record)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)
    _record = record


def _procs_file(record: Path) -> Path:
    return record.with_name(record.name.replace(".driver.json", ".procs.json"))


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _ours(driver, markers: list[str]) -> dict[str, float]:
    """The driver's descendants that belong to our Ray session or Spark JVM, with their descendants."""
    import psutil

    found: dict[str, float] = {}
    try:
        descendants = driver.children(recursive=True)
    except psutil.Error:
        return found
    for proc in descendants:
        try:
            cmdline = " ".join(proc.cmdline())
            if any(m in cmdline for m in markers):
                for p in [proc, *proc.children(recursive=True)]:
                    found[str(p.pid)] = p.create_time()
        except psutil.Error:
            continue
    return found


def _alive(pid: int, created: float):
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc if abs(proc.create_time() - created) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def end_processes(processes: dict[str, float]) -> int:
    """SIGTERM, a grace period, then SIGKILL; only processes that are still the ones recorded."""
    import psutil

    live = [p for p in (_alive(int(pid), created) for pid, created in processes.items()) if p is not None]
    for proc in live:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(live, timeout=TERM_GRACE_S)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(still, timeout=TERM_GRACE_S)
    return len(live)


def watch(record: Path) -> None:
    """The watchdog: follow the driver, remember its Ray/Spark processes, end them when it is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver
    data = _read(record)
    if data is None:
        return
    driver = _alive(data["driver"], data["created"])
    known: dict[str, float] = {}
    while driver is not None and _alive(data["driver"], data["created"]) is not None:
        markers = (_read(record) or data)["markers"]
        current = _ours(driver, markers) if markers else {}
        known = {pid: t for pid, t in (known | current).items() if _alive(int(pid), t) is not None}
        _write(_procs_file(record), known)
        time.sleep(POLL_S)
    end_processes(known)
    _procs_file(record).unlink(missing_ok=True)
    record.unlink(missing_ok=True)


def reap_orphans() -> int:
    """End what drivers that died before this one left behind (should their watchdog have died too)."""
    ended = 0
    for record in records_dir().glob("*.driver.json"):
        data = _read(record)
        if data is None or _alive(data["driver"], data["created"]) is not None:
            continue
        ended += end_processes(_read(_procs_file(record)) or {})
        _procs_file(record).unlink(missing_ok=True)
        record.unlink(missing_ok=True)
    if ended:
        log.info("ended %d process(es) a killed earlier run had left behind", ended)
    return ended


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "watch":
    watch(Path(sys.argv[2]))
