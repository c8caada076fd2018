"""Airflow DAG: embed a table with InBedder, then build/update its FAISS indexes.

Both steps are `spark-submit`s through the Spark provider (connection
`INBEDDER_SPARK_CONN`, default `spark_default`). What to run comes from the job
config (`INBEDDER_JOB_CONFIG`): its run name, Spark settings, output table and
index folder. The job is incremental and commits by wave, so a retry after a
failure embeds only what is missing.

Settings (environment of the scheduler): INBEDDER_JOB_CONFIG (YAML job config),
INBEDDER_JOBS_DIR (where embed_table.py / build_index.py are), INBEDDER_SCHEDULE
(cron or preset, default @daily), INBEDDER_RETRIES (default 3),
INBEDDER_PY_FILES (e.g. the inbedder wheel, for clusters without it installed).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

JOBS_DIR = Path(os.environ.get("INBEDDER_JOBS_DIR", Path(__file__).resolve().parents[1]))
JOB_CONFIG = Path(os.environ.get("INBEDDER_JOB_CONFIG", JOBS_DIR / "sample_job.yaml"))
SCHEDULE = os.environ.get("INBEDDER_SCHEDULE", "@daily")
RETRIES = int(os.environ.get("INBEDDER_RETRIES", "3"))
SPARK_CONN = os.environ.get("INBEDDER_SPARK_CONN", "spark_default")
PY_FILES = os.environ.get("INBEDDER_PY_FILES") or None


def job_settings(path: Path) -> dict:
    """The parts of the job config the DAG needs (the job itself validates the whole file)."""
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict) or "output" not in config or "input" not in config:
        raise ValueError(f"{path} is not an inbedder job config (needs input and output sections)")
    spark = config.get("spark") or {}
    return {
        "name": config.get("run_id") or Path(str(config["output"]["path"])).name,
        "output": config["output"]["path"],
        "index_out": (config.get("index") or {}).get("out"),
        "spark_conf": {str(k): str(v) for k, v in (spark.get("conf") or {}).items()},
    }


settings = job_settings(JOB_CONFIG)

with DAG(
    dag_id=f"inbedder_{settings['name']}".replace("-", "_"),
    description=f"InBedder embeddings for {settings['output']}",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs on one output would only race for the same waves
    default_args={
        "retries": RETRIES,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
    },
    tags=["inbedder"],
) as dag:
    embed = SparkSubmitOperator(
        task_id="embed",
        application=str(JOBS_DIR / "embed_table.py"),
        # the index is its own task below, retried on its own
        application_args=["--config", str(JOB_CONFIG), "--set", "index.out=null"],
        conn_id=SPARK_CONN,
        conf=settings["spark_conf"],
        name=f"inbedder-embed-{settings['name']}",
        py_files=PY_FILES,
        execution_timeout=timedelta(hours=12),
    )
    if settings["index_out"]:
        index = SparkSubmitOperator(
            task_id="index",
            application=str(JOBS_DIR / "build_index.py"),
            # every index setting (metric, memory budget, recall target) is read from the job's own config
            application_args=["--config", str(JOB_CONFIG)],
            conn_id=SPARK_CONN,
            conf=settings["spark_conf"],
            name=f"inbedder-index-{settings['name']}",
            py_files=PY_FILES,
            execution_timeout=timedelta(hours=6),
        )
        embed >> index
