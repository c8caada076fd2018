"""Where a run's waves are staged before their commit, and who may remove what.

Each attempt holds a lease (flock) on its staging folder while it runs; folders
no process holds belong to attempts that ended or were killed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from inbedder.lake.columns import STAGING
from inbedder.lake.paths import is_remote


class StagingLease:
    """An attempt's claim on its staging folder, held (flock) while it runs and released when its process dies.

    Folders whose lease nobody holds belong to attempts that ended or were killed:
    `sweep_staging` removes them, never a live attempt's files.
    """

    LOCK = ".attempt.lock"

    def __init__(self, output_path: str, attempt_path: str):
        self.output_path = output_path
        self.folder = None if is_remote(output_path) else Path(staging_dir(output_path, attempt_path))
        self._fd: int | None = None
        self._made_output = False

    def __enter__(self) -> StagingLease:
        import fcntl

        if self.folder is not None:
            self._made_output = not Path(self.output_path).exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.folder / self.LOCK, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc_info) -> None:
        """Release the claim and remove every unclaimed staging folder (this attempt's included)."""
        if self._fd is None:
            return
        os.close(self._fd)  # closing releases the lock
        self._fd = None
        sweep_staging(self.output_path)
        if self._made_output:  # a run that failed before writing anything leaves no empty output behind
            _remove_if_empty(Path(self.output_path))


def _unclaimed(attempt: Path) -> bool:
    import fcntl

    lock = attempt / StagingLease.LOCK
    if not lock.exists():
        return not any(p.is_file() for p in attempt.rglob("*"))  # an attempt of an older version, or no files
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep_staging(output_path: str) -> int:
    """Remove the staging folders of attempts no process holds any more; returns how many."""
    root = Path(output_path) / STAGING
    if is_remote(output_path) or not root.is_dir():
        return 0
    removed = 0
    for run in [p for p in root.iterdir() if p.is_dir()]:
        for attempt in [p for p in run.iterdir() if p.is_dir()]:
            if _unclaimed(attempt):
                shutil.rmtree(attempt, ignore_errors=True)
                removed += 1
        _remove_if_empty(run)
    _remove_if_empty(root)
    return removed


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def staging_dir(output_path: str, run_id: str) -> str:
    return str(Path(output_path) / STAGING / run_id) if not is_remote(output_path) else \
        f"{output_path.rstrip('/')}/{STAGING}/{run_id}"


def remove_staging(output_path: str, run_id: str) -> None:
    """Drop a finished wave's (or run's) staged files, and staging folders left empty."""
    if is_remote(output_path):
        return  # object stores: a lifecycle rule on _inbedder_staging/ cleans up (see README)
    shutil.rmtree(staging_dir(output_path, run_id), ignore_errors=True)
    root = Path(output_path) / STAGING
    folder = Path(staging_dir(output_path, run_id)).parent
    while folder != root.parent and folder.exists() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
