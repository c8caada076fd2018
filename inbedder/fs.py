"""Filesystem steps shared by every stage that writes a folder readers may be reading."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def cache_root() -> Path:
    """Where converted models, digests and run logs are kept (INBEDDER_CACHE overrides)."""
    root = Path(os.environ.get("INBEDDER_CACHE") or Path.home() / ".cache" / "inbedder")
    root.mkdir(parents=True, exist_ok=True)
    return root


def replace_folder(target: str | Path, fill: Callable[[Path], None]) -> None:
    """Fill a sibling folder, then swap it in by rename: readers see the old folder or the new, never half.

    A failure in `fill` leaves `target` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        fill(fresh)
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.rename(target, old)
        os.rename(fresh, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
