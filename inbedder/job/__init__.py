"""The batch job: read a table with Spark, embed through Ray replicas, commit to the lake.

`settings` (the validated YAML), `plan` (pure decisions, no Spark), `spark`
(reads), `cluster` + `local_cluster` (the compute a run starts), `replicas`
(the Ray actors), `waves` (one wave through the replicas), `run` (the steps in
order), `report`, and `entry` (the exit-code contract of the entry points).
"""

from inbedder.errors import ConfigError, JobError
from inbedder.job.report import InstructionCounts, RunReport
from inbedder.job.run import run_job
from inbedder.job.settings import JobConfig, load_config

__all__ = ["ConfigError", "InstructionCounts", "JobConfig", "JobError", "RunReport", "load_config", "run_job"]
