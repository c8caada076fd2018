"""Filesystem steps shared by every stage that writes a folder readers may be reading."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path


def replace_folder(target: str | Path, fill: Callable[[Path], None], *, keep_existing: bool = False) -> bool:
    """Fill a sibling folder, then swap it in by rename: readers see the old folder or the new, never half.

    With `keep_existing`, a folder already at `target` wins (another process made
    it first) and this one is dropped. Returns whether this call's folder is now
    at `target`. A failure in `fill` leaves `target` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        fill(fresh)
        if keep_existing and target.exists():
            return False
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        if target.exists():
            os.rename(target, old)
        os.rename(fresh, target)
        shutil.rmtree(old, ignore_errors=True)
        return True
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
