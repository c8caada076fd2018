"""The job's entry point shared by `inbedder embed` and `spark-submit jobs/embed_table.py`.

One code path and one exit-code contract: 0 success, 1 the run failed, 2 the
configuration is invalid. The console gets one line per message and, on
failure, one line naming the problem and the run's log file; the log file holds
the traceback and any Java trace.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from inbedder.console import log_to_console, log_to_file, one_line
from inbedder.errors import ConfigError, InBedderError

log = logging.getLogger("inbedder.job")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def run_embed(config_file: str | None, overrides: list[str], base: dict) -> int:
    from inbedder.job.run import run_job
    from inbedder.job.settings import load_config

    log_file = log_to_file("embed")
    log_to_console()
    try:
        config = load_config(config_file, overrides, base)
        report = run_job(config)
    except InBedderError as exc:
        log.debug("run failed", exc_info=exc)
        print(f"inbedder embed failed: {one_line(exc)} (details: {log_file})", file=sys.stderr)
        return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED
    except Exception as exc:  # a defect or an environment problem: one line here, the traceback in the log
        log.debug("run failed unexpectedly", exc_info=exc)  # the file's level: the console gets the line below
        print(f"inbedder embed failed unexpectedly: {type(exc).__name__}: {one_line(exc)} "
              f"(traceback: {log_file})", file=sys.stderr)
        return EXIT_FAILED
    print(report.summary())
    if config.report_path:
        Path(config.report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(config.report_path).write_text(report.to_json())
    print(report.to_json())
    return EXIT_OK
