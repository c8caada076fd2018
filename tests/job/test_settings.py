"""The job's settings: every error names its field, and one conversion feeds the index step everywhere."""

import importlib.util
from pathlib import Path

import pytest
import yaml

from inbedder.errors import ConfigError
from inbedder.job.settings import load_config

REPO = Path(__file__).resolve().parents[2]
BASE = {"input.path": "/lake/src", "input.key": "id", "input.text": "text", "output.path": "/lake/out",
        "instructions": {"q": "What?"}}


def test_errors_name_each_wrong_field():
    with pytest.raises(ConfigError, match=r"input.key: Field required"):
        load_config(None, [], {k: v for k, v in BASE.items() if k != "input.key"})
    with pytest.raises(ConfigError, match=r"ray.batch_rows.*greater than or equal to 1"):
        load_config(None, ["ray.batch_rows=0"], BASE)
    with pytest.raises(ConfigError, match="backtick"):
        load_config(None, [], {**BASE, "input.key": "my`key"})
    with pytest.raises(ConfigError, match="must not overwrite its source"):
        load_config(None, [], {**BASE, "output.path": "/lake/src"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/job.yaml")
    with pytest.raises(ConfigError, match=r"output.target_file_mb.*greater than or equal to 1"):
        load_config(None, ["output.target_file_mb=0"], BASE)


def test_overrides_are_read_as_yaml_and_win_over_the_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"input": {"path": "/a", "key": "id", "text": "t"}, "output": {"path": "/b"},
                                    "instructions": {"q": "What?"}, "index": {"out": "/idx"}}))
    config = load_config(path, ["index.memory_budget_gb=0.5", "index.recall_target=0.9", "spark.conf={a: b}"])
    assert config.index.memory_budget_gb == 0.5 and config.spark.conf == {"a": "b"}
    options = config.index.build_options()
    assert options.memory_budget_bytes == 2**29 and options.recall_target == 0.9 and options.metric == "cosine"


def test_the_scheduled_index_step_reads_every_index_setting_from_the_job_config(tmp_path):
    """The Airflow DAG runs jobs/build_index.py --config: budget and recall target must arrive, not only the metric."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"input": {"path": "/a", "key": "id", "text": "t"}, "output": {"path": "/b"},
                                    "instructions": {"q": "What?", "r": "Who?"},
                                    "index": {"out": "/idx", "metric": "l2", "memory_budget_gb": 2,
                                              "recall_target": 0.8}}))
    spec = importlib.util.spec_from_file_location("build_index_entry", REPO / "jobs" / "build_index.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    table, out, names, options, shards = entry.plan_from_args(["--config", str(path)])
    assert (table, out, names, shards) == ("/b", "/idx", ["q", "r"], 0)
    assert (options.metric, options.memory_budget_bytes, options.recall_target) == ("l2", 2 * 2**30, 0.8)
    flags = entry.plan_from_args(["--table", "/b", "--out", "/idx", "--recall-target", "0.99"])[3]
    assert flags.recall_target == 0.99
