"""jobs/airflow: the DAG imports in a real Airflow (its own virtual env) with the expected tasks."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from .conftest import REPO

AIRFLOW_PYTHON = REPO / ".venv-airflow" / "bin" / "python"

INSPECT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": str(dag.timetable.expression), "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tasks": {t.task_id: {"type": type(t).__name__, "retries": t.retries, "upstream": sorted(t.upstream_task_ids),
                              "application": t.application, "args": list(t.application_args or []),
                              "conn_id": t._conn_id, "conf": dict(t.conf or {})} for t in dag.tasks}}
print(json.dumps(out))
"""


def _inspect(tmp_path, config: dict, **env) -> dict:
    if not AIRFLOW_PYTHON.exists():
        pytest.fail("Airflow's virtual env is missing: run `make test` (it creates .venv-airflow)")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    environ = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "INBEDDER_JOB_CONFIG": str(path), **env}
    result = subprocess.run([str(AIRFLOW_PYTHON), "-c", INSPECT, str(REPO / "jobs" / "airflow")], env=environ,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


CONFIG = {"input": {"path": "s3://lake/tables/tickets", "key": "id", "text": "body"},
          "instructions": {"topic": "What is this ticket about?"},
          "spark": {"conf": {"spark.executor.memory": "8g"}},
          "output": {"path": "s3://lake/embeddings/tickets"},
          "index": {"out": "s3://lake/indexes/tickets", "metric": "inner_product"},
          "run_id": "tickets-nightly"}


def test_the_dag_loads_with_embed_then_index(tmp_path):
    found = _inspect(tmp_path, CONFIG, INBEDDER_SCHEDULE="30 3 * * *", INBEDDER_RETRIES="4")
    assert found["errors"] == {}
    dag = found["dags"]["inbedder_tickets_nightly"]
    assert dag["schedule"] == "30 3 * * *" and dag["catchup"] is False and dag["max_active_runs"] == 1
    embed, index = dag["tasks"]["embed"], dag["tasks"]["index"]
    assert embed["type"] == index["type"] == "SparkSubmitOperator"
    assert embed["application"].endswith("jobs/embed_table.py") and embed["retries"] == 4
    assert embed["args"][:2] == ["--config", str(tmp_path / "job.yaml")] and "index.out=null" in embed["args"]
    assert index["upstream"] == ["embed"] and index["application"].endswith("jobs/build_index.py")
    assert index["args"] == ["--config", str(tmp_path / "job.yaml")]  # the index section whole, not one flag
    assert embed["conf"] == {"spark.executor.memory": "8g"} and embed["conn_id"] == "spark_default"


def test_without_an_index_folder_there_is_only_the_embed_task(tmp_path):
    config = {k: v for k, v in CONFIG.items() if k != "index"}
    dag = _inspect(tmp_path, config)["dags"]["inbedder_tickets_nightly"]
    assert list(dag["tasks"]) == ["embed"] and dag["schedule"] == "0 0 * * *"  # @daily


def test_a_broken_job_config_is_an_import_error_naming_it(tmp_path):
    found = _inspect(tmp_path, {"instructions": {"a": "b"}})
    assert found["dags"] == {} and any("needs input and output" in e for e in found["errors"].values())
