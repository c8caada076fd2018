"""The compute a run uses: a Spark session and a Ray cluster, started on loopback when local."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from inbedder.job import local_cluster
from inbedder.job.replicas import NAMESPACE
from inbedder.job.settings import JobConfig


def start_spark(config: JobConfig):
    """(session, whether this call created it): a session the caller made is reused and left running."""
    if config.spark.master.startswith("local"):
        local_cluster.pin_to_loopback()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from pyspark import SparkContext

    # the caller's context (a test session, a notebook): reused and left running; checked process-wide, since
    # a first run starts Spark from a worker thread, where getActiveSession() sees no session
    if SparkContext._active_spark_context is not None:
        return SparkSession.builder.getOrCreate(), False

    builder = (SparkSession.builder.master(config.spark.master).appName("inbedder-embed")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.ray.batch_rows * 4))
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.task.maxFailures", "4")
               .config("spark.ui.showConsoleProgress", "false"))  # the job prints its own progress line
    if config.spark.master.startswith("local"):
        # loopback only; and a handful of shuffle partitions instead of 200 tiny tasks on one machine
        quiet = Path(__file__).parents[1] / "data" / "log4j2.properties"  # no JVM log lines between the job's own
        if not any(k.startswith("spark.driver.extraJavaOptions") for k in config.spark.conf):
            builder = builder.config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{quiet}")
        builder = (builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2))))
    for k, v in config.spark.conf.items():
        builder = builder.config(k, v)
    if config.spark.master.startswith("local"):
        local_cluster.watch_driver([local_cluster.SPARK_MARKER])  # a killed driver must not leave its JVM behind
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


@contextmanager
def ray_cluster(config: JobConfig) -> Iterator[str]:
    """Connect to the configured Ray cluster, or start a loopback-only one and stop it after."""
    if config.ray.address == "local":
        local_cluster.pin_to_loopback()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():  # the caller (a test session, a notebook) already holds a cluster
        yield ray.get_runtime_context().gcs_address
        return
    if config.ray.address == "local":
        info = local_cluster.start_local_ray(object_store_mb=config.ray.object_store_mb, namespace=NAMESPACE,
                                             num_cpus=max(2, os.cpu_count() or 2))  # LocalClusterError: a JobError
        local_cluster.watch_driver([info["session_dir"]])
        address = info["gcs_address"]
    else:
        ray.init(address=config.ray.address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
        address = config.ray.address if config.ray.address.startswith("ray://") else \
            ray.get_runtime_context().gcs_address
    try:
        yield address
    finally:
        ray.shutdown()
