"""The job's entry point shared by `inbedder embed` and `spark-submit jobs/embed_table.py`.

One code path and one exit-code contract: 0 success, 1 the run failed, 2 the
configuration is invalid. The console gets one line per message and, on
failure, one line naming the problem and the run's log file; the log file holds
the traceback and any Java trace.
"""

from __future__ import annotations

from pathlib import Path

from inbedder.console import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, run_command, say

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "run_embed"]


def run_embed(config_file: str | None, overrides: list[str], base: dict) -> int:
    """Load the settings, run the job, print its summary and JSON report; the exit code of the contract."""

    def body() -> None:
        from inbedder.job.run import run_job
        from inbedder.job.settings import load_config

        config = load_config(config_file, overrides, base)
        report = run_job(config)
        say(report.summary())
        if config.report_path:
            Path(config.report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(config.report_path).write_text(report.to_json())
        say(report.to_json())

    return run_command("embed", body)
