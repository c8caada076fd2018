"""What reaches the console and the log file: one line per message, one live progress bar.

Below the CLI, modules log (`logging.getLogger(__name__)`) and never print; the
CLI decides what reaches the console (one line per message) and what goes only
to the run's log file. A long stage shows one tqdm bar on stderr, polled from a
counter (a Spark accumulator during a job), so executors never write to the
console.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

CONSOLE_FORMAT = "[inbedder] %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a notebook's), one line per record."""

    name = "inbedder-console"

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).splitlines()[0]  # tracebacks go to the log file only


def log_to_console(level: int = logging.INFO) -> logging.Handler:
    """Send the package's messages at `level` and above to stderr, one line each (once per process)."""
    root = logging.getLogger("inbedder")
    for handler in root.handlers:
        if isinstance(handler, _StderrHandler):
            return handler
    handler = _StderrHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    _attach(handler)
    return handler


def log_to_file(command: str) -> Path:
    """Each run's full log (tracebacks and Java traces included) in a file of its own, under the cache."""
    from inbedder.fs import cache_root

    folder = cache_root() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _attach(handler)
    return path


def _attach(handler: logging.Handler) -> None:
    root = logging.getLogger("inbedder")
    root.setLevel(logging.DEBUG)  # handlers filter; the logger passes everything on
    root.addHandler(handler)


EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class CommandFailed(Exception):
    """A command ended by an error: `line` is all the console gets; `exit_code` 1 (failed) or 2 (bad settings)."""

    def __init__(self, line: str, exit_code: int):
        super().__init__(line)
        self.line, self.exit_code = line, exit_code


def failure_line(command: str, exc: BaseException, log_file: Path | None) -> CommandFailed:
    """The one failure contract of every command and spark-submit script: one line naming the problem (and,
    for a defect, its type) with the log file that holds the traceback; exit 2 for bad settings, else 1."""
    from inbedder.errors import ConfigError, InBedderError

    where = f" (details: {log_file})" if log_file else ""
    log = logging.getLogger("inbedder")
    if isinstance(exc, InBedderError):
        log.debug("%s failed", command, exc_info=exc)
        return CommandFailed(f"inbedder {command} failed: {one_line(exc)}{where}",
                             EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_FAILED)
    log.debug("%s failed unexpectedly", command, exc_info=exc)  # the file's level: the console gets the line
    return CommandFailed(f"inbedder {command} failed unexpectedly: {type(exc).__name__}: {one_line(exc)}"
                         f"{where.replace('details', 'traceback')}", EXIT_FAILED)


def run_command(command: str, body: Callable[[], None]) -> int:
    """Run a script's body under the failure contract (`failure_line`); returns the exit code."""
    log_file = log_to_file(command)
    log_to_console()
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line; the traceback is in the log
        failed = failure_line(command, exc, log_file)
        print(failed.line, file=sys.stderr)
        return failed.exit_code
    return EXIT_OK


def say(text: str) -> None:
    """A command's result, on stdout (messages and progress go to stderr)."""
    print(text, flush=True)


def one_line(exc: BaseException) -> str:
    """An error's first line, for the console (the whole message and trace go to the log file)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:1])[:500] or type(exc).__name__


class PolledProgress:
    """A tqdm bar for `total` units whose position is read from `current()` every `interval_s`."""

    def __init__(self, total: int, current: Callable[[], int], *, enabled: bool = True, unit: str = "rows",
                 desc: str = "embedding", interval_s: float = 2.0):
        self._current = current
        self._stop = threading.Event()
        self._bar = tqdm(total=total, unit=unit, desc=desc, disable=not (enabled and total), file=sys.stderr,
                         dynamic_ncols=True, smoothing=0.1)
        self._thread = None
        if not self._bar.disable:
            self._thread = threading.Thread(target=self._loop, args=(interval_s,), daemon=True)
            self._thread.start()

    def _refresh(self) -> None:
        done = min(self._current(), self._bar.total)
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._refresh()
        self._bar.close()
