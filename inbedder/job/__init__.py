"""The batch job: read a table with Spark, embed through Ray replicas, commit to the lake.

`settings` (the validated YAML), `plan` (pure decisions, no Spark), `spark`
(reads), `cluster` + `local_cluster` (the compute a run starts), `replicas`
(the Ray actors), `waves` (one wave through the replicas), `run` (the steps in
order), `report`, and `entry` (the exit-code contract of the entry points).
Names load with their module on first use (`inbedder.exports`): a Spark worker
running a wave imports `waves` and `replicas`, not the driver's `run`.
"""

from inbedder.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "inbedder.errors": ("ConfigError", "JobError"),
    "report": ("InstructionCounts", "RunReport"),
    "run": ("run_job",),
    "settings": ("JobConfig", "load_config"),
})
